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
 * | 1    | DATA    | the message, or its last piece        | to the peer's inbox                                |
 * | 8    | MORE    | a piece of a message; more follow     | messages over the server's max_payload, in order   |
 * | 2    | CREDIT  | bytes                                 | the receiver has taken that many more bytes        |
 * | 3    | END     | -                                     | the sender closed: no DATA follows                 |
 * | 4    | PING    | -                                     | a heartbeat, when nothing else was sent for a beat |
 *
 * `window` is how many bytes of DATA the sender of HELLO/WELCOME accepts before it grants CREDIT (each DATA
 * counts its length + 32); a sender stops when the peer's window is used up (a message larger than the window is
 * sent when nothing is outstanding). `beat` is the heartbeat period in ms: a side that hears nothing from its peer
 * for 3 beats ends the channel. A HELLO of another version is answered with type 7 (REFUSE, then UTF-8 text).
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
 * @module
 */
import {
  abortError,
  ClosedError,
  MessageTooLargeError,
  NotFoundError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import type { NatsMsgLike } from "../runtimes/nats.ts";
import { BaseChannel, type Capabilities, type Channel, type ChannelOptions, type Listener } from "./channel.ts";
import { QueuedListener } from "./listener.ts";
import { MAX_FRAME } from "./framing.ts";
import { checkSubject, inbox, linkFor, NatsLink, type NatsLinkOptions, type NatsTarget } from "./nats_link.ts";

export { NatsLink, type NatsLinkOptions, type NatsTarget, type NatsTlsOptions } from "./nats_link.ts";

const DATA = 1, CREDIT = 2, END = 3, PING = 4, HELLO = 5, WELCOME = 6, REFUSE = 7, MORE = 8;
const VERSION = 1;
/** Bytes a DATA message counts for besides its length (subjects and protocol lines). */
const OVERHEAD = 32;
/** Beats of silence after which the peer counts as gone. */
const MISSES = 3;

/**
 * What a NATS channel promises. Messages larger than the server's `max_payload` (1 MiB by default) travel in
 * pieces, so `maxMessage` is that of every stream channel.
 *
 * @example
 * ```ts
 * import { nats } from "ipckit";
 * console.log(nats.capabilities.crossHost, nats.capabilities.reliable); // true true (while the connection lives)
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_FRAME,
  crossHost: true,
  datagram: false,
};

/** Options of a NATS channel (both sides). */
export interface NatsChannelOptions extends ChannelOptions {
  /** Bytes the peer may send before this side grants more (flow control). Default 4 MiB. */
  window?: number;
  /** Heartbeat period in ms; the peer is declared gone after 3 silent beats. Default 1000. */
  heartbeat?: number;
  /** Prefix of this side's inbox subjects (for accounts with subject permissions). Default `_INBOX`. */
  inboxPrefix?: string;
}

/** Options of {@linkcode listen}. */
export type NatsListenOptions = NatsTarget & NatsChannelOptions & {
  /** Queue group: listeners of one group share the incoming connections (each goes to one of them). */
  queue?: string;
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
}

interface Settings {
  window: number;
  heartbeat: number;
  inboxPrefix: string;
  channel: ChannelOptions;
}

function settings(o: NatsChannelOptions): Settings {
  const window = o.window ?? 4 * 1024 * 1024;
  if (!Number.isSafeInteger(window) || window < 1024 || window > 0xffffffff) {
    throw new RangeError(`Cannot use window ${window}: it must be an integer from 1024 to 2^32 - 1 bytes`);
  }
  const heartbeat = o.heartbeat ?? 1000;
  if (!Number.isSafeInteger(heartbeat) || heartbeat < 10 || heartbeat > 3_600_000) {
    throw new RangeError(`Cannot use heartbeat ${heartbeat}: it must be an integer from 10 to 3 600 000 ms`);
  }
  const inboxPrefix = checkSubject(o.inboxPrefix ?? "_INBOX", "an inbox prefix");
  const channel: ChannelOptions = {};
  if (o.maxMessage !== undefined) channel.maxMessage = o.maxMessage;
  if (o.highWaterMark !== undefined) channel.highWaterMark = o.highWaterMark;
  return { window, heartbeat, inboxPrefix, channel };
}

function control(type: number, ...words: number[]): Uint8Array {
  const out = new Uint8Array(1 + 4 * words.length);
  out[0] = type;
  const view = new DataView(out.buffer);
  words.forEach((w, i) => view.setUint32(1 + 4 * i, w));
  return out;
}

function greeting(type: number, s: Settings): Uint8Array {
  const out = new Uint8Array(10);
  out[0] = type;
  out[1] = VERSION;
  const view = new DataView(out.buffer);
  view.setUint32(2, s.window);
  view.setUint32(6, s.heartbeat);
  return out;
}

/** Reads a HELLO/WELCOME: the peer's window and beat, or undefined if malformed. */
function readGreeting(data: Uint8Array): { version: number; window: number; heartbeat: number } | undefined {
  if (data.byteLength < 10) return undefined;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { version: data[1]!, window: view.getUint32(2), heartbeat: view.getUint32(6) };
}

/** A send waiting for credit; `offset` says how much of it went out already (in pieces). */
interface Blocked {
  message: Uint8Array;
  offset: number;
  resolve(): void;
  reject(e: unknown): void;
  drop?: () => void;
}

/** One end of a channel: this side's inbox subscription, the peer's inbox, the two flow-control windows. */
class NatsChannel extends BaseChannel {
  readonly capabilities: Capabilities;
  readonly #link: NatsLink;
  /** Releases this channel's hold on a link opened for it alone (undefined for a shared link). */
  readonly #letGo: (() => Promise<void>) | undefined;
  readonly #peer: string;
  readonly #peerWindow: number;
  readonly #peerBeat: number;
  readonly #window: number;
  readonly #beat: number;
  #sub: { unsubscribe(): void } | undefined;
  #credit: number;
  #ungranted = 0;
  #paused = false;
  #blocked: Blocked[] = [];
  /** The largest piece one NATS message carries. */
  readonly #piece: number;
  /** Pieces of a message being received (MORE messages), and their size. */
  #partial: Uint8Array[] = [];
  #partialSize = 0;
  #heard = Date.now();
  #sent = Date.now();
  #timer: ReturnType<typeof setInterval> | undefined;
  #release: () => void;
  #peerEnded = false;
  #gone = false;
  /** Set by close() while sends wait for credit: called when none waits any more. */
  #unblocked: (() => void) | undefined;

  constructor(
    link: NatsLink,
    letGo: (() => Promise<void>) | undefined,
    description: string,
    peer: string,
    peerGreeting: { window: number; heartbeat: number },
    s: Settings,
  ) {
    super(description, s.channel);
    this.capabilities = capabilities;
    this.#piece = Math.max(1, link.maxPayload - 1);
    this.#link = link;
    this.#letGo = letGo;
    this.#peer = peer;
    this.#peerWindow = peerGreeting.window;
    this.#peerBeat = Math.max(10, peerGreeting.heartbeat);
    this.#credit = peerGreeting.window;
    this.#window = s.window;
    this.#beat = s.heartbeat;
    this.#release = link.use(this);
    this.#timer = setInterval(() => this.#tick(), Math.min(this.#beat, this.#peerBeat));
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Starts receiving on `subject` (this side's inbox); messages that came before are handed in by the caller. */
  attach(sub: { unsubscribe(): void }): void {
    this.#sub = sub;
  }

  /** Every NATS message on this side's inbox. */
  readonly onMessage = (msg: NatsMsgLike): void => {
    if (this.#gone) return;
    this.#heard = Date.now();
    const data = msg.data;
    switch (data[0]) {
      case DATA:
      case MORE: {
        const size = this.#partialSize + data.byteLength - 1;
        this.#ungranted += data.byteLength - 1 + OVERHEAD;
        if (size > this.maxMessage) {
          this.#fail(
            new MessageTooLargeError(
              `Cannot receive on ${this.description}: a message of ${size} bytes exceeds maxMessage (${this.maxMessage} bytes)`,
              size,
              this.maxMessage,
            ),
          );
          return;
        }
        // Copies: nats.js hands out views of its read buffer.
        if (data[0] === MORE) {
          this.#partial.push(data.slice(1));
          this.#partialSize = size;
        } else if (this.#partial.length === 0) {
          this.deliver(new Uint8Array(data.subarray(1)));
        } else {
          const whole = new Uint8Array(size);
          let at = 0;
          for (const p of this.#partial) {
            whole.set(p, at);
            at += p.byteLength;
          }
          whole.set(data.subarray(1), at);
          this.#partial = [];
          this.#partialSize = 0;
          this.deliver(whole);
        }
        if (!this.#paused && this.#ungranted >= this.#window / 4) this.#grant();
        return;
      }
      case CREDIT:
        if (data.byteLength >= 5) {
          this.#credit += new DataView(data.buffer, data.byteOffset, 5).getUint32(1);
          this.#flush();
        }
        return;
      case END:
        this.#peerEnded = true;
        this.#stop(new ClosedError(`Cannot receive on ${this.description}: the peer closed it`));
        return;
      case PING:
      case WELCOME: // a duplicate of the greeting
        return;
      default:
        this.#fail(new ProtocolError(`Cannot read ${this.description}: unknown message type ${data[0]}`));
    }
  };

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
    if (this.#gone) return Promise.reject(new ClosedError(`Cannot send on ${this.description}: it ended`));
    if (this.#blocked.length === 0 && message.byteLength <= this.#piece && this.#fits(message.byteLength)) {
      this.#publish(DATA, message);
      return undefined;
    }
    return new Promise<void>((resolve, reject) => {
      const entry: Blocked = { message: message.slice(), offset: 0, resolve, reject };
      if (signal) {
        const onAbort = () => {
          if (entry.offset > 0) return; // partly sent: the rest must follow, or the peer gets half a message
          const i = this.#blocked.indexOf(entry);
          if (i >= 0) this.#blocked.splice(i, 1);
          if (this.#blocked.length === 0) this.#unblocked?.();
          reject(abortError(signal));
        };
        signal.addEventListener("abort", onAbort, { once: true });
        entry.drop = () => signal.removeEventListener("abort", onAbort);
      }
      this.#blocked.push(entry);
      if (this.#blocked.length === 1) this.#flush();
    });
  }

  protected override _pause(): void {
    this.#paused = true;
  }

  protected override _resume(): void {
    this.#paused = false;
    if (this.#ungranted > 0) this.#grant();
  }

  protected async _close(): Promise<void> {
    // What waits for credit is still sent (the contract: the peer gets everything sent before close), unless the
    // peer goes first: then #stop rejects it.
    if (this.#blocked.length > 0 && !this.#gone) await new Promise<void>((r) => (this.#unblocked = r));
    if (!this.#gone && !this.#peerEnded) this.#raw(new Uint8Array([END]));
    this.#stop(new ClosedError(`Cannot receive on ${this.description}: it is closed`));
    if (this.#letGo) await this.#letGo();
    else await this.#link.connection.flush().catch(() => {});
  }

  /** The connection dropped: messages may be lost, so the channel ends. */
  linkLost(error: Error): void {
    this.#stop(new ClosedError(`Cannot use ${this.description}: ${error.message}`, { cause: error }));
  }

  /** Whether a piece of `size` bytes may go now: within credit, or nothing is outstanding. */
  #fits(size: number): boolean {
    return this.#credit >= size + OVERHEAD || this.#credit >= this.#peerWindow;
  }

  #publish(type: number, piece: Uint8Array): void {
    const out = new Uint8Array(piece.byteLength + 1);
    out[0] = type;
    out.set(piece, 1);
    this.#credit -= piece.byteLength + OVERHEAD;
    this.#raw(out);
  }

  #raw(payload: Uint8Array): void {
    this.#sent = Date.now();
    try {
      this.#link.connection.publish(this.#peer, payload);
    } catch (e) {
      this.#stop(new ClosedError(`Cannot send on ${this.description}: ${(e as Error)?.message ?? e}`, { cause: e }));
      throw new ClosedError(`Cannot send on ${this.description}: the NATS connection is closed`, { cause: e });
    }
  }

  #flush(): void {
    while (this.#blocked.length > 0) {
      const b = this.#blocked[0]!;
      const rest = b.message.byteLength - b.offset;
      const size = Math.min(rest, this.#piece);
      if (!this.#fits(size)) break;
      try {
        this.#publish(size < rest ? MORE : DATA, b.message.subarray(b.offset, b.offset + size));
      } catch (e) {
        this.#blocked.shift();
        b.drop?.();
        b.reject(e);
        continue;
      }
      b.offset += size;
      if (size === rest) {
        this.#blocked.shift();
        b.drop?.();
        b.resolve();
      }
    }
    if (this.#blocked.length === 0) this.#unblocked?.();
  }

  #grant(): void {
    const n = Math.min(this.#ungranted, 0xffffffff);
    this.#ungranted -= n;
    if (!this.#gone) {
      try {
        this.#raw(control(CREDIT, n));
      } catch {
        // ended by #raw
      }
    }
  }

  #tick(): void {
    const now = Date.now();
    if (now - this.#heard > MISSES * this.#peerBeat) {
      this.#stop(
        new ClosedError(
          `Cannot receive on ${this.description}: the peer stopped answering (nothing for ${MISSES} heartbeats of ${this.#peerBeat} ms)`,
        ),
      );
      return;
    }
    if (now - this.#sent >= this.#beat * 0.9) {
      try {
        this.#raw(new Uint8Array([PING]));
      } catch {
        // ended by #raw
      }
    }
  }

  #fail(error: Error): void {
    this.#stop(error);
    void this.close();
  }

  /** No more traffic either way: unsubscribe, stop the beat, fail what waits. Idempotent. */
  #stop(error: Error): void {
    this.end(error);
    if (this.#gone) return;
    this.#gone = true;
    clearInterval(this.#timer);
    this.#release();
    try {
      this.#sub?.unsubscribe();
    } catch {
      // the connection is closed already
    }
    const blocked = this.#blocked;
    this.#blocked = [];
    const sendError = this.#peerEnded
      ? new ClosedError(`Cannot send on ${this.description}: the peer closed it`)
      : new ClosedError(`Cannot send on ${this.description}: ${error.message}`, { cause: error });
    for (const b of blocked) {
      b.drop?.();
      b.reject(sendError);
    }
    this.#unblocked?.();
  }
}

class Listening extends QueuedListener implements NatsListener {
  readonly subject: string;
  readonly queue: string | undefined;
  readonly link: NatsLink;
  readonly #owned: boolean;
  readonly #letGo: (() => Promise<void>) | undefined;
  readonly #settings: Settings;
  readonly #sub: { unsubscribe(): void };
  #closing: Promise<void> | undefined;
  readonly #release: () => void;

  constructor(link: NatsLink, owned: boolean, subject: string, queue: string | undefined, s: Settings) {
    super();
    this.link = link;
    this.#owned = owned;
    this.#letGo = owned ? link.hold() : undefined;
    this.subject = subject;
    this.queue = queue;
    this.#settings = s;
    this.#sub = link.connection.subscribe(subject, {
      ...(queue === undefined ? {} : { queue }),
      callback: (error, msg) => {
        if (!error) this.#hello(msg);
      },
    });
    this.#release = link.use(this);
  }

  #hello(msg: NatsMsgLike): void {
    const data = msg.data;
    const reply = msg.reply;
    if (this.stopped || reply === undefined || data[0] !== HELLO) return; // not for us, or nobody to answer
    const g = readGreeting(data);
    const c = this.link.connection;
    if (g === undefined || g.version !== VERSION) {
      const text = `ipckit NATS channel version ${VERSION} only; got ${
        g === undefined ? "a malformed HELLO" : g.version
      }`;
      const bytes = new TextEncoder().encode(text);
      const out = new Uint8Array(bytes.byteLength + 1);
      out[0] = REFUSE;
      out.set(bytes, 1);
      c.publish(reply, out);
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
    );
    channel.attach(c.subscribe(mine, { callback: (error, m) => !error && channel.onMessage(m) }));
    c.publish(reply, greeting(WELCOME, this.#settings), { reply: mine });
    this.offer(channel);
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
 * Listens for channels on a NATS subject. With `queue`, listeners of the same group share the connections.
 *
 * @throws {TypeError} for a bad subject or options.
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
  const { link, owned } = await linkFor(pickTarget(options));
  const listener = new Listening(link, owned, subject, options.queue, s);
  await link.connection.flush(); // the subscription is registered on the server: connects now find it
  return listener;
}

/**
 * Connects a channel to the listener on a NATS subject (one of its queue group).
 *
 * @throws {NotFoundError} when nothing listens on the subject; {@linkcode TimeoutError} when no answer comes.
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
      if (msg.data[0] === REFUSE) {
        const why = new TextDecoder().decode(msg.data.subarray(1));
        return settle.reject(new ProtocolError(`Cannot connect to NATS subject "${subject}": refused (${why})`));
      }
      const g = msg.data[0] === WELCOME ? readGreeting(msg.data) : undefined;
      if (g === undefined || msg.reply === undefined) {
        return settle.reject(new ProtocolError(`Cannot connect to NATS subject "${subject}": a malformed answer`));
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
  const onAbort = () => settle.reject(abortError(options.signal!));
  options.signal?.addEventListener("abort", onAbort, { once: true });
  try {
    c.publish(subject, greeting(HELLO, s), { reply: mine });
    return await answered;
  } catch (e) {
    sub.unsubscribe();
    if (owned) await link.close();
    throw e;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", onAbort);
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
