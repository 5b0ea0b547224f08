// The task of bench/pool.ts for workerpool (threads and processes): its worker registers the function by name.
import workerpool from "workerpool";
workerpool.worker({ square: (n) => n * n });
