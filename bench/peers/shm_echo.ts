/**
 * Echo peer for `bench/shm.ts`: opens the shm channel the parent created and sends every message back (or, with
 * `sink`, counts them and sends one 8-byte reply per `count` messages). Exits when the parent closes.
 *
 *   shm_echo.ts <name> [echo|sink] [spin-us]
 *
 * @module
 */
import { runtime, shm } from "../../mod.ts";

const rt = await runtime();
const [name, mode = "echo", spin = "50"] = rt.args();
const channel = await shm.open(name!, { wait: 30_000, spin: Number(spin) });
if (mode === "echo") {
  for await (const m of channel) await channel.send(m);
} else {
  // sink: the parent sends "count" as the first message, then that many messages; we acknowledge the batch.
  for (;;) {
    let first: Uint8Array;
    try {
      first = await channel.receive();
    } catch {
      break;
    }
    const count = new DataView(first.buffer, first.byteOffset).getUint32(0, true);
    for (let i = 0; i < count; i++) await channel.receive();
    await channel.send(new Uint8Array(8));
  }
}
await channel.close();
