/**
 * Child of `tests/shm_batch.test.ts`: opens the shm channel the parent created and sends the deterministic stream of
 * `shm_batch_data.ts` with `sendMany`, in batches of seeded random sizes (1 to 40 messages), then closes. With
 * `count` 0 it never stops (the parent SIGKILLs it mid-batch).
 *
 *   shm_batch_child.ts <name> <seed> <count> <maxSize>
 *
 * @module
 */
import { runtime, shm } from "../../mod.ts";
import { message, random } from "./shm_batch_data.ts";

const rt = await runtime();
const [name, seedArg, countArg, maxArg] = rt.args();
const seed = Number(seedArg);
const count = Number(countArg);
const maxSize = Number(maxArg);
const channel = await shm.open(name!, { wait: 60_000 });
const batches = random(seed + 1);
try {
  for (let i = 0; count === 0 || i < count;) {
    const k = 1 + Math.floor(batches() * 40);
    const batch: Uint8Array[] = [];
    for (let j = 0; j < k && (count === 0 || i < count); j++, i++) batch.push(message(seed, i, maxSize));
    await channel.sendMany(batch);
  }
} finally {
  await channel.close();
}
