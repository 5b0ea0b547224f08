/** Test data helpers shared by the suite and its child peer. */
import fc from "fast-check";

/** Message i of a flood: byte j is (i + j) & 255. */
export function pattern(i: number, size: number): Uint8Array {
  const m = new Uint8Array(size);
  for (let j = 0; j < size; j++) m[j] = (i + j) & 255;
  return m;
}

/** Pseudo-random bytes from a seed (xorshift32): cheap for multi-MiB messages. */
export function randomBytes(seed: number, size: number): Uint8Array {
  const m = new Uint8Array(size);
  let x = seed | 1;
  for (let j = 0; j < size; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    m[j] = x & 255;
  }
  return m;
}

/** Whether two byte arrays are equal. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Describes where two message lists first differ, for an assertion message. */
export function firstDifference(sent: Uint8Array[], got: Uint8Array[]): string | undefined {
  for (let i = 0; i < Math.max(sent.length, got.length); i++) {
    const s = sent[i];
    const g = got[i];
    if (s === undefined || g === undefined) return `message ${i}: sent ${s?.byteLength} bytes, got ${g?.byteLength}`;
    if (!sameBytes(s, g)) return `message ${i}: ${s.byteLength} bytes sent, ${g.byteLength} bytes differ`;
  }
  return undefined;
}

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
