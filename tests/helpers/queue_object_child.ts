/**
 * Child of the queue-object suite (`tests/conformance/queue_objects.ts`): opens the parent's queue object of
 * `kind` (`mq`, `sysv`, `file`) at `address`, sends `hello from <runtime>` then `<runtime> done`, and exits 0.
 *
 * Usage: `<runtime argv> tests/helpers/queue_object_child.ts <kind> <address>`
 *
 * @module
 */
import { runtime } from "../../runtimes/detect.ts";
import { queueObjectFixture } from "../conformance/queue_object_fixtures.ts";

const rt = await runtime();
const [kind, address] = rt.args();
if (kind === undefined || address === undefined) throw new TypeError("usage: queue_object_child.ts <kind> <address>");
const q = await queueObjectFixture(kind).open(address);
const text = new TextEncoder();
try {
  await q.send(text.encode(`hello from ${rt.name}`), { timeout: 30_000 });
  await q.send(text.encode(`${rt.name} done`), { timeout: 30_000 });
} finally {
  await q.close();
}
