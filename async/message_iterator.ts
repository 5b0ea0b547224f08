/**
 * Iterating what a receiver receives: one AsyncIterator over `receive()` for every channel and one-way receiver
 * (the shm collector, a pub-sub subscriber), ending quietly at `ClosedError`.
 *
 * @module
 */
import { ClosedError } from "../errors.ts";

/**
 * An AsyncIterator over `receive()` that ends quietly at `ClosedError` (any other error is thrown on). Leaving a
 * `for await` early (`break`) does not close the source: it stays usable. A plain iterator: cheaper than an async
 * generator.
 *
 * @example
 * ```ts
 * import { messageIterator } from "./message_iterator.ts";
 * import { ClosedError } from "../errors.ts";
 * let left = 2;
 * const source = { receive: () => left-- > 0 ? Promise.resolve(left) : Promise.reject(new ClosedError("done")) };
 * const got: number[] = [];
 * for await (const n of { [Symbol.asyncIterator]: () => messageIterator(source) }) got.push(n);
 * console.log(got); // [1, 0]
 * ```
 */
export function messageIterator<T>(source: { receive(): Promise<T> }): AsyncIterator<T> {
  const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
  const onValue = (value: T): IteratorResult<T> => ({ done: false, value });
  const onError = (e: unknown): IteratorResult<T> => {
    if (e instanceof ClosedError) return done;
    throw e;
  };
  return {
    next: () => source.receive().then(onValue, onError),
    return: () => Promise.resolve(done),
  };
}
