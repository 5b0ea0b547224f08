/**
 * Fuzz target: the shared-memory ring read by a consumer (and written by a producer) whose peer wrote anything it
 * liked into the shared header and data area: positions, lengths, magic, capacity. The ring must attach or refuse
 * with ProtocolError, and every read (one message, a batch, a drain, into a buffer, where it lies) return a message no
 * larger than the ring allows, nothing, or a ProtocolError /
 * MessageTooLargeError; no read or write may leave the data area, however the header lies.
 */
import fc from "fast-check";
import { MessageTooLargeError, ProtocolError } from "../../errors.ts";
import { HandlerFailure, Ring, RING_HEADER, ringSize } from "../../shm/ring.ts";
import type { FuzzTarget } from "./target.ts";

interface Input {
  capacity: number;
  /** Header words the hostile peer overwrites: [int32 index, value]. */
  header: [number, number][];
  data: Uint8Array;
  /** Messages the producer side tries to write afterwards. */
  writes: number[];
}

const word = fc.oneof(
  fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  fc.constantFrom(0, 1, 7, 8, 63, 64, 65, 4096, 2 ** 30, 2 ** 31 - 1, -1, -8),
);
// Mostly the words that matter: magic 0, version 1, capacity 2, flags 3, write position 16, read position 32.
const index = fc.oneof(fc.constantFrom(0, 1, 2, 3, 16, 32, 16, 32), fc.integer({ min: 0, max: RING_HEADER / 4 - 1 }));

export const target: FuzzTarget<Input> = {
  name: "ring",
  inputs: fc.record({
    capacity: fc.constantFrom(64, 128, 1024),
    header: fc.array(fc.tuple(index, word), { maxLength: 6 }),
    data: fc.uint8Array({ maxLength: 1024 }),
    writes: fc.array(fc.integer({ min: 0, max: 1100 }), { maxLength: 4 }),
  }),
  run({ capacity, header, data, writes }) {
    const buffer = new SharedArrayBuffer(ringSize(capacity) + 64); // room past the ring: it must stay untouched
    const guard = new Uint8Array(buffer, ringSize(capacity), 64);
    guard.fill(0xa5);
    Ring.init(buffer, 0, capacity);
    new Uint8Array(buffer, RING_HEADER, capacity).set(data.subarray(0, capacity));
    const words = new Int32Array(buffer, 0, RING_HEADER / 4);
    for (const [i, v] of header) words[i] = v;
    let ring: Ring;
    try {
      ring = Ring.attach(buffer, 0);
    } catch (e) {
      if (e instanceof ProtocolError) return;
      throw e;
    }
    if (ring.capacity > capacity) throw new Error(`attached a ring of ${ring.capacity} in a buffer for ${capacity}`);
    for (let i = 0; i < 8; i++) {
      try {
        // The five ways to read: one message, a batch, a drain, into a buffer, where it lies.
        const got: Uint8Array[] = [];
        if (i % 8 === 4) {
          // Where it lies, as RPC reads it (`tryReadWith`): the view must stay inside the data area.
          const m = ring.tryReadWith((data, offset, length) => {
            if (offset < 0 || offset + length > data.byteLength) throw new Error("a lent message left the data");
            return data.slice(offset, offset + length);
          });
          if (m !== undefined) got.push(m);
        } else if (i % 4 === 0) {
          const m = ring.tryRead();
          if (m !== undefined) got.push(m);
        } else if (i % 4 === 1) {
          ring.tryReadMany(got, 3);
        } else if (i % 4 === 3) {
          ring.drain((data, offset, length) => {
            if (offset < 0 || offset + length > data.byteLength) throw new Error("a drained message left the data");
            got.push(data.slice(offset, offset + length));
          }, 3);
        } else {
          const into = new Uint8Array(capacity);
          const n = ring.tryReadInto(into);
          if (n !== undefined) got.push(into.subarray(0, n));
        }
        if (got.length === 0) break;
        for (const m of got) {
          if (m.byteLength > ring.maxMessage) throw new Error(`read ${m.byteLength} bytes from a ring of ${capacity}`);
        }
      } catch (e) {
        if (e instanceof ProtocolError || e instanceof MessageTooLargeError) break;
        throw e instanceof HandlerFailure ? e.error : e; // the drain handler's own check failed
      }
    }
    for (const n of writes) {
      if (n > ring.maxMessage) continue; // the channel refuses these before the ring sees them
      try {
        if (n % 2 === 0) ring.tryWrite(new Uint8Array(n).fill(0x5a));
        else ring.tryWriteMany([new Uint8Array(n >> 1).fill(0x5a), new Uint8Array(n >> 2).fill(0x5b)]);
      } catch (e) {
        if (e instanceof ProtocolError) break;
        throw e;
      }
    }
    if (guard.some((b) => b !== 0xa5)) throw new Error("a read or write left the ring's data area");
  },
};
