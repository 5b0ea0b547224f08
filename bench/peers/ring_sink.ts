/**
 * Peer of `bench/ring_turns.ts`: maps the parent's segment, attaches to its ring as the consumer, says it is ready
 * (control word 0) and drains the ring with `Ring.drain` in a busy loop (each message's first and last byte read where
 * it lies) until control word 1 becomes 1. It never sleeps, so it says it can fence (`CONSUMER_FENCES`): the producer
 * may then publish plainly, as the channel's does into an awake consumer.
 *
 *   ring_sink.ts <segment name>
 *
 * @module
 */
import { runtime, SharedMemory } from "../../mod.ts";
import { CONSUMER_FENCES, Ring } from "../../shm/ring.ts";
import { RING_AT } from "../ring_turns_layout.ts";

const rt = await runtime();
using seg = await SharedMemory.open(rt.args()[0]!);
const ctl = new Int32Array(seg.buffer, 0, 16);
const ring = Ring.attach(seg.buffer, RING_AT);
ring.setFlag(CONSUMER_FENCES);
let sum = 0;
const touch = (data: Uint8Array, offset: number, length: number) => {
  if (length > 0) sum += data[offset]! + data[offset + length - 1]!;
};
Atomics.store(ctl, 0, 1);
while (Atomics.load(ctl, 1) === 0) ring.drain(touch, Infinity);
Atomics.store(ctl, 2, sum & 0x7fffffff); // read, so the reads are not optimized away
