/**
 * Child of `tests/sysv_mq.test.ts`: opens the parent's System V queue by key, sends `<runtime> done` as type 1,
 * then `hello from <runtime>` as type 3, and exits 0.
 *
 * Usage: `<runtime argv> tests/helpers/sysvmq_child.ts <key>`
 *
 * @module
 */
import { sysv } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [key] = rt.args();
if (key === undefined) throw new TypeError("usage: sysvmq_child.ts <key>");
using q = await sysv.open(Number(key));
const text = new TextEncoder();
await q.send(1, text.encode(`${rt.name} done`), { timeout: 30_000 });
await q.send(3, text.encode(`hello from ${rt.name}`), { timeout: 30_000 });
