/**
 * Peer for `bench/shm.ts` and `bench/shm_blocking.ts`. Opens the shm channel the parent created, then:
 * - `echo`: sends every message back;
 * - `spin`: the same without promises: `tryReceive`/`trySend` in a busy loop (both sides busy);
 * - `sink`: reads a header (u32 count, u32 api; little-endian), takes that many messages as fast as it can with
 *   that api (0: `tryReceive`, falling back to `receive()` when the ring is empty; 1: `tryReceiveMany`/
 *   `receiveMany`, up to 256 at a time; 2: `tryReceiveInto`/`receiveInto` one reused buffer; 3: `tryDrain`/`drain`, reading each message's first and last
 *   byte where it lies; 4: `tryReceiveLoan`/`receiveLoan`, the same bytes read from the loan), acknowledges with one 8-byte message (carrying nothing);
 *   repeats. Every payload but drain's is copied out of the ring.
 * Exits when the parent closes.
 *
 *   shm_echo.ts <name> [echo|spin|sink] [spin-us] [spin-then-park|park|spin]
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";

const rt = await runtime();
const [name, mode = "echo", spin = "50", idle = "spin-then-park"] = rt.args();
let sum = 0;
const touch = (data: Uint8Array, offset: number, length: number) => {
  sum += length > 0 ? data[offset]! + data[offset + length - 1]! : 0;
};
const channel = await shm.open(name!, { wait: 30_000, spin: Number(spin), idle: idle as shm.IdleStrategy });
try {
  if (mode === "echo") {
    for (;;) await channel.send(channel.tryReceive() ?? await channel.receive());
  } else if (mode === "spin") {
    for (;;) {
      const m = channel.tryReceive();
      if (m !== undefined) { while (!channel.trySend(m)) { /* spin */ } }
    }
  } else {
    const into = new Uint8Array(channel.maxMessage);
    for (;;) {
      const first = await channel.receive();
      const view = new DataView(first.buffer, first.byteOffset);
      const count = view.getUint32(0, true);
      const api = view.getUint32(4, true);
      let got = 0;
      if (api === 0) {
        for (; got < count; got++) if (channel.tryReceive() === undefined) await channel.receive();
      } else if (api === 1) {
        while (got < count) {
          const max = Math.min(256, count - got);
          const batch = channel.tryReceiveMany(max);
          got += batch.length > 0 ? batch.length : (await channel.receiveMany({ max })).length;
        }
      } else if (api === 2) {
        for (; got < count; got++) if (channel.tryReceiveInto(into) === undefined) await channel.receiveInto(into);
      } else if (api === 4) {
        // Lent where they lie: each one's first and last byte read, none copied.
        for (; got < count; got++) {
          using m = channel.tryReceiveLoan() ?? await channel.receiveLoan();
          touch(m.bytes, 0, m.bytes.length);
        }
      } else {
        // Where the messages lie: each one's bytes are read (summed), none is copied.
        while (got < count) {
          const max = count - got;
          const n = channel.tryDrain(touch, max);
          got += n > 0 ? n : await channel.drain(touch, { max });
        }
      }
      await channel.send(new Uint8Array(8));
    }
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
