/**
 * Every decoder a peer can feed, fuzzed briefly on every runtime (a few hundred hostile inputs each, seeded; the
 * seed is printed when a case fails). `npm run fuzz` runs the same targets a million times or more.
 */
import { test } from "node:test";
import fc from "fast-check";
import { TARGETS } from "./fuzz/targets.ts";

const SEED = Date.now() ^ 0xf022;
const RUNS = 300;

for (const [name, load] of Object.entries(TARGETS)) {
  test(`fuzz ${name}: ${RUNS} hostile inputs get a result or a clear error, never a crash or a hang`, async () => {
    const target = await load();
    try {
      await fc.assert(fc.asyncProperty(target.inputs, async (input) => await target.run(input)), {
        numRuns: RUNS,
        seed: SEED,
        verbose: true,
      });
    } finally {
      await target.close?.();
    }
  });
}
