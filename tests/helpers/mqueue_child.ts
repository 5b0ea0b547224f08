/**
 * Child of `tests/mqueue.test.ts`: opens the parent's queue for writing and sends `hello from <runtime>` at
 * priority 3, then `<runtime> done` at priority 1, and exits 0.
 *
 * Usage: `<runtime argv> tests/helpers/mqueue_child.ts <queue name>`
 *
 * @module
 */
import { mq } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [name] = rt.args();
if (name === undefined) throw new TypeError("usage: mqueue_child.ts <queue name>");
using q = await mq.open(name, { mode: "write" });
const text = new TextEncoder();
await q.send(text.encode(`${rt.name} done`), { priority: 1, timeout: 30_000 });
await q.send(text.encode(`hello from ${rt.name}`), { priority: 3, timeout: 30_000 });
