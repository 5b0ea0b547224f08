/**
 * Deadlines, and "try until it works or the time is up".
 *
 * @module
 */
import { Backoff, delay } from "./delay.ts";

/** A point in time operations must finish by; `Deadline.after(undefined)` never passes. */
export class Deadline {
  /** The time, in `Date.now()` milliseconds (Infinity: never). */
  readonly at: number;

  private constructor(at: number) {
    this.at = at;
  }

  /** The deadline `ms` milliseconds from now; `undefined` (no timeout) never passes. */
  static after(ms: number | undefined): Deadline {
    return new Deadline(ms === undefined ? Infinity : Date.now() + ms);
  }

  /** Milliseconds left, 0 once passed (Infinity for a deadline that never passes). */
  get remaining(): number {
    return Math.max(0, this.at - Date.now());
  }

  /** Whether the time is up. */
  get passed(): boolean {
    return Date.now() >= this.at;
  }
}

/** Options of {@linkcode retry}. */
export interface RetryOptions {
  /** How long to keep trying, in milliseconds (0: once). */
  wait: number;
  /** Whether a failure is worth another attempt (e.g. "does not exist yet"); any other failure is thrown at once. */
  retryable(error: unknown): boolean;
  /** Stops the attempts: the signal's reason is thrown. */
  signal?: AbortSignal;
  /** The pauses between attempts (default 1 ms doubling to 50 ms). */
  backoff?: Backoff;
}

/**
 * Calls `attempt` until it returns, pausing between attempts, for at most `options.wait` milliseconds; past that
 * (or on a failure that is not `retryable`) the last failure is thrown.
 *
 * @example
 * ```ts
 * // Open a queue its creator may not have made yet, waiting up to 5 s.
 * const q = await retry(() => open(name), { wait: 5000, retryable: (e) => e instanceof NotFoundError });
 * ```
 */
export async function retry<T>(attempt: () => T | Promise<T>, options: RetryOptions): Promise<T> {
  const { wait, retryable, signal } = options;
  if (!(wait >= 0)) throw new RangeError(`Cannot wait ${wait} ms: it must be >= 0 milliseconds`);
  const deadline = Deadline.after(wait);
  const backoff = options.backoff ?? new Backoff();
  for (;;) {
    signal?.throwIfAborted();
    try {
      return await attempt();
    } catch (e) {
      if (!retryable(e) || deadline.passed) throw e;
    }
    await delay(Math.min(backoff.next(), deadline.remaining), signal);
  }
}
