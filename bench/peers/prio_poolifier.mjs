// The priority mix of bench/pool.ts for poolifier (threads): its priorities belong to task functions (lower runs
// first), not to single tasks, so the same task is registered twice: `low` and `high`.
import { ThreadWorker } from "poolifier";
import { tasks } from "./pool_tasks.mjs";
export default new ThreadWorker({
  low: { taskFunction: (n) => tasks.cpu(n), priority: 1 },
  high: { taskFunction: (n) => tasks.cpu(n), priority: 0 },
});
