/**
 * A spinlock for very short critical sections (a few hundred nanoseconds) between threads or processes: no system
 * call to lock or unlock, ever.
 *
 * Back-off: an attempt that fails spins `2^k` times (k = 0..6) before the next, for up to 100 attempts (about 10 us);
 * then it sleeps 1 ms between attempts (a 1 ms wait on the lock word, `Atomics.wait` / futex; nobody wakes it), so a
 * holder that was descheduled does not burn a CPU. `lock()` (async) sleeps without blocking (`Atomics.waitAsync` /
 * futex off the main thread), so a holder on the same thread can finish. Not fair; use `Mutex` for anything longer.
 *
 * Layout (8 bytes): word 0 is 0 when free, the holder's id when held; word 1 is reserved.
 *
 * @module
 */
import { IpcError } from "../errors.ts";
import type { SharedMemory } from "../shm/segment.ts";
import { processId, threadId } from "./identity.ts";
import { type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { fromHandle, placeIn, type Steps, words } from "./words.ts";

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
export class SpinLock extends SyncPrimitive {
  /** Bytes a SpinLock takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w = words(this);
  readonly #id: number;
  #sink = 0;

  /** A new SpinLock on its own SharedArrayBuffer. */
  constructor() {
    super("SpinLock", SpinLock.BYTES);
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
    return fromHandle("SpinLock", SpinLock.BYTES, handle, () => new SpinLock());
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
    return placeIn("SpinLock", SpinLock.BYTES, memory, offset, () => new SpinLock());
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
    if (!this.tryLock() && !this.#spin()) this.#w.waitSync(this.#lockSteps(), options, "lock a SpinLock");
  }

  /** Takes the lock, spinning then sleeping 1 ms at a time without blocking the event loop. */
  async lock(options?: WaitOptions): Promise<void> {
    if (!this.tryLock() && !this.#spin()) await this.#w.waitAsync(this.#lockSteps(), options, "lock a SpinLock");
  }

  /** Sleeps SLEEP_MS on the held lock word (nobody wakes it), then spins again. */
  *#lockSteps(): Steps<void> {
    do yield { index: 0, value: Atomics.load(this.#w.i32, this.#w.base), slice: SLEEP_MS }; while (!this.#spin());
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
