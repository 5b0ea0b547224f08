/**
 * Serial turns: async operations that must not overlap run one after another, in call order.
 *
 * @module
 */

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
