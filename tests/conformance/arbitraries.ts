/** fast-check generators of the conformance suites' messages (the suite side only: the child peer never loads it). */
import fc from "fast-check";
import { randomBytes } from "./data.ts";

/**
 * Message sequences: mostly small (0, 1, a few bytes, up to 64 KiB), sometimes large (up to `large` bytes),
 * with binary content. Sizes come from fast-check (so it shrinks them); bytes from a seeded generator.
 */
export function messages(large: number, maxLength = 30): fc.Arbitrary<Uint8Array[]> {
  const size = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(0, 1, 2, 3, 4, 5) },
    { weight: 6, arbitrary: fc.integer({ min: 0, max: 300 }) },
    { weight: 2, arbitrary: fc.integer({ min: 300, max: Math.min(70_000, large) }) },
    { weight: 1, arbitrary: fc.integer({ min: Math.min(70_000, large), max: large }) },
  );
  return fc.array(fc.tuple(size, fc.integer()), { maxLength }).map((list) => {
    // Keep a run's volume bounded: at most two large messages.
    let big = 0;
    return list.map(([n, seed]) => randomBytes(seed, n > 70_000 && ++big > 2 ? n % 70_000 : n));
  });
}
