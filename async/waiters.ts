/**
 * Callers waiting for a value (a message, a connection, a slot), served first come first served, each able to give
 * up on its own timeout or abort signal without losing anything to the others.
 *
 * @module
 */
import { abortError, TimeoutError } from "../errors.ts";
import { onAbort } from "./abort.ts";
import { Fifo } from "./fifo.ts";

/** One waiting caller. */
export interface Waiter<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

/** How long a caller waits. */
export interface WaitOptions {
  /** Gives up with the signal's reason. */
  signal?: AbortSignal;
  /** Gives up after this many milliseconds with the error `timedOut()` makes. */
  timeout?: number;
}

/**
 * A FIFO of waiting callers. `wait()` queues one; `wake(value)` hands a value to the oldest (false when nobody
 * waits: keep the value); `fail(error)` rejects them all. A caller that gives up leaves the queue at once, so a value
 * is never handed to someone who stopped waiting.
 *
 * @example
 * ```ts
 * const readers = new Waiters<Uint8Array>();
 * const next = readers.wait({ timeout: 1000 }, () => new TimeoutError("Cannot receive: timed out after 1000 ms"));
 * readers.wake(message); // next resolves with message
 * ```
 */
export class Waiters<T> {
  #queue = new Fifo<Waiter<T>>();

  /** Callers waiting. */
  get length(): number {
    return this.#queue.length;
  }

  /** Waits for a value; rejects on `options.signal` or after `options.timeout` ms with `timedOut()`. */
  wait(options: WaitOptions = {}, timedOut?: () => Error): Promise<T> {
    const { signal, timeout } = options;
    if (timeout !== undefined && !(timeout >= 0)) {
      return Promise.reject(new RangeError(`Cannot wait ${timeout} ms: the timeout must be >= 0 milliseconds`));
    }
    if (signal?.aborted) return Promise.reject(abortError(signal));
    // The hot path (nothing to give up on) allocates one promise and one small record, no closures.
    if (signal === undefined && timeout === undefined) {
      return new Promise<T>((resolve, reject) => this.#queue.push({ resolve, reject }));
    }
    return new Promise<T>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const cleanup = () => {
        if (timer !== undefined) clearTimeout(timer);
        stop();
      };
      const waiter: Waiter<T> = {
        resolve(v) {
          cleanup();
          resolve(v);
        },
        reject(e) {
          cleanup();
          reject(e);
        },
      };
      const drop = (e: unknown) => {
        this.#queue.remove(waiter);
        waiter.reject(e);
      };
      const stop = onAbort(signal, () => drop(abortError(signal!)));
      if (timeout !== undefined) {
        timer = setTimeout(
          () => drop(timedOut?.() ?? new TimeoutError(`Cannot wait: timed out after ${timeout} ms`)),
          timeout,
        );
      }
      this.#queue.push(waiter);
    });
  }

  /** Hands `value` to the oldest waiting caller; false when nobody waits. */
  wake(value: T): boolean {
    const w = this.#queue.shift();
    if (w === undefined) return false;
    w.resolve(value);
    return true;
  }

  /**
   * Hands the oldest waiting caller what `make()` returns, or rejects that caller with what `make()` throws; `make`
   * runs only when someone waits. False when nobody waits (for a value that is costly or may fail to build, such as
   * a channel made from an accepted connection).
   */
  wakeWith(make: () => T): boolean {
    const w = this.#queue.shift();
    if (w === undefined) return false;
    let value: T;
    try {
      value = make();
    } catch (e) {
      w.reject(e);
      return true;
    }
    w.resolve(value);
    return true;
  }

  /** Rejects every waiting caller with `error`. */
  fail(error: unknown): void {
    for (const w of this.#queue.clear()) w.reject(error);
  }
}
