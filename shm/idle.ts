/**
 * How one side of a shared-memory channel waits when there is nothing to receive (or no room to send): its idle
 * strategy, after Aeron's (busy spin, backoff, sleep).
 *
 * - `"spin-then-park"` (the default): spin for up to `spin` microseconds (looking at the ring once per microtask
 *   turn), then park (sleep until the peer rings, or 100 ms). The spin adapts: when it runs out without a message,
 *   the next spin is a quarter as long, down to none; one that finds its message restores the whole `spin`; while
 *   the spin is off, every 16th wait spins whole again to find out whether spinning pays now. So a pair with a core
 *   each answers within the spin, and a pair fighting a busy machine for CPUs (or sharing one) parks at once
 *   instead of burning the time slice its peer needs. A process allowed on one CPU only (`taskset -c 0`) never
 *   spins.
 * - `"park"`: never spin. The least CPU; every wait costs a wake-up (tens of microseconds).
 * - `"spin"`: never park. The lowest latency and a whole core while waiting; the event loop's timers and I/O run
 *   only every 10 ms of spinning, so give it a worker thread or a process of its own.
 *
 * @module
 */

/** The idle strategies of a shm channel side; see the module doc. */
export type IdleStrategy = "spin-then-park" | "park" | "spin";

const STRATEGIES: readonly IdleStrategy[] = ["spin-then-park", "park", "spin"];
const PROBE_EVERY = 16;

/**
 * The wait strategy option (`"spin-then-park"` when not given).
 *
 * @throws {RangeError} when it is not one of the strategies.
 */
export function idleOption(wait: unknown): IdleStrategy {
  if (wait === undefined) return "spin-then-park";
  if (!STRATEGIES.includes(wait as IdleStrategy)) {
    throw new RangeError(`Cannot use idle strategy ${String(wait)}: it must be one of ${STRATEGIES.join(", ")}`);
  }
  return wait as IdleStrategy;
}

/** The spin budget of one direction of one channel side. */
export class Idle {
  readonly strategy: IdleStrategy;
  readonly #spinUs: number;
  #budget: number;
  #waits = 0;

  /** `cpus`: how many CPUs this process may run on (with one, spinning only takes the time its peer needs). */
  constructor(strategy: IdleStrategy, spinUs: number, cpus: number) {
    this.strategy = strategy;
    this.#spinUs = strategy === "park" || (strategy === "spin-then-park" && cpus <= 1) ? 0 : spinUs;
    this.#budget = this.#spinUs;
  }

  /** Microseconds to spin in the wait that starts now before parking (Infinity: never park). */
  next(): number {
    if (this.strategy === "spin") return Infinity;
    if (this.#budget === 0 && this.#spinUs > 0 && ++this.#waits % PROBE_EVERY === 0) return this.#spinUs;
    return this.#budget;
  }

  /** The wait's spin found what it waited for. */
  found(): void {
    this.#budget = this.#spinUs;
  }

  /** The wait's spin ran out: it parks. */
  ranOut(): void {
    this.#budget = this.#budget < 4 ? 0 : this.#budget / 4;
  }
}
