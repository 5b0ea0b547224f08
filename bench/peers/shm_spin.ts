/**
 * Raw spin peer for `bench/shm.ts`: the floor for JavaScript on shared memory, with no channel. Maps the parent's
 * segment and, until word 2 becomes 1, waits (spinning) for word 0 to change and copies it to word 1.
 *
 *   shm_spin.ts <name>
 *
 * @module
 */
import { runtime, SharedMemory } from "../../mod.ts";

const rt = await runtime();
using seg = await SharedMemory.open(rt.args()[0]!);
const w = new Int32Array(seg.buffer, 0, 16);
let last = 0;
Atomics.store(w, 3, 1); // ready
while (Atomics.load(w, 2) === 0) {
  const v = Atomics.load(w, 0);
  if (v !== last) {
    last = v;
    Atomics.store(w, 1, v);
  }
}
