/**
 * A consumer child: `file_queue_consumer.ts <dir> <k> <marker>` receives and acks k messages one by one, receives
 * one more without acking it, writes the marker file, then waits to be killed.
 */
import { writeFileSync } from "node:fs";
import { FileQueue } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [dir, k, marker] = rt.args() as [string, string, string];
const q = await FileQueue.open(dir);
for (let i = 0; i < Number(k); i++) {
  await q.receive({ timeout: 60_000 });
  await q.ack();
}
const unacked = await q.receive({ timeout: 60_000 });
writeFileSync(marker, unacked);
setInterval(() => {}, 1000); // wait for SIGKILL
