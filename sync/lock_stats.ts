/**
 * The live counters of a lock or semaphore that its user chose to show (`mutex.observe(name)`,
 * `semaphore.observe(name)`), in the process's stats segment (`shm/stats.ts`, kinds `lock` and `semaphore`):
 * acquisitions, waits, waits given up, owner-died takeovers, waiters now, and for a mutex which thread of this
 * process holds it, since when, and the longest hold. Each process that uses a lock counts its own use of it; a
 * reader adds the processes up by name (`ipckit top` shows them side by side).
 *
 * Only observed primitives count (one branch on an unobserved one): a program may hold thousands of locks in a
 * shared struct, and a slot each would fill the segment. An observed mutex reads the clock when it is taken and when
 * it is released (tens of nanoseconds each). The slot is closed when the primitive is garbage-collected (never while
 * this process holds it: a held observed mutex is kept reachable until it is unlocked).
 *
 * @module
 */
import { type Counters, track } from "../shm/stats.ts";

// COUNTERS.lock of shm/stats.ts
const ACQUIRED = 0, CONTENDED = 1, OWNER_DIED = 2, GAVE_UP = 3, WAITING = 4, HOLDER = 5, HELD_SINCE = 6;
const LONGEST_HOLD_US = 7;
// COUNTERS.semaphore
const S_ACQUIRED = 0, S_CONTENDED = 1, S_GAVE_UP = 2, S_RELEASED = 3, S_WAITING = 4, S_VALUE = 5;

const closing = new FinalizationRegistry<Counters>((c) => c.close());
/**
 * Observed mutexes this process holds: kept reachable while held, so that a lock taken and never given back stays
 * shown even when the program dropped its last reference to the object (what a monitor is for).
 */
const holding = new Set<object>();

/** The counters of one observed mutex in this process. */
export class MutexStats {
  readonly #c: Counters;
  readonly #owner: object;
  #since = 0;

  constructor(owner: object, name: string) {
    this.#c = track("lock", name);
    this.#owner = owner;
    closing.register(owner, this.#c);
  }

  /** Taken by thread `id` of this process (`tookOver`: from an owner that died holding it). */
  acquired(id: number, tookOver: boolean): void {
    holding.add(this.#owner);
    const v = this.#c.values;
    v[ACQUIRED]!++;
    if (tookOver) v[OWNER_DIED]!++;
    v[HOLDER] = id;
    v[HELD_SINCE] = Date.now();
    this.#since = performance.now();
  }

  /** Released by its holder here. */
  released(): void {
    holding.delete(this.#owner);
    const v = this.#c.values;
    const held = (performance.now() - this.#since) * 1000;
    if (held > v[LONGEST_HOLD_US]!) v[LONGEST_HOLD_US] = held;
    v[HOLDER] = 0;
    v[HELD_SINCE] = 0;
  }

  /** A caller starts to wait for it. */
  waiting(): void {
    const v = this.#c.values;
    v[CONTENDED]!++;
    v[WAITING]!++;
  }

  /** A wait ended (`took`: with the lock; otherwise it timed out or was aborted). */
  waited(took: boolean): void {
    const v = this.#c.values;
    v[WAITING]!--;
    if (!took) v[GAVE_UP]!++;
  }
}

/** The counters of one observed semaphore in this process. */
export class SemaphoreStats {
  readonly #c: Counters;

  constructor(owner: object, name: string) {
    this.#c = track("semaphore", name);
    closing.register(owner, this.#c);
  }

  /** Permits taken here; `left`: the count after. */
  acquired(left: number): void {
    const v = this.#c.values;
    v[S_ACQUIRED]!++;
    v[S_VALUE] = left;
  }

  /** Permits given back here; `left`: the count after. */
  released(left: number): void {
    const v = this.#c.values;
    v[S_RELEASED]!++;
    v[S_VALUE] = left;
  }

  /** A caller starts to wait for permits. */
  waiting(): void {
    const v = this.#c.values;
    v[S_CONTENDED]!++;
    v[S_WAITING]!++;
  }

  /** A wait ended (`took`: with its permits; otherwise it timed out or was aborted). */
  waited(took: boolean): void {
    const v = this.#c.values;
    v[S_WAITING]!--;
    if (!took) v[S_GAVE_UP]!++;
  }
}

/** Checks an observed primitive's name. */
export function checkName(name: unknown, what: string): string {
  if (typeof name !== "string" || name === "") {
    throw new TypeError(`Cannot observe a ${what}: its name must be a non-empty string`);
  }
  return name;
}
