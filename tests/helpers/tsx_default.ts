/**
 * Child for tests/runtime.test.ts, started on Node through tsx with IPCKIT_TS_LOADER unset (the suite's lean loader
 * is then out of the way): prints the Node argv runtimeArgv() gives and what a TypeScript worker thread echoes, as
 * one JSON line. So the path every user takes, tsx for processes and for threads, stays tested.
 */
import { runtimeArgv } from "../../runtimes/argv.ts";
import { runtime } from "../../runtimes/detect.ts";

const w = (await runtime()).worker(new URL("./echo_worker.ts", import.meta.url));
const echoed = await new Promise<unknown>((resolve, reject) => {
  w.onMessage(resolve);
  w.onError(reject);
  w.postMessage("ping");
});
await w.terminate();
console.log(JSON.stringify({ argv: runtimeArgv("node"), echoed }));
