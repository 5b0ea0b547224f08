/**
 * Channels over NATS: a listener on a subject (optionally in a queue group, so that several listeners share the
 * connections), and connections to it from any host that reaches the NATS server. Each channel is a pair of private
 * inbox subjects, with credit-based flow control and heartbeats, so it keeps the whole Channel contract: ordered,
 * reliable while the NATS connection lives (a lost connection ends the channel with `ClosedError`), boundaries
 * kept, a peer that dies or vanishes detected within `3 × heartbeat` ms.
 *
 * Wire format (so that any NATS client, in any language, can speak it). Every NATS message's payload starts with
 * one type byte; integers are unsigned 32-bit big-endian:
 *
 * | type | name    | rest of the payload                   | sent                                               |
 * | ---- | ------- | ------------------------------------- | -------------------------------------------------- |
 * | 5    | HELLO   | version (1 byte, = 1), window, beat   | by the connecting side to the listener's subject,  |
 * |      |         |                                       | with its inbox as the reply subject                |
 * | 6    | WELCOME | version, window, beat                 | by the listener to that inbox, with the reply      |
 * |      |         |                                       | subject set to the listener side's own new inbox   |
 * | 7    | REFUSE  | a reason, UTF-8 text                  | instead of WELCOME, or on a channel: "I end it"    |
 * | 1    | DATA    | the message, or its last piece        | to the peer's inbox                                |
 * | 8    | MORE    | a piece of a message (>= 1 byte)      | messages over the server's max_payload, in order   |
 * | 2    | CREDIT  | bytes                                 | the receiver has taken that many more bytes        |
 * | 3    | END     | -                                     | the sender closed: no DATA follows                 |
 * | 4    | PING    | -                                     | a heartbeat, when nothing else was sent for a beat |
 *
 * `window` is how many bytes of DATA the sender of HELLO/WELCOME accepts before it grants CREDIT (each DATA or
 * MORE counts its length + 32; at least 1024); a sender stops when the peer's window is used up (a message larger
 * than the window is sent when nothing is outstanding). `beat` is the heartbeat period in ms: a side that hears
 * nothing from its peer for 3 beats ends the channel; each side says something (a PING if nothing else) at least
 * once per the shorter of the two beats.
 *
 * Neither side trusts the other:
 * - A peer that sends past its credit, grants more credit than was used, sends a control message of the wrong size
 *   (CREDIT is 5 bytes, END and PING 1), an empty MORE, a HELLO on an open channel or an unknown type is sent a
 *   REFUSE with the reason; the channel ends with `ProtocolError` on this side and with `ClosedError` carrying the
 *   reason on the peer's (as after END). A message over `maxMessage` ends it the same way (`MessageTooLargeError`).
 * - Credit is granted as the application takes messages (no more while half a window waits unread), and not at all
 *   before `accept()` took the channel: a peer makes a side hold at most about 1.5 windows, plus the one message
 *   being assembled from pieces (at most `maxMessage`, in one buffer that grows as pieces come).
 * - A peer's announced beat is clamped to [10 ms, `maxHeartbeat`] (default 60 000 ms, never below this side's own
 *   beat): a peer that announces 2^32 - 1 ms and falls silent is declared gone within 3 minutes.
 * - A listener queues at most `maxPending` channels for `accept()` (default 64); further HELLOs are answered with a
 *   REFUSE whose text starts with `busy:` (connect() rejects with `QueueFullError`) and cost nothing. A HELLO of
 *   another version, with a window below 1024, or shorter than 10 bytes is refused too.
 *
 * @example
 * ```ts
 * import { nats, runtime } from "ipckit";
 * const rt = await runtime();
 * const servers = rt.env("NATS_URL") ?? "nats://127.0.0.1:4222"; // a nats-server anywhere: this may be another host
 * await using link = await nats.open({ servers });
 * await using server = await nats.listen(`jobs.inbox.${rt.pid}`, { link, queue: "jobs" });
 * await using client = await nats.connect(`jobs.inbox.${rt.pid}`, { link });
 * await using peer = await server.accept();
 * await client.send(new TextEncoder().encode("hello over NATS"));
 * console.log(new TextDecoder().decode(await peer.receive())); // "hello over NATS"
 * ```
 *
 * Why one file of ~440 lines: 160 of them are the wire format, documented byte for byte so any NATS client can speak
 * it.
 *
 * @module
 */
import { onAbort } from "../async/abort.ts";
import { abortError, ClosedError, NotFoundError, ProtocolError, QueueFullError, TimeoutError } from "../errors.ts";
import type { NatsMsgLike } from "../runtimes/nats.ts";
import type { Channel, ChannelOptions, Listener } from "./channel.ts";
import { QueuedListener } from "./listener.ts";
import { NatsChannel, type Settings } from "./nats_channel.ts";
import { checkSubject, inbox, linkFor, NatsLink, type NatsLinkOptions, type NatsTarget } from "./nats_link.ts";
import {
  BUSY,
  DEFAULT_MAX_HEARTBEAT,
  greeting,
  greetingProblem,
  HELLO,
  MAX_HEARTBEAT,
  MAX_WINDOW,
  MIN_HEARTBEAT,
  MIN_WINDOW,
  readFrame,
  REFUSE,
  refuse,
  validInbox,
  WELCOME,
} from "./nats_wire.ts";

export { NatsLink, type NatsLinkOptions, type NatsTarget, type NatsTlsOptions } from "./nats_link.ts";
export { capabilities } from "./nats_channel.ts";

/** Channels a listener queues for `accept()` by default. */
const DEFAULT_MAX_PENDING = 64;

/** Options of a NATS channel (both sides). */
export interface NatsChannelOptions extends ChannelOptions {
  /** Bytes the peer may send before this side grants more (flow control). Default 4 MiB. */
  window?: number;
  /** Heartbeat period in ms; the peer is declared gone after 3 silent beats. Default 1000. */
  heartbeat?: number;
  /**
   * The longest heartbeat a peer may announce, in ms: a longer one counts as this, so a peer that falls silent is
   * declared gone within `3 × maxHeartbeat`. Default 60 000 (or `heartbeat`, if longer); 10 to 3 600 000.
   */
  maxHeartbeat?: number;
  /** Prefix of this side's inbox subjects (for accounts with subject permissions). Default `_INBOX`. */
  inboxPrefix?: string;
}

/** Options of {@linkcode listen}. */
export type NatsListenOptions = NatsTarget & NatsChannelOptions & {
  /** Queue group: listeners of one group share the incoming connections (each goes to one of them). */
  queue?: string;
  /**
   * Channels that may wait for `accept()` (the backlog). Further HELLOs are refused with `busy:` (the connecting
   * side gets `QueueFullError`), so a flood of HELLOs costs at most this many channels. Default 64.
   */
  maxPending?: number;
};

/** Options of {@linkcode connect}. */
export type NatsConnectOptions = NatsTarget & NatsChannelOptions & {
  /** Milliseconds to wait for a listener's answer. Default 10 000. */
  timeout?: number;
  /** Aborts the connection attempt. */
  signal?: AbortSignal;
};

/** A listener on a NATS subject. */
export interface NatsListener extends Listener {
  /** The subject it listens on. */
  readonly subject: string;
  /** Its queue group, if any. */
  readonly queue: string | undefined;
  /** The link it listens on. */
  readonly link: NatsLink;
  /** Channels that arrived and wait for `accept()` (at most `maxPending`). */
  readonly pending: number;
}

function settings(o: NatsChannelOptions): Settings {
  const window = o.window ?? 4 * 1024 * 1024;
  if (!Number.isSafeInteger(window) || window < MIN_WINDOW || window > MAX_WINDOW) {
    throw new RangeError(`Cannot use window ${window}: it must be an integer from 1024 to 2^32 - 1 bytes`);
  }
  const heartbeat = o.heartbeat ?? 1000;
  if (!Number.isSafeInteger(heartbeat) || heartbeat < MIN_HEARTBEAT || heartbeat > MAX_HEARTBEAT) {
    throw new RangeError(`Cannot use heartbeat ${heartbeat}: it must be an integer from 10 to 3 600 000 ms`);
  }
  const max = o.maxHeartbeat;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < heartbeat || max > MAX_HEARTBEAT)) {
    throw new RangeError(
      `Cannot use maxHeartbeat ${max}: it must be an integer from this side's heartbeat (${heartbeat}) to 3 600 000 ms`,
    );
  }
  const inboxPrefix = checkSubject(o.inboxPrefix ?? "_INBOX", "an inbox prefix");
  const channel: ChannelOptions = {};
  if (o.maxMessage !== undefined) channel.maxMessage = o.maxMessage;
  if (o.highWaterMark !== undefined) channel.highWaterMark = o.highWaterMark;
  return { window, heartbeat, maxHeartbeat: max ?? Math.max(DEFAULT_MAX_HEARTBEAT, heartbeat), inboxPrefix, channel };
}

function maxPending(o: NatsListenOptions): number {
  const n = o.maxPending ?? DEFAULT_MAX_PENDING;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new RangeError(`Cannot use maxPending ${n}: it must be an integer >= 1 (channels)`);
  }
  return n;
}

class Listening extends QueuedListener implements NatsListener {
  readonly subject: string;
  readonly queue: string | undefined;
  readonly link: NatsLink;
  readonly #owned: boolean;
  readonly #letGo: (() => Promise<void>) | undefined;
  readonly #settings: Settings;
  readonly #maxPending: number;
  readonly #sub: { unsubscribe(): void };
  #closing: Promise<void> | undefined;
  readonly #release: () => void;

  constructor(
    link: NatsLink,
    owned: boolean,
    subject: string,
    queue: string | undefined,
    s: Settings,
    maxPending: number,
  ) {
    super(maxPending);
    this.link = link;
    this.#owned = owned;
    this.#letGo = owned ? link.hold() : undefined;
    this.subject = subject;
    this.queue = queue;
    this.#settings = s;
    this.#maxPending = maxPending;
    this.#sub = link.connection.subscribe(subject, {
      ...(queue === undefined ? {} : { queue }),
      callback: (error, msg) => {
        if (!error) this.#hello(msg);
      },
    });
    this.#release = link.use(this);
  }

  get pending(): number {
    return this.waiting;
  }

  /** Taken by `accept()`: from now on it grants credit (a queued channel holds at most one window). */
  protected override adopt(channel: Channel): Channel {
    (channel as NatsChannel).accepted();
    return channel;
  }

  #hello(msg: NatsMsgLike): void {
    const reply = msg.reply;
    // Not for us (another type), or nobody to answer: nothing is spent on it.
    if (this.stopped || !validInbox(reply) || msg.data[0] !== HELLO) return;
    let problem: string | undefined;
    let g;
    try {
      const frame = readFrame(msg.data);
      if (frame.type === HELLO) g = frame.greeting;
    } catch {
      problem = `ipckit NATS channel: a malformed HELLO (${msg.data.byteLength} bytes)`;
    }
    if (g !== undefined) problem = greetingProblem(g);
    // The accept queue is full: answer at once and keep nothing (a flood of HELLOs costs no memory).
    if (problem === undefined && this.waiting >= this.#maxPending) {
      problem = `${BUSY} ${this.waiting} channels wait to be accepted on "${this.subject}" (maxPending)`;
    }
    const c = this.link.connection;
    if (problem !== undefined || g === undefined) {
      try {
        c.publish(reply, refuse(problem ?? "a malformed HELLO"));
      } catch {
        // a reply subject the server does not take, or the connection closed: nobody to tell
      }
      return;
    }
    const mine = inbox(this.#settings.inboxPrefix);
    const channel = new NatsChannel(
      this.link,
      this.#owned ? this.link.hold() : undefined,
      `NATS channel accepted on "${this.subject}"`,
      reply,
      g,
      this.#settings,
      true,
    );
    try {
      channel.attach(c.subscribe(mine, { callback: (error, m) => !error && channel.onMessage(m) }));
      c.publish(reply, greeting(WELCOME, this.#settings.window, this.#settings.heartbeat), { reply: mine });
    } catch (e) {
      channel.linkLost(e as Error);
      void channel.close();
      return;
    }
    this.offer(channel); // room was checked above
  }

  linkLost(error: Error): void {
    // The subscription comes back with a reconnect, but a closed connection ends the listener.
    if (this.link.connection.isClosed()) {
      this.#release();
      this.stopAccepting(new ClosedError(`Cannot accept on NATS subject "${this.subject}": ${error.message}`));
    }
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#release();
      const left = this.stopAccepting(
        new ClosedError(`Cannot accept on NATS subject "${this.subject}": the listener is closed`),
      );
      try {
        this.#sub.unsubscribe();
      } catch {
        // closed with its connection
      }
      // Accepted channels not taken yet would never be used: close them, so their peers learn it.
      await Promise.all(left.map((ch) => ch.close()));
      await this.#letGo?.();
    })();
    return this.#closing;
  }
}

/**
 * Opens a connection to a NATS server, to share between channels, listeners, RPC services and pools.
 *
 * @throws {NotFoundError} when no server answers; {@linkcode PermissionError} for refused credentials.
 *
 * @example
 * ```ts
 * import { nats, NotFoundError, runtime } from "ipckit";
 * const rt = await runtime();
 * await using link = await nats.open({ servers: rt.env("NATS_URL") ?? "nats://127.0.0.1:4222" });
 * console.log(link.maxPayload); // 1048576: larger messages travel in pieces
 * try {
 *   await nats.open({ servers: "nats://127.0.0.1:1", timeout: 2000 }); // nothing there
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true
 * }
 * ```
 */
export function open(options: NatsLinkOptions = {}): Promise<NatsLink> {
  return NatsLink.open(options);
}

/**
 * Listens for channels on a NATS subject. With `queue`, listeners of the same group share the connections. At most
 * `maxPending` channels wait for `accept()`; HELLOs beyond are refused (the connecting side gets `QueueFullError`).
 *
 * @throws {TypeError} for a bad subject or options; {@linkcode RangeError} for an option out of range.
 *
 * @example
 * ```ts
 * import { nats, runtime } from "ipckit";
 * const rt = await runtime();
 * const subject = `echo.${rt.pid}`;
 * await using link = await nats.open({ servers: rt.env("NATS_URL") ?? "nats://127.0.0.1:4222" });
 * // Two listeners in one queue group: each connection goes to one of them.
 * const listeners = [await nats.listen(subject, { link, queue: "echo" }), await nats.listen(subject, { link, queue: "echo" })];
 * for (const l of listeners) {
 *   void (async () => {
 *     for await (const ch of l) for await (const m of ch) await ch.send(m); // echo each connection
 *   })();
 * }
 * await using ch = await nats.connect(subject, { link });
 * await ch.send(new Uint8Array([4, 2]));
 * console.log(await ch.receive()); // Uint8Array [4, 2]
 * for (const l of listeners) await l.close();
 * ```
 */
export async function listen(subject: string, options: NatsListenOptions = {}): Promise<NatsListener> {
  checkSubject(subject, "a NATS listener subject");
  if (options.queue !== undefined) checkSubject(options.queue, "a queue group");
  const s = settings(options);
  const pending = maxPending(options);
  const { link, owned } = await linkFor(pickTarget(options));
  const listener = new Listening(link, owned, subject, options.queue, s, pending);
  await link.connection.flush(); // the subscription is registered on the server: connects now find it
  return listener;
}

/**
 * Connects a channel to the listener on a NATS subject (one of its queue group).
 *
 * @throws {NotFoundError} when nothing listens on the subject; {@linkcode TimeoutError} when no answer comes;
 * {@linkcode QueueFullError} when the listener's accept queue is full (`maxPending`): try again later;
 * {@linkcode ProtocolError} when the listener refuses (another version) or answers nonsense.
 *
 * @example
 * ```ts
 * import { nats, NotFoundError, runtime } from "ipckit";
 * const rt = await runtime();
 * await using link = await nats.open({ servers: rt.env("NATS_URL") ?? "nats://127.0.0.1:4222" });
 * try {
 *   await nats.connect(`nobody.listens.${rt.pid}`, { link });
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true: the server said there are no responders
 * }
 * // Options may name the server instead of a link: the channel then owns its connection and closes it.
 * await using server = await nats.listen(`owned.${rt.pid}`, { link });
 * await using own = await nats.connect(`owned.${rt.pid}`, { servers: rt.env("NATS_URL") ?? "nats://127.0.0.1:4222" });
 * await using peer = await server.accept();
 * await own.send(new TextEncoder().encode("hi"));
 * console.log(new TextDecoder().decode(await peer.receive())); // "hi"
 * ```
 */
export async function connect(subject: string, options: NatsConnectOptions = {}): Promise<Channel> {
  checkSubject(subject, "a NATS subject to connect to");
  const s = settings(options);
  const timeout = options.timeout ?? 10_000;
  if (!(Number.isFinite(timeout) && timeout > 0)) {
    throw new RangeError(`Cannot connect with timeout ${timeout}: it must be a number > 0 (ms)`);
  }
  if (options.signal?.aborted) throw abortError(options.signal);
  const { link, owned } = await linkFor(pickTarget(options));
  const c = link.connection;
  const mine = inbox(s.inboxPrefix);
  let channel: NatsChannel | undefined;
  let settle!: { resolve(ch: NatsChannel): void; reject(e: unknown): void };
  const answered = new Promise<NatsChannel>((resolve, reject) => (settle = { resolve, reject }));
  const sub = c.subscribe(mine, {
    callback: (error, msg) => {
      if (error) return;
      if (channel) return channel.onMessage(msg);
      if (msg.headers?.code === 503 || (msg.data.byteLength === 0 && msg.headers)) {
        return settle.reject(new NotFoundError(`Cannot connect to NATS subject "${subject}": nothing listens there`));
      }
      let frame;
      try {
        frame = readFrame(msg.data);
      } catch {
        frame = undefined;
      }
      if (frame?.type === REFUSE) {
        const why = `Cannot connect to NATS subject "${subject}": refused (${frame.reason})`;
        return settle.reject(frame.reason.startsWith(BUSY) ? new QueueFullError(why) : new ProtocolError(why));
      }
      if (frame?.type !== WELCOME || !validInbox(msg.reply)) {
        return settle.reject(new ProtocolError(`Cannot connect to NATS subject "${subject}": a malformed answer`));
      }
      const g = frame.greeting;
      const problem = greetingProblem(g);
      if (problem !== undefined) {
        return settle.reject(new ProtocolError(`Cannot connect to NATS subject "${subject}": ${problem}`));
      }
      channel = new NatsChannel(link, owned ? link.hold() : undefined, `NATS channel to "${subject}"`, msg.reply, g, s);
      channel.attach(sub);
      settle.resolve(channel);
    },
  });
  const timer = setTimeout(
    () => settle.reject(new TimeoutError(`Cannot connect to NATS subject "${subject}": no answer in ${timeout} ms`)),
    timeout,
  );
  const unlisten = onAbort(options.signal, () => settle.reject(abortError(options.signal!)));
  try {
    c.publish(subject, greeting(HELLO, s.window, s.heartbeat), { reply: mine });
    return await answered;
  } catch (e) {
    sub.unsubscribe();
    if (owned) await link.close();
    throw e;
  } finally {
    clearTimeout(timer);
    unlisten();
  }
}

/** The link part of a target (the channel options are read separately). */
function pickTarget(options: NatsTarget & NatsChannelOptions): NatsTarget {
  if ("link" in options && options.link !== undefined) return { link: options.link };
  const { servers, user, pass, token, tls, name, options: extra } = options as NatsLinkOptions;
  const target: NatsLinkOptions = {};
  if (servers !== undefined) target.servers = servers;
  if (user !== undefined) target.user = user;
  if (pass !== undefined) target.pass = pass;
  if (token !== undefined) target.token = token;
  if (tls !== undefined) target.tls = tls;
  if (name !== undefined) target.name = name;
  if (extra !== undefined) target.options = extra;
  return target;
}
