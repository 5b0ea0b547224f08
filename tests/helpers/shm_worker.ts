/** Worker for tests/shm.test.ts: rebuilds the shm channel end it is sent and echoes until the other end closes. */
import { parentPort } from "node:worker_threads";
import { shm } from "../../mod.ts";
import type { ShmHandle } from "../../transports/shm.ts";

parentPort!.once("message", async (handle: ShmHandle) => {
  const ch = shm.fromHandle(handle);
  for await (const m of ch) await ch.send(m);
  await ch.close();
  parentPort!.close();
});
