/**
 * Latency histograms in the stats segment (`shm/stats.ts`): a slot of kind `latency` per thing timed (an RPC
 * method called or served on a connection, a pool's wait and run times), named `<owner> · <what>`, e.g.
 * `rpc 1 · call add` or `thread pool 1 · run`.
 *
 * Every operation is counted; one in {@linkcode SAMPLE_EVERY} is timed (two clock reads cost ~0.1 us on some
 * machines, a twentieth of an RPC call over shared memory: timing all of them would cost more than the issue's
 * 5 % allows). The timed ones go into {@linkcode LATENCY_BUCKETS} buckets, doubling from 2 us:
 *
 * | counter | what                                                                                    |
 * | ------- | --------------------------------------------------------------------------------------- |
 * | 0       | `count`: operations begun                                                               |
 * | 1       | `failed`: operations that ended with an error                                           |
 * | 2       | `sumUs`: the timed operations' total time, microseconds                                 |
 * | 3 + k   | bucket k: timed operations that took [2^k, 2^(k+1)) us; bucket 0 from 0, the last to ∞ |
 *
 * Slots are shared by name within a process: the connections of one server given the same `name` count together.
 *
 * @module
 */
import { type Counters, LATENCY_BUCKETS, track } from "./stats.ts";

/**
 * One operation in this many is timed (all are counted).
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * console.log(stats.SAMPLE_EVERY); // 8: a slot's buckets hold about count / 8 operations
 * ```
 */
export const SAMPLE_EVERY = 8;
/** How many buckets a latency slot has. */
export { LATENCY_BUCKETS } from "./stats.ts";
const COUNT = 0, FAILED = 1, SUM_US = 2, BUCKET0 = 3;
/** Not timed: what {@linkcode Latency.start} returns for the operations it does not time. */
export const UNTIMED = -1;

/** The bucket of a time in microseconds. */
export function bucketOf(us: number): number {
  if (!(us >= 2)) return 0;
  return Math.min(LATENCY_BUCKETS - 1, Math.floor(Math.log2(us)));
}

/**
 * The lower bound of bucket `k` in microseconds (0 for the first).
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * console.log(stats.bucketFloorUs(0), stats.bucketFloorUs(1), stats.bucketFloorUs(10)); // 0 2 1024
 * ```
 */
export function bucketFloorUs(k: number): number {
  return k === 0 ? 0 : 2 ** k;
}

/**
 * The upper bound of bucket `k` in microseconds (Infinity for the last).
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * console.log(stats.bucketCeilingUs(0), stats.bucketCeilingUs(stats.LATENCY_BUCKETS - 1)); // 2 Infinity
 * ```
 */
export function bucketCeilingUs(k: number): number {
  return k >= LATENCY_BUCKETS - 1 ? Infinity : 2 ** (k + 1);
}

/**
 * The `q` quantile (0 to 1) of bucket counts, in microseconds, interpolated linearly inside its bucket (as
 * Prometheus's `histogram_quantile` does; the last bucket, open-ended, gives its lower bound). NaN when empty.
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * const buckets = new Array(stats.LATENCY_BUCKETS).fill(0);
 * buckets[1] = 90; // 2-4 us
 * buckets[5] = 10; // 32-64 us
 * console.log(stats.quantile(buckets, 0.5), stats.quantile(buckets, 0.99)); // 3.11... 60.8
 * ```
 */
export function quantile(buckets: readonly number[], q: number): number {
  let total = 0;
  for (const n of buckets) total += n;
  if (total === 0) return NaN;
  const rank = q * total;
  let below = 0;
  for (let k = 0; k < buckets.length; k++) {
    const n = buckets[k]!;
    if (n > 0 && below + n >= rank) {
      const lo = bucketFloorUs(k), hi = bucketCeilingUs(k);
      if (hi === Infinity) return lo;
      return lo + (hi - lo) * Math.max(0, rank - below) / n;
    }
    below += n;
  }
  return bucketFloorUs(buckets.length - 1);
}

/** A latency slot: count with {@linkcode start} and {@linkcode end}. */
export class Latency {
  readonly counters: Counters;
  /** How many objects use it (slots are shared by name). */
  users = 0;
  #n = 0;

  constructor(name: string) {
    this.counters = track("latency", name);
  }

  /** Counts one operation; returns its start time when it is one to time, else {@linkcode UNTIMED}. */
  start(): number {
    this.counters.values[COUNT]!++;
    return (this.#n++ & (SAMPLE_EVERY - 1)) === 0 ? performance.now() : UNTIMED;
  }

  /** {@linkcode start} for a caller that read the clock already (`now`: its performance.now()). */
  startAt(now: number): number {
    this.counters.values[COUNT]!++;
    return (this.#n++ & (SAMPLE_EVERY - 1)) === 0 ? now : UNTIMED;
  }

  /** The operation that {@linkcode start} returned `started` for ended (`ok`: without an error). */
  end(started: number, ok: boolean): void {
    const v = this.counters.values;
    if (!ok) v[FAILED]!++;
    if (started === UNTIMED) return;
    const us = (performance.now() - started) * 1000;
    v[SUM_US]! += us;
    v[BUCKET0 + bucketOf(us)]!++;
  }
}

/** What a latency slot (or several) says, for a program: see {@linkcode summarize}. */
export interface LatencySummary {
  /** Operations begun. */
  count: number;
  /** Of those, ended with an error. */
  failed: number;
  /** Operations timed (one in {@linkcode SAMPLE_EVERY}). */
  timed: number;
  /** The median and the 99th percentile of the timed ones, in microseconds; NaN when none was timed. */
  p50: number;
  p99: number;
  /** Their mean, in microseconds; NaN when none was timed. */
  mean: number;
}

/** Adds up latency slots (their counts and buckets) into one summary. */
export function summarize(slots: readonly Latency[]): LatencySummary {
  const buckets = new Array<number>(LATENCY_BUCKETS).fill(0);
  let count = 0, failed = 0, sum = 0;
  for (const l of slots) {
    const v = l.counters.values;
    count += v[COUNT]!;
    failed += v[FAILED]!;
    sum += v[SUM_US]!;
    for (let k = 0; k < LATENCY_BUCKETS; k++) buckets[k]! += v[BUCKET0 + k]!;
  }
  const timed = buckets.reduce((a, b) => a + b, 0);
  return {
    count,
    failed,
    timed,
    p50: quantile(buckets, 0.5),
    p99: quantile(buckets, 0.99),
    mean: timed === 0 ? NaN : sum / timed,
  };
}

const shared = new Map<string, Latency>();

/** The latency slots of this process whose names start with `prefix` (a connection's or a pool's). */
export function latenciesNamed(prefix: string): Latency[] {
  return [...shared.values()].filter((l) => l.counters.name.startsWith(prefix));
}

/** The latency slot named `name` in this process (made on first use); give it back with {@linkcode releaseLatency}. */
export function latency(name: string): Latency {
  let l = shared.get(name);
  if (!l) shared.set(name, l = new Latency(name));
  l.users++;
  return l;
}

/** One user of `l` is done with it; the last one closes its slot. */
export function releaseLatency(l: Latency): void {
  if (--l.users > 0) return;
  if (shared.get(l.counters.name) === l) shared.delete(l.counters.name);
  l.counters.close();
}

/**
 * A family of latency slots of one owner, one per key (an RPC method), at most `max` of them: the keys past it share
 * one slot named `(other)`, so a peer calling ever new method names cannot take every slot of the segment.
 */
export class LatencyFamily {
  readonly #prefix: string;
  readonly #max: number;
  readonly #slots = new Map<string, Latency>();
  #other: Latency | undefined;
  #lastKey: string | undefined;
  #last: Latency | undefined;

  constructor(prefix: string, max = 32) {
    this.#prefix = prefix;
    this.#max = max;
  }

  /** The slot of `key`. */
  of(key: string): Latency {
    if (key === this.#lastKey) return this.#last!; // the same method again: no lookup
    const l = this.#slots.get(key) ?? this.#take(key);
    this.#lastKey = key;
    this.#last = l;
    return l;
  }

  #take(key: string): Latency {
    if (this.#slots.size < this.#max) {
      const made = latency(`${this.#prefix}${key}`);
      this.#slots.set(key, made);
      return made;
    }
    return this.#other ??= latency(`${this.#prefix}(other)`);
  }

  /** Gives every slot back. */
  close(): void {
    for (const l of this.#slots.values()) releaseLatency(l);
    this.#slots.clear();
    if (this.#other) releaseLatency(this.#other);
    this.#other = undefined;
    this.#lastKey = this.#last = undefined;
  }
}
