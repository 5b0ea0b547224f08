/**
 * The model of one ring that the shm property tests check the channel against: the messages in it, in order, the
 * bytes their records take, and where the producer writes next.
 *
 * @module
 */
import assert from "node:assert/strict";
import { Ring } from "../../shm/ring.ts";

/** What a ring of `capacity` data bytes holds, as a queue. */
export class RingModel {
  readonly queue: Uint8Array[] = [];
  /** Bytes the queued records take. */
  used = 0;
  /** The producer's position: bytes ever written. */
  w = 0;

  constructor(readonly capacity: number) {}

  /** Whether a message of `size` bytes fits now. */
  fits(size: number): boolean {
    return Ring.recordSize(size) <= this.capacity - this.used;
  }

  /** A message went in. */
  put(m: Uint8Array): void {
    this.queue.push(m);
    this.used += Ring.recordSize(m.length);
    this.w += Ring.recordSize(m.length);
  }

  /** A message came out: it must be the first one in. */
  took(m: Uint8Array | undefined): void {
    const want = this.queue.shift();
    assert.ok(want !== undefined && m !== undefined, `took ${m?.length} bytes, expected ${want?.length}`);
    assert.deepEqual(m, want);
    this.used -= Ring.recordSize(want.length);
  }
}
