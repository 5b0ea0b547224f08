/** A producer child: `file_queue_producer.ts <dir> <tag> <n>` appends "<tag>:<i>" for i in 0..n-1, then exits 0. */
import { FileQueue } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [dir, tag, n] = rt.args() as [string, string, string];
const q = await FileQueue.open(dir);
const text = new TextEncoder();
for (let i = 0; i < Number(n); i++) await q.send(text.encode(`${tag}:${i}`));
await q.close();
