/**
 * Latency distributions for the benchmarks, kept in an HdrHistogram (`hdr-histogram-js`, the JavaScript port of Gil
 * Tene's HdrHistogram): every sample is recorded, in nanoseconds with three significant digits, so p50, p99, p99.9 and
 * the maximum come from the whole run, not from a median of batch means.
 *
 * @example
 * ```ts
 * const lat = new Latency();
 * for (const us of [0.8, 0.9, 1.1, 40]) lat.record(us);
 * console.log(formatDistribution(lat.summary())); // p50 0.90 / p99 40.0 / p99.9 40.0 / max 40.0 us (4 samples)
 * ```
 *
 * @module
 */
import { build, decodeFromCompressedBase64, encodeIntoCompressedBase64, type Histogram } from "hdr-histogram-js";

/** A latency distribution, in microseconds. */
export interface Distribution {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** Samples of one measure, in microseconds (recorded as nanoseconds: 1 ns to 60 s, three significant digits). */
export class Latency {
  readonly #h: Histogram = build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60e9,
    numberOfSignificantValueDigits: 3,
  });

  /**
   * The samples of another process's Latency, from its {@linkcode encode} (HdrHistogram's compressed form).
   *
   * @throws {TypeError} when `text` is not an encoded histogram.
   */
  static decode(text: string): Latency {
    const lat = new Latency();
    let h: Histogram;
    try {
      h = decodeFromCompressedBase64(text);
    } catch (e) {
      throw new TypeError(`Cannot decode a latency histogram: ${(e as Error).message}`, { cause: e });
    }
    lat.#h.add(h);
    return lat;
  }

  /** Every sample, as text another process can {@linkcode decode} (HdrHistogram's compressed base64 form). */
  encode(): string {
    return encodeIntoCompressedBase64(this.#h);
  }

  /** Adds the samples of `other` to this one's. */
  add(other: Latency): void {
    this.#h.add(other.#h);
  }

  /** Records one sample of `us` microseconds. */
  record(us: number): void {
    this.#h.recordValue(Math.min(60e9, Math.max(1, Math.round(us * 1000))));
  }

  /** The distribution of what was recorded. */
  summary(): Distribution {
    const h = this.#h;
    const at = (p: number) => h.getValueAtPercentile(p) / 1000;
    return {
      count: h.totalCount,
      p50: at(50),
      p99: at(99),
      p999: at(99.9),
      max: h.maxValue / 1000,
      mean: h.mean / 1000,
    };
  }
}

/** `p50 0.83 / p99 2.10 / p99.9 40.1 / max 460 us (100000 samples)`: the shape of a distribution on one line. */
export function formatDistribution(d: Distribution): string {
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));
  return `p50 ${f(d.p50)} / p99 ${f(d.p99)} / p99.9 ${f(d.p999)} / max ${f(d.max)} us (${d.count} samples)`;
}

/**
 * The lowest and highest of `a[i] / b[i]`: the ratios of two measures taken part by part in one run (the p99 of each
 * quarter of the shm channel's round trips against the socket's), how far the whole run's ratio could move.
 */
export function ratioRange(a: readonly number[], b: readonly number[]): [number, number] {
  if (a.length === 0 || a.length !== b.length) throw new RangeError(`Cannot pair ${a.length} parts with ${b.length}`);
  const r = a.map((x, i) => x / b[i]!);
  return [Math.min(...r), Math.max(...r)];
}
