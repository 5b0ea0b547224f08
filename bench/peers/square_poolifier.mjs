// The tasks of bench/pool.ts for poolifier (threads): its worker module exports a ThreadWorker of `{ kind, arg }`.
import { ThreadWorker } from "poolifier";
import entry from "./pool_tasks.mjs";
export default new ThreadWorker(entry);
