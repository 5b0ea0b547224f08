/**
 * The two ends of a call's state: {@linkcode Call} (a call being served, with its stream credit) and
 * {@linkcode RemoteStream} (the caller's side of a streamed result). Both keep the credit rules of `protocol.ts`:
 * a server pulls its handler no further than the caller's credit, and a caller holds no more items than it granted.
 *
 * @module
 */
import { Fifo, Waiters } from "../async/mod.ts";
import { ProtocolError } from "../errors.ts";
import type { CallContext, RpcPeer } from "./peer.ts";
import { describe, MAX_WINDOW } from "./protocol.ts";
import type { Latency } from "../shm/stats_latency.ts";

/**
 * A call being served: the handler's `this`. Its AbortSignal is made on first use only (most handlers never look),
 * already aborted if the call was cancelled before.
 */
export class Call implements CallContext {
  readonly method: string;
  readonly peer: RpcPeer;
  /** Stream items the caller will still take. */
  credit: number;
  wake: (() => void) | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  aborted = false;
  /** The peer's own: the method's latency slot (`ipckit stats`) and when this call started, if it is timed. */
  latency: Latency | undefined;
  started = -1;
  #controller: AbortController | undefined;
  #reason: unknown;

  constructor(method: string, peer: RpcPeer, credit: number) {
    this.method = method;
    this.peer = peer;
    this.credit = credit;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /**
   * The caller granted `n` more items.
   *
   * @throws {ProtocolError} when `n` is not an integer from 1 to 2^20, or the credit would pass 2^20: no caller
   * grants more than its window, so the peer is broken or hostile.
   */
  grant(n: unknown): void {
    if (!checkCredit(n) || this.credit + n > MAX_WINDOW) {
      throw new ProtocolError(
        `Cannot read an RPC message: a stream credit of ${
          describe(n)
        } (with ${this.credit} outstanding) is out of range`,
      );
    }
    this.credit += n;
    this.wake?.();
  }

  cancel(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    // The deadline has nothing left to do: a long one would otherwise keep the process alive after the close.
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.#reason = reason;
    this.#controller?.abort(reason);
    this.wake?.();
  }
}

/** Whether `n` is a valid stream credit or window: an integer from 1 to 2^20. */
export function checkCredit(n: unknown): n is number {
  return typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= MAX_WINDOW;
}

const END: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

/** The caller's side of a streamed result. */
export class RemoteStream implements AsyncIterable<unknown> {
  readonly method: string;
  #items = new Fifo<unknown>();
  #waiters = new Waiters<IteratorResult<unknown>>();
  #done = false;
  #error: unknown;
  #consumed = 0;
  /** Items the server may still send: the window, plus what was granted since, minus what arrived. */
  #allowed: number;
  readonly #window: number;
  readonly #credit: (n: number) => void;
  readonly #cancel: () => void;

  constructor(method: string, window: number, credit: (n: number) => void, cancel: () => void) {
    this.method = method;
    this.#window = window;
    this.#allowed = window;
    this.#credit = credit;
    this.#cancel = cancel;
  }

  /**
   * One item arrived.
   *
   * @throws {ProtocolError} when the server sent more items than the credit allowed (the buffer stays bounded).
   */
  push(value: unknown): void {
    if (--this.#allowed < 0) {
      throw new ProtocolError(
        `Cannot read an RPC stream of "${this.method}": the peer sent more items than the credit allowed`,
      );
    }
    if (this.#waiters.length > 0) {
      this.#took();
      this.#waiters.wake({ done: false, value });
    } else this.#items.push(value);
  }

  finish(): void {
    this.#done = true;
    while (this.#waiters.wake(END));
  }

  fail(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#waiters.fail(error);
  }

  /** One item consumed: grant more credit every half window. */
  #took(): void {
    if (++this.#consumed >= Math.ceil(this.#window / 2)) {
      this.#allowed += this.#consumed;
      this.#credit(this.#consumed);
      this.#consumed = 0;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return {
      next: () => {
        if (this.#items.length > 0) {
          this.#took();
          return Promise.resolve({ done: false, value: this.#items.shift() });
        }
        if (this.#error !== undefined) return Promise.reject(this.#error);
        if (this.#done) return Promise.resolve(END);
        return this.#waiters.wait();
      },
      return: () => {
        if (!this.#done) {
          this.#done = true;
          this.#cancel();
        }
        return Promise.resolve(END);
      },
    };
  }
}
