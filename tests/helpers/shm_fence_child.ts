/**
 * Child of `tests/shm_idle.test.ts`' lost wake-up test: opens the channel the parent created and echoes every
 * message until the other side closes, in one of two roles:
 * - `spin`: never sleeps (idle strategy "spin"), so its replies come within a microsecond or so;
 * - `burst`: takes 64 messages in a row with `tryReceive()` in a busy loop (awake: the parent's producer then
 *   publishes with plain stores), then waits a pseudo-random 0 to ~0.3 us (a counted loop, seeded) and takes the 65th
 *   with `receive()` under the idle strategy "park", which sleeps at once when nothing is there: its announcement
 *   lands now and then just as the parent publishes, the moment a lost wake-up would happen.
 *
 *   shm_fence_child.ts <name> <spin|burst> <seed>
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";
import { PLAIN_AFTER } from "../../shm/ring.ts";

const rt = await runtime();
const [name, role, seedText] = rt.args();
const channel = await shm.open(name!, { idle: role === "burst" ? "park" : "spin", wait: 60_000 });
let seed = Number(seedText) >>> 0 || 1;
let sink = 0;
try {
  for (let i = 0;; i++) {
    let m: Uint8Array | undefined;
    if (role === "spin") m = await channel.receive();
    else if (i % (PLAIN_AFTER + 1) === PLAIN_AFTER) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      for (let k = 0; k < seed % 256; k++) sink += k;
      m = await channel.receive();
    } else {
      for (let spins = 0; (m = channel.tryReceive()) === undefined; spins++) {
        if ((spins & 0xffff) === 0xffff) await new Promise((r) => setTimeout(r, 0)); // lets the close come in
      }
    }
    await channel.send(m);
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
if (sink === -1) console.log(sink); // keeps the loop
