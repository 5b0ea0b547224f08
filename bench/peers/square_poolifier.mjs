// The task of bench/pool.ts for poolifier (threads): its worker module exports a ThreadWorker.
import { ThreadWorker } from "poolifier";
export default new ThreadWorker((n) => n * n);
