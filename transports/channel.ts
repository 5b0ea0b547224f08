/**
 * The Channel contract: what every ipckit transport promises, and the base class that keeps the promise once for
 * all of them (validation, receive queue, timeouts, abort, close-once).
 *
 * Every transport keeps this list, and `tests/conformance/channel.ts` checks exactly this list:
 *
 * 1. Boundaries: each `receive()` returns exactly one message as it was sent (0 bytes to `maxMessage`).
 * 2. Order and integrity: messages arrive in the order sent, none lost, none duplicated (for transports whose
 *    capabilities say `ordered` and `reliable`).
 * 3. Both directions are independent: both sides may send before either reads, without deadlock, up to the
 *    buffered volume (kernel buffers plus `highWaterMark` on the receiving side); beyond it `send()` waits.
 * 4. A message over `maxMessage` is rejected by `send()` with `MessageTooLargeError`; nothing is written and the
 *    channel stays usable. A receiver that is sent one anyway rejects with `MessageTooLargeError` and closes.
 * 5. `close()` is idempotent. The peer receives every message sent before `close()`, then `receive()` rejects
 *    with `ClosedError`. After the peer's close, `send()` rejects with `ClosedError`.
 * 6. `send()` after `close()` rejects with `ClosedError`; pending `receive()` calls reject with `ClosedError`.
 * 7. `receive({ signal, timeout })`: an abort rejects with the signal's reason (an `AbortError` DOMException by
 *    default) and a timeout with `TimeoutError`; neither loses a message: it stays for the next receive.
 * 8. A broken peer (a truncated frame, a reset connection) ends the channel with `ProtocolError` or
 *    `ClosedError` (with the cause); it never hangs and never crashes the process.
 *
 * @module
 */
import { Fifo } from "../async/fifo.ts";
import { Waiters } from "../async/waiters.ts";
import { messageIterator } from "../async/message_iterator.ts";
import { abortError, ClosedError, MessageTooLargeError, TimeoutError } from "../errors.ts";
import { DEFAULT_MAX_MESSAGE, MAX_FRAME } from "./framing.ts";
import { type Counters, track } from "../shm/stats.ts";

/** What a transport can promise. */
export interface Capabilities {
  /** Messages arrive in the order sent. */
  readonly ordered: boolean;
  /** Messages are never lost or duplicated while both sides live. */
  readonly reliable: boolean;
  /** The largest message the transport can carry at all, in bytes. */
  readonly maxMessage: number;
  /** The peer may be on another host. */
  readonly crossHost: boolean;
  /**
   * Each message is one OS datagram and there is no connection: `close()` is local (the peer is not told, and this
   * end does not learn of the peer's close), and a message over the receiver's `maxMessage` is discarded.
   */
  readonly datagram: boolean;
}

/** A message channel between two endpoints. See the module doc for the contract. */
export interface Channel extends AsyncIterable<Uint8Array>, AsyncDisposable {
  /**
   * Sends one message. The bytes are copied or handed to the OS before the promise settles: the buffer may be
   * reused once `send()` returned. Resolves when the message is queued within the transport's limits.
   */
  send(message: Uint8Array, options?: SendOptions): Promise<void>;
  /** Receives the next message; rejects with `ClosedError` once the channel has ended and is drained. */
  receive(options?: ReceiveOptions): Promise<Uint8Array>;
  /**
   * Sends without waiting, where the transport can tell at once: true when the message was taken (in order: never
   * ahead of a `send()` still waiting), false when it would have to wait (then `send()` it). Throws what `send()`
   * would reject with. Optional: RPC uses it when there (no promise per message), and `send()` otherwise.
   */
  trySend?(message: Uint8Array): boolean;
  /**
   * `trySend` of the first `length` bytes of `data` (copied at once): for a sender that built the message in a
   * buffer of its own and would otherwise copy it out first. Optional; RPC uses it when there.
   */
  trySendPart?(data: Uint8Array, length: number): boolean;
  /**
   * Receives without waiting: the next message, or undefined when none is there yet. Throws what `receive()` would
   * reject with once the channel ended and everything was received. Optional, as `trySend`.
   */
  tryReceive?(): Uint8Array | undefined;
  /**
   * Receives the next message as `read` makes it from the bytes where they lie (`data.subarray(offset, offset +
   * length)`, valid only during the call): no array per message. Resolves with what `read` returned (never
   * undefined: a `read` that returns undefined is a TypeError). What `read` throws rejects the receive, its message
   * counted as received. Optional; RPC uses it when there.
   */
  receiveWith?<T>(read: (data: Uint8Array, offset: number, length: number) => T, options?: ReceiveOptions): Promise<T>;
  /** `receiveWith` without waiting: what `read` returned, or undefined when no message is there yet. Optional. */
  tryReceiveWith?<T>(read: (data: Uint8Array, offset: number, length: number) => T): T | undefined;
  /** Closes this end; idempotent. The peer receives every message sent before, then the end. */
  close(): Promise<void>;
  /** True once `close()` was called or the channel ended. */
  readonly closed: boolean;
  /** What this transport promises. */
  readonly capabilities: Capabilities;
}

/** Options of {@linkcode Channel.send}. */
export interface SendOptions {
  /** Aborts the send while it waits for room; a message already handed to the transport is not taken back. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Channel.receive}. */
export interface ReceiveOptions {
  /** Aborts the wait. */
  signal?: AbortSignal;
  /** Gives up after this many milliseconds with `TimeoutError`. */
  timeout?: number;
}

/** Options common to every channel. */
export interface ChannelOptions {
  /** Largest message accepted in either direction, in bytes. Default 64 MiB. */
  maxMessage?: number;
  /**
   * Bytes of received messages held in memory before reading from the OS pauses (backpressure). Each message counts
   * its size plus {@linkcode MESSAGE_OVERHEAD} (what holding it costs), so many tiny messages pause reading as
   * surely as a few big ones: at most `highWaterMark / MESSAGE_OVERHEAD` messages wait. At least one message is
   * always held. Default 16 MiB.
   */
  highWaterMark?: number;
}

/**
 * What one queued message costs in memory beside its bytes (the `Uint8Array` object, its slot in the queue), in
 * bytes: each received message counts `byteLength + MESSAGE_OVERHEAD` toward `highWaterMark`. Without it a peer
 * sending empty messages would never fill the queue while each one still costs about 40 to 110 bytes of heap.
 *
 * @example
 * ```ts
 * import { MESSAGE_OVERHEAD } from "ipckit";
 * const highWaterMark = 16 * 1024 * 1024; // the default
 * console.log(highWaterMark / MESSAGE_OVERHEAD); // 131072: the most empty messages held before reading pauses
 * ```
 */
export const MESSAGE_OVERHEAD = 128;

/**
 * The capabilities of a reliable message transport (a framed byte stream, or NATS with its credit): ordered,
 * reliable, messages up to `MAX_FRAME` bytes, not datagrams. `crossHost` says whether peers may be on other hosts.
 */
export function reliableCapabilities(crossHost: boolean): Capabilities {
  return { ordered: true, reliable: true, maxMessage: MAX_FRAME, crossHost, datagram: false };
}

/** A source of channels: a listening socket. */
export interface Listener extends AsyncIterable<Channel>, AsyncDisposable {
  /** Waits for the next connection; rejects with `ClosedError` after `close()`. */
  accept(options?: { signal?: AbortSignal }): Promise<Channel>;
  /** Stops listening (and removes a Unix socket file it created). Accepted channels stay open. */
  close(): Promise<void>;
}

/** Validates `maxMessage` / `highWaterMark` options. */
export function channelLimits(options: ChannelOptions, transportMax = MAX_FRAME): {
  maxMessage: number;
  highWaterMark: number;
} {
  const maxMessage = options.maxMessage ?? Math.min(DEFAULT_MAX_MESSAGE, transportMax);
  if (!Number.isSafeInteger(maxMessage) || maxMessage < 0 || maxMessage > transportMax) {
    throw new RangeError(`Cannot use maxMessage ${maxMessage}: it must be an integer from 0 to ${transportMax}`);
  }
  const highWaterMark = options.highWaterMark ?? 16 * 1024 * 1024;
  if (!Number.isSafeInteger(highWaterMark) || highWaterMark < 1) {
    throw new RangeError(`Cannot use highWaterMark ${highWaterMark}: it must be a positive integer`);
  }
  return { maxMessage, highWaterMark };
}

/** Options that say nothing: passed to `Waiters.wait()` so the hot path allocates no options object. */
const NO_WAIT: ReceiveOptions = Object.freeze({});

/**
 * Waits on `waiters` for a `receive()`: it gives up when `options.signal` aborts (with its reason) or after
 * `options.timeout` ms (with `TimeoutError`), leaving the queue so nothing it would have taken is lost.
 */
export function receiveFrom<T>(waiters: Waiters<T>, description: string, options?: ReceiveOptions): Promise<T> {
  if (options === undefined) return waiters.wait(NO_WAIT);
  const { timeout } = options;
  if (timeout !== undefined && !(timeout >= 0)) {
    return Promise.reject(new RangeError(`Cannot receive with timeout ${timeout}: it must be >= 0 milliseconds`));
  }
  return waiters.wait(
    options,
    () => new TimeoutError(`Cannot receive on ${description}: timed out after ${timeout} ms`),
  );
}

// Where a channel's counters are (`COUNTERS.channel` of shm/stats.ts).
const MESSAGES_OUT = 0, BYTES_OUT = 1, MESSAGES_IN = 2, BYTES_IN = 3, ERRORS = 7;

/**
 * The shared half of every channel. A transport extends it and implements `_send`, `_close` and (optionally)
 * `_pause`/`_resume`; it reports incoming messages with `deliver()` and the end with `end()`.
 */
export abstract class BaseChannel implements Channel {
  abstract readonly capabilities: Capabilities;
  readonly maxMessage: number;
  readonly highWaterMark: number;
  /** A short description for error messages, like `Unix socket "/tmp/a.sock"`. */
  protected readonly description: string;

  #queue = new Fifo<Uint8Array>();
  /** Bytes of the queued messages plus MESSAGE_OVERHEAD each: what backpressure compares to highWaterMark. */
  #queuedBytes = 0;
  #waiters = new Waiters<Uint8Array>();
  #paused = false;
  /** Set when no more messages will arrive: the reason receive() rejects with once drained. */
  #endError: Error | undefined;
  #closed = false;
  #closing: Promise<void> | undefined;
  /**
   * This end's live counters (`ipckit stats`, named by its description): messages and bytes each way, the end by
   * an error; a transport adds what it knows (a NATS channel: sends that waited for credit, as `sleeps`).
   */
  protected readonly stats: Counters;

  constructor(description: string, options: ChannelOptions = {}, transportMax?: number) {
    const limits = channelLimits(options, transportMax);
    this.maxMessage = limits.maxMessage;
    this.highWaterMark = limits.highWaterMark;
    this.description = description;
    this.stats = track("channel", description);
  }

  /** Writes one validated message. Must not reorder messages. */
  protected abstract _send(message: Uint8Array, signal?: AbortSignal): Promise<void> | undefined;
  /** Releases the transport after a local close (flush, then signal the end to the peer). */
  protected abstract _close(): Promise<void>;
  /** Stops reading from the OS (flow control). */
  protected _pause(): void {}
  /** Resumes reading. */
  protected _resume(): void {}

  get closed(): boolean {
    return this.#closed || this.#endError !== undefined;
  }

  /** True once no more messages will arrive. */
  protected get ended(): boolean {
    return this.#endError !== undefined;
  }

  send(message: Uint8Array, options?: SendOptions): Promise<void> {
    if (!(message instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Cannot send on ${this.description}: the message must be a Uint8Array`));
    }
    if (this.#closed) return Promise.reject(new ClosedError(`Cannot send on ${this.description}: it is closed`));
    if (this.#endError !== undefined && !this.sendAfterEnd) {
      return Promise.reject(
        new ClosedError(`Cannot send on ${this.description}: the peer closed it`, { cause: this.#endError }),
      );
    }
    if (message.byteLength > this.maxMessage) {
      return Promise.reject(
        new MessageTooLargeError(
          `Cannot send a message of ${message.byteLength} bytes on ${this.description}: it exceeds maxMessage (${this.maxMessage} bytes)`,
          message.byteLength,
          this.maxMessage,
        ),
      );
    }
    if (options?.signal?.aborted) return Promise.reject(abortError(options.signal));
    const v = this.stats.values;
    v[MESSAGES_OUT]!++;
    v[BYTES_OUT]! += message.byteLength;
    try {
      return this._send(message, options?.signal) ?? Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Whether send() still works after the peer ended its direction (datagram-like transports). */
  protected get sendAfterEnd(): boolean {
    return false;
  }

  receive(options?: ReceiveOptions): Promise<Uint8Array> {
    if (this.#queue.length > 0) return Promise.resolve(this.#shift());
    if (this.#closed) return Promise.reject(new ClosedError(`Cannot receive on ${this.description}: it is closed`));
    if (this.#endError !== undefined) return Promise.reject(this.#endError);
    if (this.#paused) this.#resumeIfRoom();
    // The hot path (no signal, no timeout) allocates one promise and one small record, no closures.
    return receiveFrom(this.#waiters, this.description, options);
  }

  #shift(): Uint8Array {
    const m = this.#queue.shift()!;
    this.#queuedBytes -= m.byteLength + MESSAGE_OVERHEAD;
    if (this.#paused) this.#resumeIfRoom();
    return m;
  }

  #resumeIfRoom(): void {
    if (this.#queuedBytes < this.highWaterMark / 2 || this.#queue.length === 0) {
      this.#paused = false;
      this._resume();
    }
  }

  /** Hands one received message to a waiting `receive()` or queues it. */
  protected deliver(message: Uint8Array): void {
    if (this.#closed) return; // closed locally: discard until the peer's end
    const v = this.stats.values;
    v[MESSAGES_IN]!++;
    v[BYTES_IN]! += message.byteLength;
    if (this.#waiters.wake(message)) return;
    this.#queue.push(message);
    this.#queuedBytes += message.byteLength + MESSAGE_OVERHEAD;
    if (!this.#paused && this.#queuedBytes >= this.highWaterMark) {
      this.#paused = true;
      this._pause();
    }
  }

  /**
   * Marks the end of incoming messages. Queued messages stay receivable; then `receive()` rejects with `error`
   * (a `ClosedError` for a clean end). The first call wins.
   */
  protected end(error?: Error): void {
    if (this.#endError !== undefined) return;
    this.#endError = error ?? new ClosedError(`Cannot receive on ${this.description}: the peer closed it`);
    this.#waiters.fail(this.#endError);
    if (!(this.#endError instanceof ClosedError)) this.stats.values[ERRORS]!++;
    this.stats.close();
  }

  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.#closed = true;
    this.stats.close();
    this.#waiters.fail(new ClosedError(`Cannot receive on ${this.description}: it is closed`));
    this.#queue.clear();
    this.#queuedBytes = 0;
    if (this.#paused) {
      this.#paused = false;
      this._resume(); // keep reading (and discarding) until the peer's end, so nothing is reset
    }
    return (this.#closing = this._close());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Iterates received messages until the channel ends (a plain iterator: cheaper than an async generator). */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return messageIterator(this);
  }
}

export { messageIterator };
