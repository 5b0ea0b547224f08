/** Worker module for tests/pool.test.ts: one module for threads and processes of every runtime. */
// The worker side only (not mod.ts): every worker process and thread the pool tests start loads this module.
import type { CallContext } from "../../rpc/peer.ts";
import * as pool from "../../pool/worker.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
/** This worker, among all of one test (threads share a pid). */
const WORKER_ID = crypto.randomUUID();

await pool.worker({
  run: (n: number) => n * n,
  /** Where the task ran: this worker's pid and runtime (a thread shares the master's pid), and which worker it is. */
  whoami: () => ({ pid: rt.pid, runtime: rt.name, worker: WORKER_ID }),
  async sleep(this: CallContext, ms: number) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      this.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(this.signal.reason);
      });
    });
    return ms;
  },
  /** Blocks the worker's event loop (a hung worker). */
  spin(ms: number) {
    const until = Date.now() + ms;
    while (Date.now() < until) { /* hung on purpose */ }
    return ms;
  },
  /** Answers, then hangs while idle (its event loop never comes back): for the pool's heartbeat. */
  freeze() {
    setTimeout(() => {
      for (;;) { /* hung on purpose */ }
    }, 20);
    return "frozen soon";
  },
  /** Dies: a process exits; a thread ends with an uncaught error. */
  die(code = 1) {
    if (rt.env("IPCKIT_POOL_WORKER") === "process") rt.exit(code);
    setTimeout(() => {
      throw new Error("the worker thread crashes on purpose");
    });
    return new Promise(() => {});
  },
  fail(message: string) {
    throw new RangeError(message);
  },
});
