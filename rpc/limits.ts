/**
 * What bounds the memory a peer can make an RPC server hold: calls in flight per connection, and replies that the
 * channel has not taken yet (reading stops while they back up). Shared by the ipckit protocol (`peer.ts`) and the
 * JSON-RPC server (`jsonrpc.ts`).
 *
 * @module
 */
import type { Channel } from "../transports/channel.ts";

const RESOLVED = Promise.resolve();

/** Options that bound what one connection may make this side hold. */
export interface ServerLimits {
  /**
   * Calls (and notifications) being handled at once on one connection. Past it a call is answered at once with a
   * `QueueFullError` (JSON-RPC: error -32001) and a notification is not run (`onError` hears of it); the
   * connection lives. Default 1024.
   */
  maxInFlight?: number;
  /**
   * Bytes of replies handed to the channel but not yet taken by it (a peer that does not read its replies) before
   * this side stops reading the connection; it reads again once half of them went out. Each reply counts its size
   * plus {@linkcode REPLY_OVERHEAD}, so many tiny replies are bounded too. Default 1 MiB.
   */
  replyHighWaterMark?: number;
  /**
   * Send the stack trace of a handler's error to the caller. Off by default: a stack names the server's files and
   * code paths, which a caller should not learn; name, message, `code` and `data` travel either way.
   */
  exposeStack?: boolean;
}

/** The default of {@linkcode ServerLimits.maxInFlight}. */
export const DEFAULT_MAX_IN_FLIGHT = 1024;
/** The default of {@linkcode ServerLimits.replyHighWaterMark}. */
export const DEFAULT_REPLY_HIGH_WATER_MARK = 1024 * 1024;
/** What an unsent reply costs beyond its bytes (the message, its promise and bookkeeping), in bytes. */
export const REPLY_OVERHEAD = 128;

/**
 * Validates {@linkcode ServerLimits}.
 *
 * @throws {RangeError} when a number is not a positive integer.
 * @throws {TypeError} when `exposeStack` is not a boolean.
 */
export function checkLimits(options: ServerLimits, what: string): Required<ServerLimits> {
  const maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
  if (!Number.isSafeInteger(maxInFlight) || maxInFlight < 1) {
    throw new RangeError(`Cannot ${what} with maxInFlight ${String(maxInFlight)}: it must be a positive integer`);
  }
  const replyHighWaterMark = options.replyHighWaterMark ?? DEFAULT_REPLY_HIGH_WATER_MARK;
  if (!Number.isSafeInteger(replyHighWaterMark) || replyHighWaterMark < 1) {
    throw new RangeError(
      `Cannot ${what} with replyHighWaterMark ${String(replyHighWaterMark)}: it must be a positive integer`,
    );
  }
  const exposeStack = options.exposeStack ?? false;
  if (typeof exposeStack !== "boolean") {
    throw new TypeError(`Cannot ${what} with exposeStack ${String(exposeStack)}: it must be a boolean`);
  }
  return { maxInFlight, replyHighWaterMark, exposeStack };
}

/**
 * The replies of one connection on their way out: it counts what the channel has not taken yet, so that the read
 * loop can stop reading new calls while a peer leaves its replies unread (`full`, then `drained()`).
 */
export class Outbox {
  readonly #channel: Channel;
  readonly #highWaterMark: number;
  #bytes = 0;
  #waiter: (() => void) | undefined;

  constructor(channel: Channel, highWaterMark: number) {
    this.#channel = channel;
    this.#highWaterMark = highWaterMark;
  }

  /** True while the unsent replies reach the high-water mark: the read loop waits for `drained()`. */
  get full(): boolean {
    return this.#bytes >= this.#highWaterMark;
  }

  /** The bytes (with overhead) of replies the channel has not taken yet. */
  get unsent(): number {
    return this.#bytes;
  }

  /**
   * Sends one reply; `onError` hears why it failed (a closed channel, an over-size message). The promise settles
   * when the channel took the reply.
   */
  send(bytes: Uint8Array, onError?: (e: unknown) => void): Promise<void> {
    if (this.#channel.trySend !== undefined) {
      // Taken at once (a shared-memory ring with room): nothing stays unsent, no promise to settle.
      try {
        if (this.#channel.trySend(bytes)) return RESOLVED;
      } catch (e) {
        if (onError) {
          onError(e);
          return RESOLVED;
        }
        return Promise.reject(e);
      }
    }
    const cost = bytes.byteLength + REPLY_OVERHEAD;
    this.#bytes += cost;
    let sent: Promise<void>;
    try {
      sent = this.#channel.send(bytes);
    } catch (e) {
      sent = Promise.reject(e); // a Channel of the application's own that throws rather than rejects
    }
    return sent.then(() => this.#release(cost), (e) => {
      this.#release(cost);
      if (onError) onError(e);
      else throw e;
    });
  }

  /** Resolves once the unsent replies fell to half the high-water mark (or `wake()` was called). */
  drained(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise<void>((resolve) => (this.#waiter = resolve));
  }

  /** Ends a wait in `drained()` (the connection is ending). */
  wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  #release(cost: number): void {
    this.#bytes -= cost;
    if (this.#waiter !== undefined && this.#bytes <= this.#highWaterMark / 2) this.wake();
  }
}
