/**
 * One end of a NATS channel (see `transports/nats.ts` for the wire format): this side's inbox subscription, the
 * peer's inbox, the two flow-control windows and the heartbeats. It trusts nothing the peer sends: every message is
 * decoded strictly, the credit this side granted is enforced, the pieces of a large message are bounded by
 * `maxMessage`, and the peer's heartbeat is clamped; a peer that breaks the format is told why (REFUSE) and the
 * channel ends with `ProtocolError`.
 *
 * Why one file of ~440 lines: one end of a NATS channel (credit, heartbeats, pieces of large messages, refusals) is
 * one state machine over shared private state.
 *
 * @module
 */
import { onAbort } from "../async/abort.ts";
import { Fifo } from "../async/fifo.ts";
import { abortError, ClosedError, MessageTooLargeError, ProtocolError } from "../errors.ts";
import type { NatsMsgLike } from "../runtimes/nats.ts";
import {
  BaseChannel,
  type Capabilities,
  type ChannelOptions,
  type ReceiveOptions,
  reliableCapabilities,
} from "./channel.ts";
import type { NatsLink } from "./nats_link.ts";
import {
  clampBeat,
  control,
  CREDIT,
  DATA,
  END,
  type Greeting,
  HELLO,
  MISSES,
  MORE,
  OVERHEAD,
  PING,
  readFrame,
  REFUSE,
  refuse,
  WELCOME,
} from "./nats_wire.ts";

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
export const capabilities: Capabilities = reliableCapabilities(true);

/** Validated options of one side. */
export interface Settings {
  window: number;
  heartbeat: number;
  /** The longest heartbeat a peer is held to (never below `heartbeat`). */
  maxHeartbeat: number;
  inboxPrefix: string;
  channel: ChannelOptions;
}

/** A send waiting for credit; `offset` says how much of it went out already (in pieces). */
interface Blocked {
  message: Uint8Array;
  offset: number;
  resolve(): void;
  reject(e: unknown): void;
  drop?: () => void;
}

/**
 * Where a NATS channel's own counters are in `COUNTERS.channel` (shm/stats.ts): sends that waited for credit
 * (`sleeps`), the peer's window (`capacity`), and the credit this side has now (`credit`).
 */
const SLEEPS = 4, CAPACITY = 6, CREDIT_NOW = 8;

/** One end of a channel. Made by `nats.listen` (accepted side) and `nats.connect`. */
export class NatsChannel extends BaseChannel {
  readonly capabilities: Capabilities = capabilities;
  readonly #link: NatsLink;
  /** Releases this channel's hold on a link opened for it alone (undefined for a shared link). */
  readonly #letGo: (() => Promise<void>) | undefined;
  readonly #peer: string;
  readonly #peerWindow: number;
  /** The peer's heartbeat, clamped: it is declared gone after MISSES of these without a word. */
  readonly #peerBeat: number;
  readonly #window: number;
  /** How often this side says something (a PING when nothing else went): the shorter of the two beats. */
  readonly #beat: number;
  #sub: { unsubscribe(): void } | undefined;
  /** Bytes this side may still send (the peer's grants minus what was sent). */
  #credit: number;
  /** Bytes the peer may still send: this side's window, minus what came, plus what was granted. */
  #allowed: number;
  /** Bytes that came and were not granted back yet. */
  #ungranted = 0;
  /** Wire bytes of messages delivered and not taken by receive() yet: no credit while they are half the window. */
  #held = 0;
  /** Waiting in a listener's accept queue: nothing is granted until accept() takes it. */
  #waiting: boolean;
  #paused = false;
  /** Sends waiting for credit, in order. */
  readonly #blocked = new Fifo<Blocked>();
  /** The largest piece one NATS message carries. */
  readonly #piece: number;
  /** The pieces of a message being received (MORE messages), in one buffer that grows as they come. */
  #partial: Uint8Array | undefined;
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
    peerGreeting: Greeting,
    s: Settings,
    waiting = false,
  ) {
    super(description, s.channel);
    this.#piece = Math.max(1, link.maxPayload - 1);
    this.#link = link;
    this.#letGo = letGo;
    this.#peer = peer;
    this.#peerWindow = peerGreeting.window;
    this.#peerBeat = clampBeat(peerGreeting.heartbeat, s.maxHeartbeat);
    this.#credit = peerGreeting.window;
    this.stats.values[CAPACITY] = peerGreeting.window;
    this.stats.values[CREDIT_NOW] = this.#credit;
    this.#window = s.window;
    this.#allowed = s.window;
    this.#waiting = waiting;
    // A peer holds this side to its own (clamped) beat, which may be shorter than this side's: say something at
    // the shorter of the two, so that an honest peer never counts this side as gone.
    this.#beat = Math.min(s.heartbeat, this.#peerBeat);
    this.#release = link.use(this);
    this.#timer = setInterval(() => this.#tick(), this.#beat);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Starts receiving on `subject` (this side's inbox); messages that came before are handed in by the caller. */
  attach(sub: { unsubscribe(): void }): void {
    this.#sub = sub;
  }

  /** Taken from the accept queue: credit flows from now on. */
  accepted(): void {
    this.#waiting = false;
    this.#maybeGrant(true);
  }

  /** Every NATS message on this side's inbox. */
  readonly onMessage = (msg: NatsMsgLike): void => {
    if (this.#gone) return;
    this.#heard = Date.now();
    let frame;
    try {
      frame = readFrame(msg.data);
    } catch (e) {
      return this.#violation(e as ProtocolError);
    }
    switch (frame.type) {
      case DATA:
      case MORE:
        return this.#receivePiece(frame.type, frame.body);
      case CREDIT:
        // The peer grants back what it received, so this side's credit never exceeds the peer's window.
        if (this.#credit + frame.bytes > this.#peerWindow) {
          return this.#violation(
            new ProtocolError(`more credit than was used (${frame.bytes} bytes, ${this.#credit} unused)`),
          );
        }
        this.#credit += frame.bytes;
        this.stats.values[CREDIT_NOW] = this.#credit;
        this.#flush();
        return;
      case END:
        this.#peerEnded = true;
        this.#stop(new ClosedError(`Cannot receive on ${this.description}: the peer closed it`));
        return;
      case PING:
      case WELCOME: // a duplicate of the greeting
        return;
      case REFUSE:
        // The peer ended the channel, saying why (this side broke the format, or sent more than its maxMessage):
        // the end of a channel, as after END, with the reason. No END will come.
        this.#peerEnded = true;
        this.#stop(new ClosedError(`Cannot use ${this.description}: the peer ended it: ${frame.reason}`));
        void this.#letGo?.();
        return;
      case HELLO:
        return this.#violation(new ProtocolError("a HELLO on an open channel"));
    }
  };

  #receivePiece(type: typeof DATA | typeof MORE, body: Uint8Array): void {
    const cost = body.byteLength + OVERHEAD;
    // The sender sends within its credit, or one piece of any size when nothing is outstanding (allowed is then
    // the whole window): anything else is a peer that does not wait for CREDIT.
    if (this.#allowed < cost && this.#allowed < this.#window) {
      return this.#violation(
        new ProtocolError(
          `the peer sent ${cost} bytes beyond the credit it was granted (${Math.max(0, this.#allowed)} bytes left)`,
        ),
      );
    }
    this.#allowed -= cost;
    this.#ungranted += cost;
    if (type === MORE && body.byteLength === 0) {
      return this.#violation(new ProtocolError("an empty MORE piece (a piece carries at least one byte)"));
    }
    const size = this.#partialSize + body.byteLength;
    if (size > this.maxMessage) {
      const error = new MessageTooLargeError(
        `Cannot receive on ${this.description}: a message of ${size} bytes exceeds maxMessage (${this.maxMessage} bytes)`,
        size,
        this.maxMessage,
      );
      return this.#violation(error, `a message of ${size} bytes exceeds maxMessage (${this.maxMessage} bytes)`);
    }
    if (type === MORE) {
      this.#append(body);
    } else {
      let message: Uint8Array;
      if (this.#partial === undefined) {
        message = body.slice(); // nats.js hands out views of its read buffer
      } else {
        this.#append(body);
        message = this.#partial.byteLength === size ? this.#partial : this.#partial.slice(0, size);
        this.#partial = undefined;
        this.#partialSize = 0;
      }
      this.#held += size + OVERHEAD;
      this.deliver(message);
    }
    this.#maybeGrant(false);
  }

  /** Adds a piece to the message being received; the buffer at least doubles when it grows (linear time). */
  #append(body: Uint8Array): void {
    const size = this.#partialSize + body.byteLength;
    const have = this.#partial?.byteLength ?? 0;
    if (have < size) {
      const grown = new Uint8Array(Math.min(Math.max(size, 2 * have, 65536), this.maxMessage));
      if (this.#partial) grown.set(this.#partial.subarray(0, this.#partialSize));
      this.#partial = grown;
    }
    this.#partial!.set(body, this.#partialSize);
    this.#partialSize = size;
  }

  override receive(options?: ReceiveOptions): Promise<Uint8Array> {
    return super.receive(options).then(this.#taken);
  }

  readonly #taken = (message: Uint8Array): Uint8Array => {
    this.#held -= message.byteLength + OVERHEAD;
    this.#maybeGrant(false);
    return message;
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
        entry.drop = onAbort(signal, () => {
          if (entry.offset > 0) return; // partly sent: the rest must follow, or the peer gets half a message
          this.#blocked.remove(entry);
          if (this.#blocked.length === 0) this.#unblocked?.();
          reject(abortError(signal));
        });
      }
      this.#blocked.push(entry);
      this.stats.values[SLEEPS]!++; // waits for credit
      if (this.#blocked.length === 1) this.#flush();
    });
  }

  protected override _pause(): void {
    this.#paused = true;
  }

  protected override _resume(): void {
    this.#paused = false;
    this.#maybeGrant(true);
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
    this.stats.values[CREDIT_NOW] = this.#credit;
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
      const b = this.#blocked.peek()!;
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

  /**
   * Grants CREDIT for what came, once a quarter of the window did (or, with `any`, whatever came), unless the
   * application has not taken half a window of messages yet, the channel is paused, or it waits to be accepted:
   * so a peer never gets this side to hold more than about 1.5 windows (plus one message being assembled).
   */
  #maybeGrant(any: boolean): void {
    if (this.#gone || this.#paused || this.#waiting || this.#ungranted === 0) return;
    if (this.#held >= this.#window / 2) return;
    if (!any && this.#ungranted < this.#window / 4) return;
    const n = Math.min(this.#ungranted, 0xffffffff);
    this.#ungranted -= n;
    this.#allowed += n;
    try {
      this.#raw(control(CREDIT, n));
    } catch {
      // ended by #raw
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
    // Less than a quarter of the window came and the peer went quiet: it may wait for this credit (a message
    // larger than 3/4 of the window), so grant it once a beat.
    this.#maybeGrant(true);
    if (now - this.#sent >= this.#beat * 0.9) {
      try {
        this.#raw(new Uint8Array([PING]));
      } catch {
        // ended by #raw
      }
    }
  }

  /**
   * The peer broke the format: tell it why (REFUSE) and end with `error`. What came before stays receivable; a link
   * opened for this channel alone is closed now (a hostile peer gets no more traffic), the rest at close().
   */
  #violation(error: ProtocolError, reason = error.message): void {
    if (!this.#gone) {
      try {
        this.#link.connection.publish(this.#peer, refuse(reason));
      } catch {
        // the connection is closed: nobody to tell
      }
    }
    this.#peerEnded = true; // it will get no END: the REFUSE said it all
    const ended = error instanceof MessageTooLargeError
      ? error
      : new ProtocolError(`Cannot read ${this.description}: ${error.message}`);
    this.#stop(ended);
    void this.#letGo?.();
  }

  /** No more traffic either way: unsubscribe, stop the beat, fail what waits. Idempotent. */
  #stop(error: Error): void {
    this.end(error);
    if (this.#gone) return;
    this.#gone = true;
    clearInterval(this.#timer);
    this.#release();
    this.#partial = undefined;
    try {
      this.#sub?.unsubscribe();
    } catch {
      // the connection is closed already
    }
    const blocked = this.#blocked.clear();
    const sendError = this.#peerEnded && error instanceof ClosedError
      ? new ClosedError(`Cannot send on ${this.description}: the peer closed it`)
      : new ClosedError(`Cannot send on ${this.description}: ${error.message}`, { cause: error });
    for (const b of blocked) {
      b.drop?.();
      b.reject(sendError);
    }
    this.#unblocked?.();
  }
}
