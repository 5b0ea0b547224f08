/**
 * Worker for tests/conformance/sync.ts: runs each scenario of sync_scenarios.ts it is sent, on the SharedArrayBuffer
 * that comes with it, and answers; the suite keeps its threads for the whole file.
 */
import { parentPort } from "node:worker_threads";
import { type Kind, type Params, run } from "./sync_scenarios.ts";

parentPort!.on("message", async (m: { kind: Kind; sab: SharedArrayBuffer; party: number; params: Params }) => {
  try {
    parentPort!.postMessage({ ok: await run(m.kind, m.sab, m.party, m.params) });
  } catch (e) {
    parentPort!.postMessage({ error: String((e as Error)?.stack ?? e) });
  }
});
