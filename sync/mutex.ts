/**
 * A mutual-exclusion lock for threads (on a SharedArrayBuffer) and processes of any runtime (in a shared memory
 * segment), robust across processes: if the owner dies holding it, the next locker takes it over and is told.
 * (Over 400 lines for its documentation: the layout, the policies and three runnable examples take half of it.)
 *
 * Layout (16 bytes, all zero when unlocked and consistent; a C or Python peer can follow it):
 * - word 0, the state: the owner's id in bits 0..28 (between processes the owning thread's kernel tid, which is the
 *   pid on a main thread; a per-thread id on a SharedArrayBuffer), bit 29 STARVING, bit 30 WAITERS; 0 when unlocked.
 * - word 1, flags: bit 0 OWNER_DIED, set when a locker took the mutex over from a dead owner, cleared by
 *   `markConsistent()`.
 * - word 2, between processes: the owner's tid again, published right after locking (after word 3) and cleared
 *   before unlocking; 0 otherwise.
 * - word 3, between processes: the owner's start-time tag (`os/liveness.ts`), valid while word 2 equals the owner
 *   in word 0.
 *
 * Locking is one compare-and-swap (0 -> id) when free; unlocking one compare-and-swap (id -> 0) when nobody waits.
 * Waiters set WAITERS and sleep (futex / Atomics.wait); an unlock with WAITERS wakes one of them.
 *
 * Fairness: not FIFO. A free mutex goes to whoever gets there first, woken waiter or newcomer (as with glibc's
 * mutexes and Go's normal mode), which keeps the uncontended path short. To bound starvation, a waiter that has
 * waited longer than 5 ms sets STARVING: from then on, an unlock leaves STARVING in place, newcomers queue behind
 * the waiters instead of overtaking them, and the first waiter to take the mutex clears it.
 *
 * Robustness (process-shared only): a waiter re-checks the owner at least every 250 ms with `os/liveness.ts`: the
 * owner is the thread that locked (its tid), so a worker thread terminated while holding the lock is noticed as
 * well as a process that died; a zombie counts as dead, and so does a tid reused by another process or thread (its
 * start time differs from the tag in word 3). When the owner is gone, the waiter takes the mutex over atomically,
 * sets OWNER_DIED, and its `lock()` resolves to `true` ("owner died"). The protected state may be half-updated:
 * repair it, then call `markConsistent()`. Until then, every `lock()` keeps returning `true`. An owner that dies in
 * the instant between taking the lock and publishing its tag is still noticed once its tid is gone (only a reuse of
 * that tid in the same instant could hide it).
 *
 * @example
 * ```ts
 * import { Mutex } from "ipckit";
 * const m = new Mutex(); // post m.handle to a worker, which calls Mutex.from(handle)
 * {
 *   using _g = await m.acquire({ timeout: 1000 });
 *   console.log(m.locked); // true: the critical section
 * }
 * console.log(m.locked); // false: the guard unlocked it
 * ```
 *
 * @module
 */
import { IpcError, UnsupportedError } from "../errors.ts";
import { alive, selfThread } from "../os/liveness.ts";
import type { SharedMemory } from "../shm/segment.ts";
import { guard, type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { deadlineOf, fromHandle, placeIn, type Steps, words } from "./words.ts";
import { threadId } from "./identity.ts";
import { checkName, MutexStats } from "./lock_stats.ts";

const ID_MASK = (1 << 29) - 1;
const STARVING = 1 << 29;
const WAITERS = 1 << 30;
const OWNER_DIED = 1;
/** Word offsets from the base. */
const FLAGS = 1;
const OWNER = 2;
const OWNER_TAG = 3;
/** A waiter that waited this long sets STARVING. */
const STARVING_AFTER_MS = 5;
/** Between processes, the longest sleep before re-checking that the owner lives. */
const OWNER_CHECK_MS = 250;

/** A held lock; `release()` (or `using`) unlocks it once. */
export interface MutexGuard extends Disposable {
  /** True when this lock was taken over from an owner that died holding it (see `markConsistent()`). */
  readonly ownerDied: boolean;
  /** Unlocks; idempotent. */
  release(): void;
}

/**
 * A mutual-exclusion lock. See the module doc.
 *
 * @example
 * ```ts
 * import { Mutex, runtime, type SyncHandle } from "ipckit";
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * if (parent !== null) {
 *   // A worker thread (this same module): 1000 unprotected read-add-writes, each under the lock.
 *   parent.onMessage((message) => {
 *     const { lock, memory } = message as { lock: SyncHandle; memory: SharedArrayBuffer };
 *     const mutex = Mutex.from(lock);
 *     const counter = new Int32Array(memory);
 *     for (let i = 0; i < 1000; i++) {
 *       mutex.lockSync(); // a worker may block; the main thread uses `await mutex.lock()`
 *       counter[0] = counter[0]! + 1;
 *       mutex.unlock();
 *     }
 *     parent.postMessage("done");
 *   });
 * } else {
 *   const mutex = new Mutex();
 *   const memory = new SharedArrayBuffer(4);
 *   const workers = [1, 2].map(() => rt.worker(new URL(import.meta.url)));
 *   const finished = workers.map((w) => new Promise((resolve) => w.onMessage(resolve)));
 *   for (const w of workers) w.postMessage({ lock: mutex.handle, memory });
 *   await Promise.all(finished);
 *   console.log(new Int32Array(memory)[0]); // 2000: no increment lost
 *   await Promise.all(workers.map((w) => w.terminate()));
 * }
 * ```
 */
export class Mutex extends SyncPrimitive {
  /** Bytes a Mutex takes in shared memory. */
  static readonly BYTES = 16;
  readonly #w = words(this);
  readonly #i32: Int32Array;
  readonly #state: number;
  readonly #flags: number;
  readonly #id: number;
  /** This thread's start-time tag (process-shared only; 0 on a SharedArrayBuffer). */
  readonly #tag: number;
  /** Set by observe(): this process's counters of it. */
  #stats: MutexStats | undefined;

  /** A new Mutex on its own SharedArrayBuffer (for threads: pass `handle` to workers). */
  constructor() {
    super("Mutex", Mutex.BYTES);
    this.#i32 = this.#w.i32;
    this.#state = this.#w.base;
    this.#flags = this.#w.base + FLAGS;
    if (this.#w.shared) {
      const me = selfThread();
      if (me.id > ID_MASK) {
        throw new UnsupportedError(`Cannot use a process-shared Mutex: thread id ${me.id} needs more than 29 bits`);
      }
      this.#id = me.id;
      this.#tag = me.tag;
    } else {
      this.#id = threadId();
      this.#tag = 0;
    }
  }

  /**
   * Rebuilds a Mutex in another worker from `mutex.handle`.
   *
   * @example
   * ```ts
   * import { Mutex } from "ipckit";
   * const original = new Mutex();
   * const rebuilt = Mutex.from(original.handle!); // usually in a worker, from a posted handle
   * original.tryLock();
   * console.log(rebuilt.locked, rebuilt.tryLock()); // true false: the same lock
   * original.unlock();
   * ```
   */
  static from(handle: SyncHandle): Mutex {
    return fromHandle("Mutex", Mutex.BYTES, handle, () => new Mutex());
  }

  /**
   * The Mutex at `offset` (a multiple of 8) of a shared memory segment (between processes) or a SharedArrayBuffer.
   * Zero bytes are an unlocked mutex.
   *
   * @example
   * ```ts
   * import { Mutex, runtime, runtimeArgv, SharedMemory } from "ipckit";
   * const rt = await runtime();
   * const [role, name] = rt.args();
   * const ROUNDS = 200;
   * async function work(segment: SharedMemory): Promise<void> {
   *   const lock = Mutex.in(segment, 0); // every process places it at the same offset
   *   const counter = new Int32Array(segment.buffer, Mutex.BYTES, 1);
   *   for (let i = 0; i < ROUNDS; i++) {
   *     using _g = await lock.acquire({ timeout: 10_000 });
   *     counter[0] = counter[0]! + 1;
   *   }
   * }
   * if (role === "child") {
   *   using segment = await SharedMemory.open(name!);
   *   await work(segment);
   * } else {
   *   const name = `/ipckit-mutex-${rt.pid}`;
   *   using segment = await SharedMemory.create(name, { size: 4096 }); // zero bytes: an unlocked mutex
   *   try {
   *     const child = rt.spawn([...runtimeArgv("bun", rt.fromFileUrl(import.meta.url)), "child", name], {
   *       stdio: "inherit",
   *     });
   *     await work(segment);
   *     await child.exited;
   *     console.log(new Int32Array(segment.buffer, Mutex.BYTES, 1)[0]); // 400: this process and a Bun one
   *   } finally {
   *     segment.unlink();
   *   }
   * }
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number): Mutex {
    return placeIn("Mutex", Mutex.BYTES, memory, offset, () => new Mutex());
  }

  /** Takes the lock if it is free; never waits. */
  tryLock(): boolean {
    const i32 = this.#i32;
    if (Atomics.compareExchange(i32, this.#state, 0, this.#id) === 0) return this.#owned();
    const v = Atomics.load(i32, this.#state);
    return this.#w.shared && (v & ID_MASK) !== 0 && this.#takeOverIfDead(v);
  }

  /**
   * Shows this mutex in `ipckit stats`, `ipckit top` and the web monitor under `name`, as this process uses it:
   * acquisitions, waits, waits given up, owner-died takeovers, waiters now, which thread here holds it and since
   * when, the longest hold (`COUNTERS.lock` of the stats module). Each process that observes it under the same name
   * shows its own use. Costs two clock reads per lock and unlock; an unobserved mutex pays nothing. Returns this.
   *
   * @throws {TypeError} for an empty name.
   *
   * @example
   * ```ts
   * import { Mutex } from "ipckit";
   * const jobs = new Mutex().observe("jobs lock");
   * await jobs.lock();
   * jobs.unlock(); // counted: acquired 1, longestHoldUs ...
   * ```
   */
  observe(name: string): this {
    this.#stats = new MutexStats(this, checkName(name, "Mutex"));
    return this;
  }

  /** Publishes who owns the lock (process-shared only: the tag first, then the id). Returns true. */
  #owned(tookOver = false): true {
    if (this.#w.shared) {
      Atomics.store(this.#i32, this.#w.base + OWNER_TAG, this.#tag | 0);
      Atomics.store(this.#i32, this.#w.base + OWNER, this.#id);
    }
    this.#stats?.acquired(this.#id, tookOver);
    return true;
  }

  /**
   * Takes the lock, waiting without blocking the event loop. Resolves to `true` when the previous owner died holding
   * it (see `markConsistent()`), `false` otherwise.
   *
   * @throws {TimeoutError} after `timeout` ms; the signal's reason on abort.
   */
  lock(options?: WaitOptions): Promise<boolean> {
    if (options !== undefined) {
      try {
        deadlineOf(options.timeout, "lock a Mutex");
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (Atomics.compareExchange(this.#i32, this.#state, 0, this.#id) === 0) {
      this.#owned();
      return Promise.resolve(Atomics.load(this.#i32, this.#flags) !== 0);
    }
    return this.#w.waitAsync(this.#lockSteps(), options, "lock a Mutex");
  }

  /**
   * Takes the lock, blocking this thread while it waits (for workers that want it; on a main thread it freezes the
   * event loop). Returns `true` when the previous owner died holding it.
   *
   * @throws {TimeoutError} after `timeout` ms.
   */
  lockSync(options?: { timeout?: number }): boolean {
    if (options !== undefined) deadlineOf(options.timeout, "lock a Mutex");
    if (Atomics.compareExchange(this.#i32, this.#state, 0, this.#id) === 0) {
      this.#owned();
      return Atomics.load(this.#i32, this.#flags) !== 0;
    }
    return this.#w.waitSync(this.#lockSteps(), options, "lock a Mutex");
  }

  /** Takes the lock and returns a guard that unlocks it once (`using g = await m.acquire()`). */
  async acquire(options?: WaitOptions): Promise<MutexGuard> {
    const ownerDied = await this.lock(options);
    return { ownerDied, ...guard(() => this.unlock()) };
  }

  /**
   * Releases the lock; wakes one waiter if any.
   *
   * @throws {IpcError} when this thread or process does not hold it.
   */
  unlock(): void {
    const i32 = this.#i32;
    const id = this.#id;
    if (this.#w.shared) {
      if ((Atomics.load(i32, this.#state) & ID_MASK) === id) Atomics.store(i32, this.#w.base + OWNER, 0);
    }
    if (this.#stats !== undefined && (Atomics.load(i32, this.#state) & ID_MASK) === id) this.#stats.released();
    if (Atomics.compareExchange(i32, this.#state, id, 0) === id) return;
    for (;;) {
      const v = Atomics.load(i32, this.#state);
      if ((v & ID_MASK) !== id) {
        throw new IpcError(
          `Cannot unlock a Mutex: it is ${(v & ID_MASK) === 0 ? "not locked" : `held by ${v & ID_MASK}, not ${id}`}`,
          { code: "EPERM" },
        );
      }
      // Keep STARVING: newcomers then queue behind the waiters.
      if (Atomics.compareExchange(i32, this.#state, v, v & STARVING) === v) {
        if (v & WAITERS) this.#w.waiter.wake(this.#state, 1);
        return;
      }
    }
  }

  /** Whether the lock is held (by anyone); a snapshot. */
  get locked(): boolean {
    return (Atomics.load(this.#i32, this.#state) & ID_MASK) !== 0;
  }

  /** True while the mutex is marked inconsistent: a previous owner died holding it. */
  get ownerDied(): boolean {
    return Atomics.load(this.#i32, this.#flags) !== 0;
  }

  /**
   * Declares the protected state repaired after an owner died; later lockers are no longer told. Call it while
   * holding the lock.
   *
   * @throws {IpcError} when this thread or process does not hold the lock.
   *
   * @example
   * ```ts
   * import { Mutex, runtime, runtimeArgv, SharedMemory } from "ipckit";
   * const rt = await runtime();
   * const [role, name] = rt.args();
   * if (role === "child") {
   *   using segment = await SharedMemory.open(name!);
   *   Mutex.in(segment, 0).tryLock();
   *   rt.exit(0); // dies holding the lock
   * } else {
   *   const name = `/ipckit-robust-${rt.pid}`;
   *   using segment = await SharedMemory.create(name, { size: 4096 });
   *   try {
   *     const argv = [...runtimeArgv(rt.name, rt.fromFileUrl(import.meta.url)), "child", name];
   *     await rt.spawn(argv, { stdio: "inherit" }).exited;
   *     const lock = Mutex.in(segment, 0);
   *     console.log(lock.locked); // true: its owner is gone
   *     const ownerDied = await lock.lock({ timeout: 5000 }); // taken over within 250 ms
   *     console.log(ownerDied, lock.ownerDied); // true true
   *     // ... repair what the lock protects, then:
   *     lock.markConsistent();
   *     lock.unlock();
   *     console.log(await lock.lock(), lock.ownerDied); // false false
   *     lock.unlock();
   *   } finally {
   *     segment.unlink();
   *   }
   * }
   * ```
   */
  markConsistent(): void {
    if ((Atomics.load(this.#i32, this.#state) & ID_MASK) !== this.#id) {
      throw new IpcError("Cannot mark a Mutex consistent: lock it first", { code: "EPERM" });
    }
    Atomics.store(this.#i32, this.#flags, 0);
  }

  /**
   * The wait of `lock()` and `lockSync()`: attempts until it takes the lock, sleeping on the state word in between
   * (between processes at most OWNER_CHECK_MS at a time, so that a dead owner is noticed). A waiter that waited
   * longer than STARVING_AFTER_MS sets STARVING, and clears it if it gives up.
   */
  *#lockSteps(): Steps<boolean> {
    const start = Date.now();
    const slice = this.#w.shared ? OWNER_CHECK_MS : undefined;
    let waited = false;
    let starving = false;
    const stats = this.#stats;
    let took = false;
    stats?.waiting();
    try {
      for (;;) {
        const r = this.#attempt(waited);
        if (r === true) {
          took = true;
          return this.#acquired(starving);
        }
        if (!starving && Date.now() - start > STARVING_AFTER_MS) starving = this.#setStarving();
        yield slice === undefined ? { index: 0, value: r } : { index: 0, value: r, slice };
        waited = true;
      }
    } catch (e) {
      if (starving) this.#clearStarving();
      throw e;
    } finally {
      stats?.waited(took); // ended by a timeout or an abort (thrown in), or by the driver giving up (returned)
    }
  }

  /**
   * One attempt of a waiter: true when it took the lock, otherwise the state word to sleep on (with WAITERS set).
   * `waited`: whether this caller has slept already (newcomers yield to waiters while STARVING is set).
   */
  #attempt(waited: boolean): true | number {
    const i32 = this.#i32;
    for (;;) {
      const v = Atomics.load(i32, this.#state);
      const owner = v & ID_MASK;
      if (owner === 0) {
        if ((v & STARVING) !== 0 && !waited) return v; // queue behind the starving waiters
        // Take it with WAITERS set: others may sleep, and our unlock must wake them.
        if (Atomics.compareExchange(i32, this.#state, v, this.#id | WAITERS) === v) return this.#owned();
        continue;
      }
      if (this.#w.shared && this.#takeOverIfDead(v)) return true;
      if ((v & WAITERS) === 0) {
        if (Atomics.compareExchange(i32, this.#state, v, v | WAITERS) !== v) continue;
        return v | WAITERS;
      }
      return v;
    }
  }

  #acquired(starving: boolean): boolean {
    // The first waiter to get through ends the starving mode (ours or another waiter's).
    if (starving || (Atomics.load(this.#i32, this.#state) & STARVING) !== 0) this.#clearStarving();
    return Atomics.load(this.#i32, this.#flags) !== 0;
  }

  #setStarving(): boolean {
    Atomics.or(this.#i32, this.#state, STARVING);
    return true;
  }

  #clearStarving(): void {
    Atomics.and(this.#i32, this.#state, ~STARVING);
  }

  /** Takes the lock over from a dead owner: true when this call did (the state was still `v`). */
  #takeOverIfDead(v: number): boolean {
    const owner = v & ID_MASK;
    if (owner === 0) return false;
    const tag = this.#ownerTag(owner);
    // Our own id: a relock by this very thread (it waits, as a non-recursive lock does), unless the tag says the
    // owner was an earlier thread that had our tid.
    if (owner === this.#id ? tag === 0 || tag === this.#tag : alive(owner, tag)) return false;
    if (Atomics.compareExchange(this.#i32, this.#state, v, this.#id | (v & (WAITERS | STARVING))) !== v) return false;
    Atomics.store(this.#i32, this.#flags, OWNER_DIED);
    this.#owned(true);
    return true;
  }

  /** The start-time tag `owner` published, or 0 when it has not (yet): then only its existence is checked. */
  #ownerTag(owner: number): number {
    const i32 = this.#i32;
    const at = this.#w.base + OWNER;
    if (Atomics.load(i32, at) !== owner) return 0;
    const tag = Atomics.load(i32, at + 1) >>> 0;
    return Atomics.load(i32, at) === owner ? tag : 0;
  }
}
