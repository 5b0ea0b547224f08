/**
 * Serial turns: async operations that must not overlap run one after another, in call order.
 *
 * @module
 */
import { onAbort } from "./abort.ts";
import { Fifo } from "./fifo.ts";

/**
 * Runs the functions given to `run()` one at a time, each after the previous one settled (fulfilled or rejected).
 * A failure is reported to its own caller only; the next turn runs regardless.
 *
 * @example
 * ```ts
 * const writes = new Turns();
 * await Promise.all([writes.run(() => write(a)), writes.run(() => write(b))]); // a, then b
 * ```
 */
export class Turns {
  #tail: Promise<unknown> = Promise.resolve();
  #running = 0;

  /** Runs `fn` after every earlier turn settled; resolves or rejects as `fn` does. */
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    this.#running++;
    const turn = this.#tail.then(fn);
    const done = () => void this.#running--;
    this.#tail = turn.then(done, done);
    return turn;
  }

  /** Turns waiting or running. */
  get pending(): number {
    return this.#running;
  }

  /** Resolves once every turn given so far has settled. */
  idle(): Promise<void> {
    return this.#tail.then(() => {});
  }
}

/**
 * Serial turns for hot paths: callers that must not overlap go through one at a time, in arrival order, and one that
 * finds the turnstile free goes at once, with no promise made (`Turns` makes two per turn). Every `enter()` is
 * matched by one `leave()`, also when the caller fails.
 *
 * @example
 * ```ts
 * const reads = new Turnstile();
 * async function read(): Promise<void> {
 *   const wait = reads.enter();
 *   try {
 *     if (wait) await wait;
 *     // ... this caller's turn
 *   } finally {
 *     reads.leave();
 *   }
 * }
 * await Promise.all([read(), read()]); // one after the other
 * ```
 */
export class Turnstile {
  /** Callers through or waiting. */
  #inside = 0;
  readonly #waiting = new Fifo<() => void>();
  #idle: (() => void)[] = [];

  /** Callers through or waiting (0: free). */
  get inside(): number {
    return this.#inside;
  }

  /**
   * Enters: undefined when the caller may go now, otherwise a promise that resolves at its turn. When `signal` aborts
   * before the turn came, the promise rejects with its reason and the caller is out already: it must not `leave()`.
   */
  enter(signal?: AbortSignal): Promise<void> | undefined {
    if (this.#inside++ === 0) return undefined;
    return new Promise((resolve, reject) => {
      if (signal === undefined) return this.#waiting.push(resolve);
      let unlisten = () => {};
      const go = () => {
        unlisten();
        resolve();
      };
      this.#waiting.push(go);
      unlisten = onAbort(signal, () => {
        if (!this.#waiting.remove(go)) return; // its turn came first
        this.#inside--;
        this.#settleIdle();
        reject(signal.reason);
      });
    });
  }

  /** Leaves: the next caller waiting goes. */
  leave(): void {
    this.#inside--;
    const next = this.#waiting.shift();
    if (next) return next();
    this.#settleIdle();
  }

  #settleIdle(): void {
    if (this.#inside === 0 && this.#idle.length > 0) {
      const idle = this.#idle;
      this.#idle = [];
      for (const resolve of idle) resolve();
    }
  }

  /** Resolves once no caller is through or waiting. */
  idle(): Promise<void> {
    return this.#inside === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }
}
