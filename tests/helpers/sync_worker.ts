/** Worker for tests/conformance/sync.ts: runs one scenario of sync_scenarios.ts on the SharedArrayBuffer it is sent. */
import { parentPort } from "node:worker_threads";
import { type Kind, type Params, run } from "./sync_scenarios.ts";

parentPort!.once("message", async (m: { kind: Kind; sab: SharedArrayBuffer; party: number; params: Params }) => {
  try {
    parentPort!.postMessage({ ok: await run(m.kind, m.sab, m.party, m.params) });
  } catch (e) {
    parentPort!.postMessage({ error: String((e as Error)?.stack ?? e) });
  }
});
