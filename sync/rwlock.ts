/**
 * A readers-writer lock: many readers at once, or one writer alone.
 *
 * Writer preference: once a writer waits, new readers wait too, so a stream of readers cannot starve writers
 * (a stream of writers can starve readers). Waiters race when woken (no FIFO order).
 *
 * Layout (8 bytes): word 0 is the state, the number of readers in bits 0..29 and bit 30 set while a writer holds
 * it; word 1 counts waiting writers.
 *
 * @module
 */
import { IpcError } from "../errors.ts";
import type { SharedMemory } from "../shm/segment.ts";
import { type Guard, guard, type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { fromHandle, placeIn, type Steps, words } from "./words.ts";

const STATE = 0;
const WRITERS_WAITING = 1;
const WRITER = 1 << 30;
const READERS = WRITER - 1;

/** A held read or write lock; `release()` (or `using`) unlocks it once. */
export type RwLockGuard = Guard;

/**
 * A readers-writer lock. See the module doc.
 *
 * @example
 * ```ts
 * import { RwLock } from "ipckit";
 * const rw = new RwLock(); // threads: post rw.handle, then RwLock.from(handle) in the worker
 * {
 *   using _a = await rw.read();
 *   using _b = await rw.read(); // many readers at once
 *   console.log(rw.state, rw.tryWrite()); // { readers: 2, writer: false } false
 * }
 * {
 *   using _w = await rw.write({ timeout: 1000 }); // one writer alone
 *   console.log(rw.state, rw.tryRead()); // { readers: 0, writer: true } false
 * }
 * console.log(rw.tryRead()); // true: a read lock without a guard...
 * rw.unlockRead(); // ...is released by hand
 * ```
 */
export class RwLock extends SyncPrimitive {
  /** Bytes an RwLock takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w = words(this);

  /** A new RwLock on its own SharedArrayBuffer. */
  constructor() {
    super("RwLock", RwLock.BYTES);
  }

  /**
   * Rebuilds an RwLock in another worker from `lock.handle`.
   *
   * @example
   * ```ts
   * import { RwLock } from "ipckit";
   * const rw = new RwLock();
   * const same = RwLock.from(rw.handle!); // usually in a worker, from a posted handle
   * using _w = await rw.write();
   * console.log(same.state.writer); // true
   * ```
   */
  static from(handle: SyncHandle): RwLock {
    return fromHandle("RwLock", RwLock.BYTES, handle, () => new RwLock());
  }

  /**
   * The RwLock at `offset` (a multiple of 8) of a shared memory segment or SharedArrayBuffer.
   *
   * @example
   * ```ts
   * import { RwLock, runtime, SharedMemory } from "ipckit";
   * const name = `/ipckit-config-${(await runtime()).pid}`;
   * using segment = await SharedMemory.create(name, { size: 4096 });
   * try {
   *   const writer = RwLock.in(segment, 0); // in one process
   *   const reader = RwLock.in(segment, 0); // in another: same segment, same offset
   *   using _g = await writer.write();
   *   console.log(reader.tryRead()); // false: the writer holds it
   * } finally {
   *   segment.unlink();
   * }
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number): RwLock {
    return placeIn("RwLock", RwLock.BYTES, memory, offset, () => new RwLock());
  }

  /** Number of readers holding it, and whether a writer does (a snapshot). */
  get state(): { readers: number; writer: boolean } {
    const s = Atomics.load(this.#w.i32, this.#w.base + STATE);
    return { readers: s & READERS, writer: (s & WRITER) !== 0 };
  }

  /** Takes a read lock if no writer holds or waits for it. */
  tryRead(): boolean {
    const { i32, base } = this.#w;
    for (;;) {
      const s = Atomics.load(i32, base + STATE);
      if ((s & WRITER) !== 0 || Atomics.load(i32, base + WRITERS_WAITING) > 0) return false;
      if (Atomics.compareExchange(i32, base + STATE, s, s + 1) === s) return true;
    }
  }

  /** Takes the write lock if nobody holds it. */
  tryWrite(): boolean {
    return Atomics.compareExchange(this.#w.i32, this.#w.base + STATE, 0, WRITER) === 0;
  }

  /** Takes a read lock, waiting without blocking the event loop; returns a guard. */
  async read(options?: WaitOptions): Promise<RwLockGuard> {
    if (!this.tryRead()) await this.#w.waitAsync(this.#readSteps(), options, "read-lock an RwLock");
    return guard(() => this.unlockRead());
  }

  /** Takes the write lock, waiting without blocking the event loop; returns a guard. */
  async write(options?: WaitOptions): Promise<RwLockGuard> {
    if (!this.tryWrite()) await this.#w.waitAsync(this.#writeSteps(), options, "write-lock an RwLock");
    return guard(() => this.unlockWrite());
  }

  /** The blocking form of `read()`, for workers. */
  readSync(options?: { timeout?: number }): RwLockGuard {
    if (!this.tryRead()) this.#w.waitSync(this.#readSteps(), options, "read-lock an RwLock");
    return guard(() => this.unlockRead());
  }

  /** The blocking form of `write()`, for workers. */
  writeSync(options?: { timeout?: number }): RwLockGuard {
    if (!this.tryWrite()) this.#w.waitSync(this.#writeSteps(), options, "write-lock an RwLock");
    return guard(() => this.unlockWrite());
  }

  *#readSteps(): Steps<void> {
    while (!this.tryRead()) yield { index: STATE, value: Atomics.load(this.#w.i32, this.#w.base + STATE) };
  }

  /** Counted in WRITERS_WAITING while it waits (which holds new readers back); never sleeps on a free state. */
  *#writeSteps(): Steps<void> {
    const { i32, base } = this.#w;
    Atomics.add(i32, base + WRITERS_WAITING, 1);
    try {
      while (!this.tryWrite()) {
        const v = Atomics.load(i32, base + STATE);
        if (v !== 0) yield { index: STATE, value: v };
      }
    } finally {
      // Readers held back by this writer must look again.
      if (Atomics.sub(i32, base + WRITERS_WAITING, 1) === 1) this.#w.waiter.wake(base + STATE);
    }
  }

  /** Releases a read lock. */
  unlockRead(): void {
    const { i32, base } = this.#w;
    for (;;) {
      const s = Atomics.load(i32, base + STATE);
      if ((s & READERS) === 0) throw new IpcError("Cannot unlock an RwLock for reading: no reader holds it");
      if (Atomics.compareExchange(i32, base + STATE, s, s - 1) === s) {
        if ((s & READERS) === 1) this.#w.waiter.wake(base + STATE);
        return;
      }
    }
  }

  /** Releases the write lock. */
  unlockWrite(): void {
    const { i32, base } = this.#w;
    if (Atomics.compareExchange(i32, base + STATE, WRITER, 0) !== WRITER) {
      throw new IpcError("Cannot unlock an RwLock for writing: no writer holds it");
    }
    this.#w.waiter.wake(base + STATE);
  }
}
