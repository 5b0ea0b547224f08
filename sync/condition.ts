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
 * const queue: string[] = [];
 * setTimeout(async () => {
 *   using _g = await m.acquire(); // a producer (often another thread or process)
 *   queue.push("job");
 *   c.notify();
 * }, 10);
 * await m.lock();
 * console.log(await c.waitFor(m, () => queue.length > 0, { timeout: 1000 })); // true
 * console.log(queue.shift()); // "job"
 * m.unlock();
 * ```
 *
 * @module
 */
import type { SharedMemory } from "../shm/segment.ts";
import type { Mutex } from "./mutex.ts";
import { TimeoutError } from "../errors.ts";
import { type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { deadlineOf, fromHandle, placeIn, type Steps, words } from "./words.ts";

const SEQ = 0;

/**
 * A condition variable. See the module doc.
 *
 * @example
 * ```ts
 * import { Condition, Mutex, runtime, type SyncHandle } from "ipckit";
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * type Shared = { lock: SyncHandle; ready: SyncHandle; memory: SharedArrayBuffer };
 * if (parent !== null) {
 *   // The producer, a worker thread (this same module): publish five values, one at a time.
 *   parent.onMessage(async (message) => {
 *     const { lock, ready, memory } = message as Shared;
 *     const [m, c, slot] = [Mutex.from(lock), Condition.from(ready), new Int32Array(memory)];
 *     for (let n = 1; n <= 5; n++) {
 *       await m.lock();
 *       await c.waitFor(m, () => slot[0] === 0); // wait until the consumer took the last one
 *       slot[0] = n;
 *       c.notifyAll();
 *       m.unlock();
 *     }
 *   });
 * } else {
 *   const m = new Mutex();
 *   const c = new Condition();
 *   const slot = new Int32Array(new SharedArrayBuffer(4));
 *   const producer = rt.worker(new URL(import.meta.url));
 *   producer.postMessage({ lock: m.handle!, ready: c.handle!, memory: slot.buffer } satisfies Shared);
 *   const got: number[] = [];
 *   while (got.length < 5) {
 *     await m.lock();
 *     await c.waitFor(m, () => slot[0] !== 0, { timeout: 10_000 });
 *     got.push(slot[0]!);
 *     slot[0] = 0;
 *     c.notifyAll();
 *     m.unlock();
 *   }
 *   console.log(got); // [1, 2, 3, 4, 5]
 *   await producer.terminate();
 * }
 * ```
 */
export class Condition extends SyncPrimitive {
  /** Bytes a Condition takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w = words(this);

  /** A new Condition on its own SharedArrayBuffer. */
  constructor() {
    super("Condition", Condition.BYTES);
  }

  /**
   * Rebuilds a Condition in another worker from `condition.handle`.
   *
   * @example
   * ```ts
   * import { Condition } from "ipckit";
   * const c = new Condition();
   * const same = Condition.from(c.handle!); // usually in a worker, from a posted handle
   * same.notifyAll(); // wakes waiters of c too (none here)
   * console.log(c.handle!.buffer === same.handle!.buffer); // true
   * ```
   */
  static from(handle: SyncHandle): Condition {
    return fromHandle("Condition", Condition.BYTES, handle, () => new Condition());
  }

  /**
   * The Condition at `offset` (a multiple of 8) of a shared memory segment or a SharedArrayBuffer.
   *
   * @example
   * ```ts
   * import { Condition, Mutex, runtime, SharedMemory } from "ipckit";
   * const name = `/ipckit-cond-${(await runtime()).pid}`;
   * using segment = await SharedMemory.create(name, { size: 4096 });
   * try {
   *   // Every process places both at the same offsets: 0 and 16 here.
   *   const lock = Mutex.in(segment, 0);
   *   const changed = Condition.in(segment, Mutex.BYTES);
   *   await lock.lock();
   *   console.log(await changed.wait(lock, { timeout: 20 })); // false: nobody notified; the lock is held again
   *   lock.unlock();
   * } finally {
   *   segment.unlink();
   * }
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number): Condition {
    return placeIn("Condition", Condition.BYTES, memory, offset, () => new Condition());
  }

  /**
   * Releases `mutex` (which the caller holds), sleeps until notified, then takes `mutex` again. Resolves to `true`
   * when woken, `false` when `timeout` ran out; an abort rejects with the signal's reason. In every case the mutex
   * is held again when it settles.
   */
  async wait(mutex: Mutex, options?: WaitOptions): Promise<boolean> {
    deadlineOf(options?.timeout, "wait on a Condition");
    const seq = Atomics.load(this.#w.i32, this.#w.base + SEQ);
    mutex.unlock();
    try {
      return await this.#w.waitAsync(this.#waitSteps(seq), options, "wait on a Condition");
    } finally {
      await mutex.lock();
    }
  }

  /** The blocking form of `wait()`, for workers. */
  waitSync(mutex: Mutex, options?: { timeout?: number }): boolean {
    deadlineOf(options?.timeout, "wait on a Condition");
    const seq = Atomics.load(this.#w.i32, this.#w.base + SEQ);
    mutex.unlock();
    try {
      return this.#w.waitSync(this.#waitSteps(seq), options, "wait on a Condition");
    } finally {
      mutex.lockSync();
    }
  }

  /** Sleeps while the sequence is still `seq`: true once it moved, false at the deadline. */
  *#waitSteps(seq: number): Steps<boolean> {
    try {
      while (Atomics.load(this.#w.i32, this.#w.base + SEQ) === seq) yield { index: SEQ, value: seq };
    } catch (e) {
      if (e instanceof TimeoutError) return false;
      throw e;
    }
    return true;
  }

  /**
   * Waits until `predicate()` (checked with the mutex held) is true. Resolves to `true`, or `false` if `timeout` ran
   * out first.
   */
  async waitFor(mutex: Mutex, predicate: () => boolean, options?: WaitOptions): Promise<boolean> {
    const deadline = deadlineOf(options?.timeout, "wait on a Condition");
    while (!predicate()) {
      const left = deadline.remaining;
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
