/**
 * The async toolkit every layer above the runtimes shares: abort listeners, abortable delays and backoff,
 * deadlines and retries, serial turns, a FIFO queue and a queue of waiting callers. Written once here; nothing
 * else in the library hand-rolls them.
 *
 * @module
 */
export { onAbort } from "./abort.ts";
export { Backoff, delay, within } from "./delay.ts";
export { Deadline, retry, type RetryOptions } from "./deadline.ts";
export { Fifo } from "./fifo.ts";
export { messageIterator } from "./message_iterator.ts";
export { Turns, Turnstile } from "./turns.ts";
export { type Waiter, Waiters, type WaitOptions } from "./waiters.ts";
