/**
 * A counting semaphore for threads (SharedArrayBuffer) and processes (shared memory segment).
 *
 * Layout (8 bytes): word 0 is the count (never negative, at most 2^31 - 1); word 1 counts sleeping acquirers, so
 * that `release()` makes a wake call only when someone sleeps. `acquire(n)` takes `n` at once or nothing: it never
 * holds part of a request while waiting. Waiters are woken together and race for the count (no FIFO order).
 *
 * For a semaphore that processes find by name, see `NamedSemaphore` (sem_open).
 *
 * @module
 */
import type { SharedMemory } from "../shm/segment.ts";
import { type Guard, guard, type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { fromHandle, placeIn, type Steps, words } from "./words.ts";
import { checkName, SemaphoreStats } from "./lock_stats.ts";

const COUNT = 0;
const SLEEPERS = 1;
const MAX = 0x7fff_ffff;

function checkCount(n: unknown, what: string, min = 1): number {
  if (!Number.isInteger(n) || (n as number) < min || (n as number) > MAX) {
    throw new RangeError(`Cannot ${what} ${String(n)}: it must be an integer from ${min} to ${MAX}`);
  }
  return n as number;
}

/** A held permit set: `release()` (or `using`) gives the permits back once. */
export type SemaphoreGuard = Guard;

/**
 * A counting semaphore. See the module doc.
 *
 * @example
 * ```ts
 * import { Semaphore } from "ipckit";
 * const slots = new Semaphore(2); // at most two at a time; threads: post slots.handle
 * let running = 0;
 * let most = 0;
 * await Promise.all([1, 2, 3, 4, 5].map(async () => {
 *   using _permit = await slots.acquire(1, { timeout: 5000 });
 *   most = Math.max(most, ++running);
 *   await new Promise((r) => setTimeout(r, 10));
 *   running--;
 * }));
 * console.log(most, slots.value); // 2 2
 * console.log(slots.tryAcquire(3)); // false: all or nothing
 * slots.release(1); // more permits: 3 now
 * console.log(slots.tryAcquire(3), slots.value); // true 0
 * ```
 */
export class Semaphore extends SyncPrimitive {
  /** Bytes a Semaphore takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w = words(this);
  /** Set by observe(): this process's counters of it. */
  #stats: SemaphoreStats | undefined;

  /**
   * A new Semaphore with `initial` permits (0 by default), on its own SharedArrayBuffer.
   *
   * @throws {RangeError} when `initial` is not an integer from 0 to 2^31 - 1.
   */
  constructor(initial = 0) {
    checkCount(initial, "start a Semaphore at", 0);
    super("Semaphore", Semaphore.BYTES);
    // from() and in() build with no initial count: placed words keep theirs (in() sets its option itself).
    if (initial !== 0) Atomics.store(this.#w.i32, this.#w.base + COUNT, initial);
  }

  /**
   * Rebuilds a Semaphore in another worker from `semaphore.handle`.
   *
   * @example
   * ```ts
   * import { Semaphore } from "ipckit";
   * const sem = new Semaphore(1);
   * const same = Semaphore.from(sem.handle!); // usually in a worker, from a posted handle
   * console.log(same.tryAcquire(), sem.value); // true 0
   * ```
   */
  static from(handle: SyncHandle): Semaphore {
    return fromHandle("Semaphore", Semaphore.BYTES, handle, () => new Semaphore());
  }

  /**
   * The Semaphore at `offset` (a multiple of 8) of a shared memory segment or SharedArrayBuffer. Zero bytes are a
   * semaphore with no permits; `initial` sets the count (do it once, in the process that creates the segment).
   *
   * @example
   * ```ts
   * import { runtime, Semaphore, SharedMemory } from "ipckit";
   * const name = `/ipckit-slots-${(await runtime()).pid}`;
   * using segment = await SharedMemory.create(name, { size: 4096 });
   * try {
   *   const creator = Semaphore.in(segment, 0, { initial: 3 }); // the creating process sets the count, once
   *   const other = Semaphore.in(segment, 0); // other processes just place it
   *   console.log(other.value); // 3
   *   using _p = await other.acquire(2);
   *   console.log(creator.value); // 1
   * } finally {
   *   segment.unlink();
   * }
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number, options: { initial?: number } = {}): Semaphore {
    const s = placeIn("Semaphore", Semaphore.BYTES, memory, offset, () => new Semaphore());
    if (options.initial !== undefined) {
      Atomics.store(s.#w.i32, s.#w.base + COUNT, checkCount(options.initial, "start a Semaphore at", 0));
    }
    return s;
  }

  /**
   * Shows this semaphore in `ipckit stats`, `ipckit top` and the web monitor under `name`, as this process uses it:
   * acquisitions, waits, waits given up, releases, waiters now and the count (`COUNTERS.semaphore` of the stats
   * module). An unobserved semaphore pays nothing. Returns this.
   *
   * @throws {TypeError} for an empty name.
   *
   * @example
   * ```ts
   * import { Semaphore } from "ipckit";
   * const slots = new Semaphore(4).observe("download slots");
   * using _permit = await slots.acquire(); // counted: acquired 1, value 3
   * ```
   */
  observe(name: string): this {
    this.#stats = new SemaphoreStats(this, checkName(name, "Semaphore"));
    return this;
  }

  /** The current count (a snapshot). */
  get value(): number {
    return Atomics.load(this.#w.i32, this.#w.base + COUNT);
  }

  /** Takes `n` permits if there are that many; never waits. */
  tryAcquire(n = 1): boolean {
    checkCount(n, "acquire");
    const { i32, base } = this.#w;
    for (;;) {
      const c = Atomics.load(i32, base + COUNT);
      if (c < n) return false;
      if (Atomics.compareExchange(i32, base + COUNT, c, c - n) === c) {
        this.#stats?.acquired(c - n);
        return true;
      }
    }
  }

  /** Takes `n` permits, waiting without blocking the event loop. Returns a guard that gives them back. */
  async acquire(n = 1, options?: WaitOptions): Promise<SemaphoreGuard> {
    if (!this.tryAcquire(n)) await this.#w.waitAsync(this.#acquireSteps(n), options, `acquire ${n} of a Semaphore`);
    return this.#guard(n);
  }

  /** The blocking form of `acquire()`, for workers. */
  acquireSync(n = 1, options?: { timeout?: number }): SemaphoreGuard {
    if (!this.tryAcquire(n)) this.#w.waitSync(this.#acquireSteps(n), options, `acquire ${n} of a Semaphore`);
    return this.#guard(n);
  }

  /** The wait of `acquire()` and `acquireSync()`: counted in SLEEPERS while it lasts, so that releases wake it. */
  *#acquireSteps(n: number): Steps<void> {
    const { i32, base } = this.#w;
    const stats = this.#stats;
    let took = false;
    stats?.waiting();
    Atomics.add(i32, base + SLEEPERS, 1);
    try {
      for (;;) {
        const c = Atomics.load(i32, base + COUNT);
        if (c < n) yield { index: COUNT, value: c };
        else if (Atomics.compareExchange(i32, base + COUNT, c, c - n) === c) {
          took = true;
          stats?.acquired(c - n);
          return;
        }
      }
    } finally {
      Atomics.sub(i32, base + SLEEPERS, 1);
      stats?.waited(took);
    }
  }

  #guard(n: number): SemaphoreGuard {
    return guard(() => this.release(n));
  }

  /**
   * Gives `n` permits back and wakes the sleepers.
   *
   * @throws {RangeError} when the count would exceed 2^31 - 1 (nothing is added).
   */
  release(n = 1): void {
    checkCount(n, "release");
    const { i32, base } = this.#w;
    for (;;) {
      const c = Atomics.load(i32, base + COUNT);
      if (c > MAX - n) throw new RangeError(`Cannot release ${n} permits: the count ${c} would exceed ${MAX}`);
      if (Atomics.compareExchange(i32, base + COUNT, c, c + n) === c) {
        this.#stats?.released(c + n);
        break;
      }
    }
    if (Atomics.load(i32, base + SLEEPERS) > 0) this.#w.waiter.wake(base + COUNT);
  }
}
