/**
 * Child process for tests/sync.test.ts.
 *
 * - `sync_child.ts run <kind> <shm name> <party> <m> <n>`: runs one scenario of sync_scenarios.ts in the segment.
 * - `sync_child.ts hold <shm name>`: locks the Mutex at offset 0, sets data word 7 to 1, and sleeps until killed.
 *
 * Exits 0 when done, 1 with a message on stderr on failure.
 */
import { Mutex, SharedMemory } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { DATA, type Kind, run } from "./sync_scenarios.ts";

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
    const shm = await SharedMemory.open(rest[0]!);
    const mutex = Mutex.in(shm, 0);
    await mutex.lock();
    Atomics.store(new Int32Array(shm.buffer), DATA + 7, 1);
    await new Promise(() => setInterval(() => {}, 1000)); // hold until killed
  } else {
    throw new Error(`bad arguments ${JSON.stringify(rt.args())}`);
  }
} catch (e) {
  rt.printError(`sync child (${rt.name}): ${(e as Error)?.stack ?? e}\n`);
  rt.exit(1);
}
