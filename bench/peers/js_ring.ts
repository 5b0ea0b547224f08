/**
 * Peer of the JavaScript ring floor (`bench/js_ring.ts`) for `bench/shm.ts`. Maps the parent's segment, says it is
 * ready (control word 0), then until control word 1 becomes 1:
 * - `echo`: sends every message back (a fresh copy received, sent again), in a busy loop;
 * - `sink`: reads every message where it lies, in a busy loop, and counts them in control word 2.
 *
 *   js_ring.ts <segment name> echo|sink
 *
 * @module
 */
import { runtime, SharedMemory } from "../../mod.ts";
import { JsRing, jsRingControl } from "../js_ring.ts";

const rt = await runtime();
const [name, mode] = rt.args();
using seg = await SharedMemory.open(name!);
const ends = JsRing.ends(seg.buffer, 1);
const ctl = jsRingControl(seg.buffer);
Atomics.store(ctl, 0, 1);
if (mode === "echo") {
  while (Atomics.load(ctl, 1) === 0) {
    const m = ends.in.receive();
    if (m !== undefined) { while (!ends.out.send(m)) { /* spin */ } }
  }
} else {
  const sum = new Float64Array(1);
  let got = 0;
  while (Atomics.load(ctl, 1) === 0) {
    const k = ends.in.drain(sum);
    if (k > 0) Atomics.store(ctl, 2, got += k);
  }
}
