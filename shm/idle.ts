/**
 * How one side of a shared-memory channel waits when there is nothing to receive (or no room to send): its idle
 * strategy, after Aeron's (busy spin, backoff, sleep).
 *
 * - `"spin-then-park"` (the default): spin for up to `spin` microseconds (looking at the ring once per microtask
 *   turn), then park (sleep until the peer rings). After sending to a peer that was asleep, the spin lasts four
 *   times as long: the answer comes after the peer's wake-up. It spins only while spins mostly find their message:
 *   when more than one in two ran out lately (a moving average over about eight waits), it parks at once for 16
 *   waits, then spins once, four times as long, to find out whether spinning pays again; each such probe that
 *   runs out doubles the time parked (up to 256 waits), one that pays ends it. A spin that runs out on a
 *   machine whose CPUs are all taken burns the time slice a runnable task (perhaps the peer) waits for: measured
 *   here, a pair beside one CPU-bound process round-trips 1.5-2.9x slower spinning every time than parking. So it
 *   does not spin while the machine is crowded (more runnable tasks than its CPUs for 7 ms or more, `os/load.ts`):
 *   a pool's master and two workers on two CPUs do 4-29 % more tasks a second 1000 at a time. A process allowed on
 *   one CPU (`taskset -c 0`) never spins.
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
/** How many spins' worth a probe (or a wait for a peer being woken) spins. */
const LONG_SPIN = 4;
/** The longest time parked without a probe, in waits. */
const MAX_OFF = 256;
/** Above this share of spins that ran out lately, a side parks at once. */
const FAILING = 0.5;
const NEVER = () => false;

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
  /** How often spins ran out lately: a moving average of 1 (ran out) and 0 (found), weight 1/8. */
  #failures = 0;
  /** Waits left to park without spinning; the last one probes. */
  #off = 0;
  #offPeriod = PROBE_EVERY;
  #probing = false;
  readonly #crowded: () => boolean;

  /**
   * `cpus`: how many CPUs this process may run on (with one, spinning only takes the time its peer needs);
   * `crowded`: whether more tasks are runnable than those CPUs now (`os/load.ts`), when this side can tell.
   */
  constructor(strategy: IdleStrategy, spinUs: number, cpus: number, crowded: () => boolean = NEVER) {
    this.strategy = strategy;
    this.#spinUs = strategy === "park" || (strategy === "spin-then-park" && cpus <= 1) ? 0 : spinUs;
    this.#crowded = crowded;
  }

  /**
   * Microseconds to spin in the wait that starts now before parking (Infinity: never park). `peerParked`: the
   * peer was asleep when this side last sent to it, so its answer comes after a wake-up (tens of microseconds
   * here): the spin waits long enough for that.
   */
  next(peerParked = false): number {
    if (this.strategy === "spin") return Infinity;
    if (this.#off > 0 && --this.#off > 0) return 0;
    if (this.#spinUs > 0 && this.#crowded()) return 0;
    this.#probing = this.#failures > FAILING;
    return this.#probing || peerParked ? this.#spinUs * LONG_SPIN : this.#spinUs;
  }

  /** The wait's spin found what it waited for. */
  found(): void {
    this.#failures -= this.#failures / 8;
    if (this.#probing) {
      this.#probing = false;
      this.#offPeriod = PROBE_EVERY;
      this.#failures = FAILING - 0.05;
    }
  }

  /** The wait's spin ran out: it parks. */
  ranOut(): void {
    this.#failures += (1 - this.#failures) / 8;
    if (this.#probing) {
      this.#probing = false;
      this.#offPeriod = Math.min(MAX_OFF, this.#offPeriod * 2);
      this.#off = this.#offPeriod;
    } else if (this.#failures > FAILING) {
      this.#off = this.#offPeriod;
    }
  }
}
