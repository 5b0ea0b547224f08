/**
 * A spinlock for very short critical sections (a few hundred nanoseconds) between threads or processes: no system
 * call to lock or unlock, ever.
 *
 * Back-off: an attempt that fails spins `2^k` times (k = 0..6) before the next, for up to 100 attempts (about 10 us);
 * then it sleeps 1 ms between attempts (`Atomics.wait` / futex with a timeout, nobody wakes it), so a holder that
 * was descheduled does not burn a CPU. `lock()` (async) yields to the event loop at that point instead of blocking,
 * so a holder on the same thread can finish. Not fair; use `Mutex` for anything longer.
 *
 * Layout (8 bytes): word 0 is 0 when free, the holder's id when held; word 1 is reserved.
 *
 * @module
 */
import { IpcError, TimeoutError } from "../errors.ts";
import type { SharedMemory } from "../shm/segment.ts";
import { processId, threadId } from "./identity.ts";
import {
  allocate,
  deadlineOf,
  fromHandle,
  place,
  remaining,
  type SyncHandle,
  type SyncWords,
  type WaitOptions,
} from "./memory.ts";

const SPIN_ATTEMPTS = 100;
const SLEEP_MS = 1;

/**
 * A spinlock. See the module doc.
 *
 * @example
 * ```ts
 * import { SpinLock } from "ipckit";
 * const spin = new SpinLock(); // threads: post spin.handle, then SpinLock.from(handle) in the worker
 * const counter = new Int32Array(new SharedArrayBuffer(4));
 * spin.lockSync({ timeout: 100 }); // for a few hundred nanoseconds of work
 * counter[0] = counter[0]! + 1;
 * spin.unlock();
 * console.log(spin.tryLock(), spin.locked); // true true
 * spin.unlock();
 * await spin.lock(); // the async form yields to the event loop while it waits
 * spin.unlock();
 * console.log(counter[0], spin.locked); // 1 false
 * ```
 */
export class SpinLock {
  /** Bytes a SpinLock takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w: SyncWords;
  readonly #id: number;
  #sink = 0;

  /** A new SpinLock on its own SharedArrayBuffer. */
  constructor(words?: SyncWords) {
    this.#w = words ?? allocate("SpinLock", SpinLock.BYTES);
    this.#id = this.#w.shared ? processId() : threadId();
  }

  /**
   * Rebuilds a SpinLock in another worker from `lock.handle`.
   *
   * @example
   * ```ts
   * import { SpinLock } from "ipckit";
   * const spin = new SpinLock();
   * const same = SpinLock.from(spin.handle!); // usually in a worker, from a posted handle
   * spin.tryLock();
   * console.log(same.tryLock()); // false
   * spin.unlock();
   * ```
   */
  static from(handle: SyncHandle): SpinLock {
    return new SpinLock(fromHandle("SpinLock", handle, SpinLock.BYTES));
  }

  /**
   * The SpinLock at `offset` (a multiple of 8) of a shared memory segment or SharedArrayBuffer.
   *
   * @example
   * ```ts
   * import { SpinLock } from "ipckit";
   * const memory = new SharedArrayBuffer(64); // or a SharedMemory segment, between processes
   * const a = SpinLock.in(memory, 8);
   * const b = SpinLock.in(memory, 8);
   * a.lockSync();
   * console.log(b.locked); // true
   * a.unlock();
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number): SpinLock {
    return new SpinLock(place("SpinLock", memory, offset, SpinLock.BYTES));
  }

  /** What `SpinLock.from()` needs in another worker (undefined in a segment). */
  get handle(): SyncHandle | undefined {
    return this.#w.handle;
  }

  /** Takes the lock if free. */
  tryLock(): boolean {
    return Atomics.compareExchange(this.#w.i32, this.#w.base, 0, this.#id) === 0;
  }

  /** Spins for up to SPIN_ATTEMPTS attempts with exponential back-off; true once locked. */
  #spin(): boolean {
    for (let attempt = 0; attempt < SPIN_ATTEMPTS; attempt++) {
      if (this.tryLock()) return true;
      const spins = 1 << Math.min(attempt, 6);
      for (let i = 0; i < spins; i++) this.#sink = (this.#sink + i) | 0; // busy work the engine cannot drop
    }
    return false;
  }

  /** Takes the lock, spinning then sleeping 1 ms at a time (blocks this thread). */
  lockSync(options?: { timeout?: number }): void {
    if (this.tryLock() || this.#spin()) return;
    const deadline = deadlineOf(options?.timeout, "lock a SpinLock");
    const { i32, base } = this.#w;
    for (;;) {
      if (this.#spin()) return;
      if (remaining(deadline) === 0) throw new TimeoutError("Cannot lock a SpinLock: timed out");
      const v = Atomics.load(i32, base);
      if (v !== 0) this.#w.waiter.waitSync(base, v, SLEEP_MS);
    }
  }

  /** Takes the lock, spinning then yielding to the event loop 1 ms at a time. */
  async lock(options?: WaitOptions): Promise<void> {
    if (this.tryLock() || this.#spin()) return;
    const deadline = deadlineOf(options?.timeout, "lock a SpinLock");
    for (;;) {
      options?.signal?.throwIfAborted();
      if (remaining(deadline) === 0) throw new TimeoutError("Cannot lock a SpinLock: timed out");
      await new Promise((r) => setTimeout(r, SLEEP_MS));
      if (this.#spin()) return;
    }
  }

  /**
   * Releases the lock.
   *
   * @throws {IpcError} when this thread or process does not hold it.
   */
  unlock(): void {
    if (Atomics.compareExchange(this.#w.i32, this.#w.base, this.#id, 0) !== this.#id) {
      throw new IpcError("Cannot unlock a SpinLock: this thread or process does not hold it", { code: "EPERM" });
    }
  }

  /** Whether it is held (a snapshot). */
  get locked(): boolean {
    return Atomics.load(this.#w.i32, this.#w.base) !== 0;
  }
}
