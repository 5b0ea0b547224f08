/**
 * Peer for `bench/shm.ts`. Opens the shm channel the parent created, then:
 * - `echo`: sends every message back;
 * - `spin`: the same without promises: `tryReceive`/`trySend` in a busy loop (both sides busy);
 * - `sink`: reads a count (u32 little-endian), takes that many messages as fast as it can (`tryReceive`, falling
 *   back to `receive()` when the ring is empty), acknowledges with one 8-byte message; repeats.
 * Exits when the parent closes.
 *
 *   shm_echo.ts <name> [echo|spin|sink] [spin-us]
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";

const rt = await runtime();
const [name, mode = "echo", spin = "50"] = rt.args();
const channel = await shm.open(name!, { wait: 30_000, spin: Number(spin) });
try {
  if (mode === "echo") {
    for (;;) await channel.send(channel.tryReceive() ?? await channel.receive());
  } else if (mode === "spin") {
    for (;;) {
      const m = channel.tryReceive();
      if (m !== undefined) { while (!channel.trySend(m)) { /* spin */ } }
    }
  } else {
    for (;;) {
      const first = await channel.receive();
      const count = new DataView(first.buffer, first.byteOffset).getUint32(0, true);
      for (let i = 0; i < count; i++) if (channel.tryReceive() === undefined) await channel.receive();
      await channel.send(new Uint8Array(8));
    }
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
