/** Worker for tests/runtime.test.ts: echoes every message back with its thread id. */
import { parentPort, threadId } from "node:worker_threads";

parentPort!.on("message", (m: unknown) => {
  if (m === "exit") return parentPort!.close();
  parentPort!.postMessage({ echo: m, threadId });
});
