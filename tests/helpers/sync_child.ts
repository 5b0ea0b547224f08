/**
 * Child process for tests/conformance/sync.ts.
 *
 * - `sync_child.ts run <kind> <shm name> <party> <m> <n>`: runs one scenario of sync_scenarios.ts in the segment.
 * - `sync_child.ts hold <kind> <shm name>`: holds the primitive at offset 0 (see `holder()` in sync_scenarios.ts),
 *   sets data word DATA + 7 to 1 and READY; on GO releases it, on the next GO holds it again and sets READY, then
 *   sleeps until killed. `hold <shm name>` holds the Mutex (tests/liveness.test.ts).
 *
 * Exits 0 when done, 1 with a message on stderr on failure.
 */
import { SharedMemory } from "../../shm/segment.ts";
import { Event } from "../../sync/event.ts";
import { runtime } from "../../runtimes/detect.ts";
import { DATA, GO, holder, type HoldKind, type Kind, READY, run } from "./sync_scenarios.ts";

const rt = await runtime();
const [mode, ...rest] = rt.args();
try {
  if (mode === "run") {
    const [kind, name, party, m, n] = rest;
    const shm = await SharedMemory.open(name!);
    try {
      await run(kind as Kind, shm, Number(party), { m: Number(m), n: Number(n) });
    } finally {
      shm.close();
    }
  } else if (mode === "hold") {
    const [kind, name] = rest.length === 1 ? ["mutex", rest[0]] : rest;
    const shm = await SharedMemory.open(name!);
    const h = holder(kind as HoldKind, shm);
    const ready = Event.in(shm, READY);
    const go = Event.in(shm, GO, { autoReset: true });
    await h.hold();
    Atomics.store(new Int32Array(shm.buffer), DATA + 7, 1);
    ready.set();
    await go.wait();
    await h.release();
    await go.wait();
    await h.hold();
    ready.set();
    await new Promise(() => setInterval(() => {}, 1000)); // hold until killed
  } else {
    throw new Error(`bad arguments ${JSON.stringify(rt.args())}`);
  }
} catch (e) {
  rt.printError(`sync child (${rt.name}): ${(e as Error)?.stack ?? e}\n`);
  rt.exit(1);
}
