/**
 * The byte copies received messages are made with (`runtimes/bytes.ts`): every way of copying gives the source's
 * bytes, never a view of the source, and no two copies share bytes (on Deno they are views into one slab).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { allocate, copy, copyWords } from "../runtimes/bytes.ts";

const SEED = Date.now() ^ 0xb17e;

test("copy() and copyWords() give the source's bytes, in arrays of their own that no later copy overwrites", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 8, maxLength: 6000 }),
      fc.array(fc.tuple(fc.nat(), fc.nat({ max: 5000 })), { minLength: 1, maxLength: 40 }),
      (source, cuts) => {
        const words = new Int32Array(source.buffer, 0, source.length >> 2);
        const made: [Uint8Array, Uint8Array][] = [];
        for (const [at, length] of cuts) {
          const start = (at % source.length) & ~3; // a record starts on a multiple of 4 (of 8, in a ring)
          const n = Math.min(length, source.length - start);
          const expected = source.slice(start, start + n);
          const a = copy(source, start, start + n);
          made.push([a, expected]);
          if (start + n <= words.length * 4) made.push([copyWords(source, words, start, n), expected]);
          allocate(n % 300).fill(0xee); // allocations in between must not land on earlier copies
        }
        for (const [got, expected] of made) {
          assert.deepEqual(got, expected);
          assert.notEqual(got.buffer, source.buffer, "a copy is not a view of its source");
        }
        source.fill(0x5a); // the copies stay as they were
        for (const [got, expected] of made) assert.deepEqual(got, expected);
      },
    ),
    { numRuns: 200, seed: SEED, verbose: true },
  );
});
