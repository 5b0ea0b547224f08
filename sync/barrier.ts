/**
 * A reusable barrier: `wait()` returns once `parties` callers (threads or processes) have arrived, then the barrier
 * is ready for the next generation.
 *
 * Layout (16 bytes): word 0 counts arrivals in the current generation, word 1 is the generation number, word 2 the
 * number of parties (set by the first user; every user must agree), word 3 is 1 once broken. The last arrival resets
 * the count before it advances the generation, so arrivals of the next generation can never be counted in the
 * current one.
 *
 * A waiter that times out or is aborted breaks the barrier (as in Python's `threading.Barrier`): every waiter, now
 * and later, rejects with an `IpcError` (code `"EBROKEN"`) until `reset()`.
 *
 * @module
 */
import { IpcError } from "../errors.ts";
import type { SharedMemory } from "../shm/segment.ts";
import { type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { fromHandle, placeIn, type Steps, words } from "./words.ts";

const ARRIVED = 0;
const GENERATION = 1;
const PARTIES = 2;
const BROKEN = 3;

function checkParties(parties: unknown): number {
  if (!Number.isInteger(parties) || (parties as number) < 1 || (parties as number) > 0x3fff_ffff) {
    throw new RangeError(`Cannot make a Barrier for ${String(parties)} parties: it must be a positive integer`);
  }
  return parties as number;
}

function broken(): IpcError {
  return new IpcError("Cannot wait on a Barrier: it is broken (a waiter timed out or was aborted; reset() it)", {
    code: "EBROKEN",
  });
}

/**
 * A reusable barrier. See the module doc.
 *
 * @example
 * ```ts
 * import { Barrier } from "ipckit";
 * const barrier = new Barrier(3); // threads: post barrier.handle; processes: Barrier.in(segment, offset, 3)
 * const arrive = async (name: string, ms: number) => {
 *   await new Promise((r) => setTimeout(r, ms)); // some work of different length
 *   const index = await barrier.wait({ timeout: 5000 }); // all three leave together
 *   return `${name}:${index}`;
 * };
 * console.log(await Promise.all([arrive("a", 30), arrive("b", 10), arrive("c", 20)])); // ["a:2", "b:0", "c:1"]
 * console.log(barrier.generation); // 1; it is ready for the next round
 * ```
 */
export class Barrier extends SyncPrimitive {
  /** Bytes a Barrier takes in shared memory. */
  static readonly BYTES = 16;
  readonly #w = words(this);
  readonly parties: number;

  /**
   * A new Barrier for `parties` callers, on its own SharedArrayBuffer.
   *
   * @throws {RangeError} when `parties` is not a positive integer.
   */
  constructor(parties: number) {
    checkParties(parties);
    super("Barrier", Barrier.BYTES, parties);
    this.parties = parties;
    this.#w.agree(PARTIES, parties, "place a Barrier", "parties");
  }

  /**
   * Rebuilds a Barrier in another worker from `barrier.handle`.
   *
   * @example
   * ```ts
   * import { Barrier } from "ipckit";
   * const barrier = new Barrier(2);
   * const same = Barrier.from(barrier.handle!); // usually in a worker, from a posted handle
   * console.log(await Promise.all([barrier.wait(), same.wait()])); // [0, 1]
   * ```
   */
  static from(handle: SyncHandle): Barrier {
    return fromHandle("Barrier", Barrier.BYTES, handle, () => new Barrier(handle.extra as number));
  }

  /**
   * The Barrier at `offset` (a multiple of 8) of a shared memory segment or SharedArrayBuffer.
   *
   * @throws {RangeError} when it was placed there before for another number of parties.
   *
   * @example
   * ```ts
   * import { Barrier, IpcError } from "ipckit";
   * const memory = new SharedArrayBuffer(Barrier.BYTES); // or a SharedMemory segment, between processes
   * const barrier = Barrier.in(memory, 0, 2);
   * try {
   *   await barrier.wait({ timeout: 20 }); // the other party never comes: this breaks the barrier
   * } catch (e) {
   *   console.log(e instanceof Error && e.name); // "TimeoutError"
   * }
   * try {
   *   await barrier.wait();
   * } catch (e) {
   *   console.log(e instanceof IpcError && e.code); // "EBROKEN"
   * }
   * barrier.reset(); // usable again
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number, parties: number): Barrier {
    return placeIn("Barrier", Barrier.BYTES, memory, offset, () => new Barrier(parties));
  }

  /** How many generations have completed (a snapshot). */
  get generation(): number {
    return Atomics.load(this.#w.i32, this.#w.base + GENERATION);
  }

  /** Arrives: returns (the caller's arrival index, 0 to parties - 1) when the whole generation arrived. */
  #arrive(): { index: number; generation: number } {
    const { i32, base } = this.#w;
    if (Atomics.load(i32, base + BROKEN) !== 0) throw broken();
    const generation = Atomics.load(i32, base + GENERATION);
    const index = Atomics.add(i32, base + ARRIVED, 1);
    if (index === this.parties - 1) {
      Atomics.store(i32, base + ARRIVED, 0);
      Atomics.add(i32, base + GENERATION, 1);
      this.#w.waiter.wake(base + GENERATION);
    }
    return { index, generation };
  }

  #break(): void {
    Atomics.store(this.#w.i32, this.#w.base + BROKEN, 1);
    // Sleepers wait on the generation word; they re-check BROKEN when woken.
    this.#w.waiter.wake(this.#w.base + GENERATION);
  }

  #passed(generation: number): boolean {
    const { i32, base } = this.#w;
    if (Atomics.load(i32, base + GENERATION) !== generation) return true;
    if (Atomics.load(i32, base + BROKEN) !== 0) throw broken();
    return false;
  }

  /**
   * Waits until all parties arrived, without blocking the event loop. Resolves to this caller's arrival index
   * (`parties - 1` for the last one, which released the others).
   */
  wait(options?: WaitOptions): Promise<number> {
    return this.#w.waitAsync(this.#waitSteps(), options, "wait on a Barrier");
  }

  /** The blocking form of `wait()`, for workers. */
  waitSync(options?: { timeout?: number }): number {
    return this.#w.waitSync(this.#waitSteps(), options, "wait on a Barrier");
  }

  /** Arrives, then sleeps on the generation word until it moves; a timeout or an abort breaks the barrier. */
  *#waitSteps(): Steps<number> {
    const { index, generation } = this.#arrive();
    try {
      while (!this.#passed(generation)) yield { index: GENERATION, value: generation };
    } catch (e) {
      if (!(e instanceof IpcError && e.code === "EBROKEN")) this.#break();
      throw e;
    }
    return index;
  }

  /** Repairs a broken barrier: the count starts again from zero. Call it when nobody waits. */
  reset(): void {
    const { i32, base } = this.#w;
    Atomics.store(i32, base + ARRIVED, 0);
    Atomics.store(i32, base + BROKEN, 0);
    Atomics.add(i32, base + GENERATION, 1);
    this.#w.waiter.wake(base + GENERATION);
  }
}
