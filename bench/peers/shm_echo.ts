/**
 * Peer for `bench/shm.ts` and `bench/shm_blocking.ts`. Opens the shm channel the parent created, then:
 * - `echo`: sends every message back;
 * - `spin`: the same without promises: `tryReceive`/`trySend` in a busy loop (both sides busy);
 * - `sink`: reads a header (u32 count, u32 api; little-endian), takes that many messages as fast as it can with
 *   that api (0: `tryReceive`, falling back to `receive()` when the ring is empty; 1: `tryReceiveMany`/
 *   `receiveMany`; 2: `tryReceiveInto`/`receiveInto` one reused buffer), acknowledges with one 8-byte message;
 *   repeats. Every payload is copied out of the ring (touched once).
 * Exits when the parent closes.
 *
 *   shm_echo.ts <name> [echo|spin|sink] [spin-us] [spin-then-park|park|spin]
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";

const rt = await runtime();
const [name, mode = "echo", spin = "50", idle = "spin-then-park"] = rt.args();
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
          const batch = channel.tryReceiveMany(count - got);
          got += batch.length > 0 ? batch.length : (await channel.receiveMany({ max: count - got })).length;
        }
      } else {
        for (; got < count; got++) if (channel.tryReceiveInto(into) === undefined) await channel.receiveInto(into);
      }
      await channel.send(new Uint8Array(8));
    }
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
