/**
 * Abortable pauses and the backoff between attempts.
 *
 * @module
 */
import { onAbort } from "./abort.ts";

/**
 * Waits `ms` milliseconds (0: one macrotask). Ends early, without rejecting, when `signal` aborts: it resolves
 * `true` when the whole time passed and `false` when the signal cut it short, so a loop can check its own state
 * (closed? aborted?) and say why it stops.
 */
export function delay(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const stop = onAbort(signal, () => {
      clearTimeout(timer);
      resolve(false);
    });
    const timer = setTimeout(() => {
      stop();
      resolve(true);
    }, ms);
  });
}

/**
 * Waits for `promise` to settle, for at most `ms` milliseconds: resolves `true` when it settled (fulfilled or
 * rejected) in time and `false` when the time ran out first. Never rejects; its timer is cleared either way. For a
 * grace period ("give it a moment, then force it"), not for a result: read `promise` itself for that.
 *
 * @example
 * ```ts
 * if (!(await within(child.exited, 1000))) child.kill("SIGKILL");
 * ```
 */
export function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    const settled = () => {
      clearTimeout(timer);
      resolve(true);
    };
    promise.then(settled, settled);
  });
}

/**
 * The pauses between attempts of a polling loop: `first`, then each pause `factor` times the last, at most `max`
 * milliseconds. `reset()` after progress starts again from `first`.
 *
 * @example
 * ```ts
 * const backoff = new Backoff({ first: 1, max: 20 });
 * while (!tryTake()) await delay(backoff.next(), signal);
 * ```
 */
export class Backoff {
  readonly first: number;
  readonly max: number;
  readonly factor: number;
  #next: number;

  constructor(options: { first?: number; max?: number; factor?: number } = {}) {
    const { first = 1, max = 50, factor = 2 } = options;
    if (!(first >= 0) || !(max >= first) || !(factor >= 1)) {
      throw new RangeError(`Cannot make a backoff from ${first} to ${max} ms by ${factor}: need 0 <= first <= max`);
    }
    this.first = first;
    this.max = max;
    this.factor = factor;
    this.#next = first;
  }

  /** The next pause, in milliseconds. */
  next(): number {
    const d = this.#next;
    this.#next = Math.min(this.max, d === 0 ? 1 : d * this.factor);
    return d;
  }

  /** Starts again from `first` (call it after an attempt made progress). */
  reset(): void {
    this.#next = this.first;
  }
}
