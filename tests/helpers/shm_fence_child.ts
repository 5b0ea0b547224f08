/**
 * Child of `tests/shm_idle.test.ts`' lost wake-up test: opens the channel the parent created and echoes every
 * message until the other side closes, in one of two roles:
 * - `spin`: never sleeps (idle strategy "spin"), so its replies come within a microsecond or so;
 * - `park`: sleeps at once when nothing is there ("park"), and after each reply waits a pseudo-random 0 to ~2 us
 *   (a counted loop, seeded) before it looks for the next message, so that its announcement that it sleeps lands
 *   now and then just as the other side publishes: the moment a lost wake-up would happen.
 *
 *   shm_fence_child.ts <name> <spin|park> <seed>
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";

const rt = await runtime();
const [name, role, seedText] = rt.args();
const channel = await shm.open(name!, { idle: role === "park" ? "park" : "spin", wait: 60_000 });
let seed = Number(seedText) >>> 0 || 1;
let sink = 0;
try {
  for (;;) {
    const m = await channel.receive();
    await channel.send(m);
    if (role === "park") {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const d = seed % 2048;
      for (let k = 0; k < d; k++) sink += k;
    }
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
if (sink === -1) console.log(sink); // keeps the loop
