/**
 * A condition variable: wait, with a {@linkcode Mutex} held, until another thread or process notifies.
 *
 * Layout (8 bytes): word 0 is a sequence number, incremented by every notify; word 1 is reserved. A waiter reads
 * the sequence before it releases the mutex and sleeps only while the sequence is unchanged, so a notify that comes
 * between the release and the sleep is never lost. As everywhere, a waiter may also wake without a notify (a
 * `notifyAll()` meant for others, a notify racing with a timeout): re-check the predicate in a loop, or use
 * `waitFor()`, which does.
 *
 * @example
 * ```ts
 * import { Condition, Mutex } from "ipckit";
 * const m = new Mutex();
 * const c = new Condition();
 * await m.lock();
 * await c.waitFor(m, () => queue.length > 0, { timeout: 1000 });
 * m.unlock();
 * ```
 *
 * @module
 */
import type { SharedMemory } from "../shm/segment.ts";
import type { Mutex } from "./mutex.ts";
import { TimeoutError } from "../errors.ts";
import {
  allocate,
  deadlineOf,
  fromHandle,
  place,
  remaining,
  sleep,
  sleepSync,
  type SyncHandle,
  type SyncWords,
  type WaitOptions,
} from "./memory.ts";

const SEQ = 0;

/** A condition variable. See the module doc. */
export class Condition {
  /** Bytes a Condition takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w: SyncWords;

  /** A new Condition on its own SharedArrayBuffer. */
  constructor(words?: SyncWords) {
    this.#w = words ?? allocate("Condition", Condition.BYTES);
  }

  /** Rebuilds a Condition in another worker from `condition.handle`. */
  static from(handle: SyncHandle): Condition {
    return new Condition(fromHandle("Condition", handle, Condition.BYTES));
  }

  /** The Condition at `offset` (a multiple of 8) of a shared memory segment or a SharedArrayBuffer. */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number): Condition {
    return new Condition(place("Condition", memory, offset, Condition.BYTES));
  }

  /** What `Condition.from()` needs in another worker (undefined in a segment). */
  get handle(): SyncHandle | undefined {
    return this.#w.handle;
  }

  /**
   * Releases `mutex` (which the caller holds), sleeps until notified, then takes `mutex` again. Resolves to `true`
   * when woken, `false` when `timeout` ran out; an abort rejects with the signal's reason. In every case the mutex
   * is held again when it settles.
   */
  async wait(mutex: Mutex, options?: WaitOptions): Promise<boolean> {
    const deadline = deadlineOf(options?.timeout, "wait on a Condition");
    const seq = Atomics.load(this.#w.i32, this.#w.base + SEQ);
    mutex.unlock();
    let woken = true;
    try {
      while (Atomics.load(this.#w.i32, this.#w.base + SEQ) === seq) {
        // Rejects with TimeoutError once the deadline has passed with the sequence unchanged.
        await sleep(this.#w, SEQ, seq, deadline, options?.signal, "wait on a Condition");
      }
    } catch (e) {
      if (!(e instanceof TimeoutError)) {
        await mutex.lock();
        throw e;
      }
      woken = false;
    }
    await mutex.lock();
    return woken;
  }

  /** The blocking form of `wait()`, for workers. */
  waitSync(mutex: Mutex, options?: { timeout?: number }): boolean {
    const deadline = deadlineOf(options?.timeout, "wait on a Condition");
    const seq = Atomics.load(this.#w.i32, this.#w.base + SEQ);
    mutex.unlock();
    let woken = true;
    try {
      while (Atomics.load(this.#w.i32, this.#w.base + SEQ) === seq) {
        sleepSync(this.#w, SEQ, seq, deadline, "wait on a Condition");
      }
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
      woken = false;
    } finally {
      mutex.lockSync();
    }
    return woken;
  }

  /**
   * Waits until `predicate()` (checked with the mutex held) is true. Resolves to `true`, or `false` if `timeout` ran
   * out first.
   */
  async waitFor(mutex: Mutex, predicate: () => boolean, options?: WaitOptions): Promise<boolean> {
    const deadline = deadlineOf(options?.timeout, "wait on a Condition");
    while (!predicate()) {
      const left = remaining(deadline);
      if (left === 0) return false;
      await this.wait(mutex, left === Infinity ? options : { ...options, timeout: left });
    }
    return true;
  }

  /** Wakes up to `count` waiters (1 by default). */
  notify(count = 1): void {
    if (!Number.isInteger(count) || count < 1) {
      throw new RangeError(`Cannot notify ${count} waiters: it must be a positive integer`);
    }
    Atomics.add(this.#w.i32, this.#w.base + SEQ, 1);
    this.#w.waiter.wake(this.#w.base + SEQ, count);
  }

  /** Wakes every waiter. */
  notifyAll(): void {
    Atomics.add(this.#w.i32, this.#w.base + SEQ, 1);
    this.#w.waiter.wake(this.#w.base + SEQ);
  }
}
