/** Worker for tests/shm_pubsub.test.ts: subscribes with the handle it is sent and answers the first bytes it got. */
import { parentPort } from "node:worker_threads";
import { shm } from "../../mod.ts";

parentPort!.once("message", async (handle: shm.PubSubHandle) => {
  const sub = await shm.subscriber(handle);
  parentPort!.postMessage("ready");
  const got: number[] = [];
  for await (const m of sub) got.push(m[0]!);
  await sub.close();
  parentPort!.postMessage(got);
  parentPort!.close();
});
