// The tasks of bench/pool.ts for workerpool (threads and processes): its worker registers them by name.
import workerpool from "workerpool";
import { tasks } from "./pool_tasks.mjs";
workerpool.worker(tasks);
