/**
 * A child for tests/stats_sync.test.ts: `lock_holder.ts <segment>` places an observed Mutex ("held lock") at offset 0
 * of the segment, locks it, prints `held <its stats segment>` once that segment exists, and holds the lock until it
 * is killed.
 */
import { Mutex, runtime, SharedMemory } from "../../mod.ts";
import { segmentName } from "../../shm/stats.ts";

const rt = await runtime();
const memory = await SharedMemory.open(rt.args()[0]!);
const lock = Mutex.in(memory, 0).observe("held lock");
await lock.lock();
// Nothing reads `lock` any more (JavaScriptCore may collect such a binding): a collection now, where the runtime offers
// one, must not take the held lock's slot away.
(globalThis as { Bun?: { gc(full: boolean): void } }).Bun?.gc(true);
while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
console.log(`held ${segmentName()}`);
setInterval(() => {}, 60_000); // holds it until killed
