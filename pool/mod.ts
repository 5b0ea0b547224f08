/**
 * The Master-Worker pool: `new Pool(options)` on the master, `worker(handlers)` in the worker module.
 *
 * @module
 */
export { type BroadcastAnswer, Pool, type PoolOptions, type PoolStats, type RunOptions } from "./pool.ts";
export { move, worker, type WorkerHandlers } from "./worker.ts";
export type { PoolEvent } from "./events.ts";
export type { NatsPoolOptions } from "./remote.ts";
