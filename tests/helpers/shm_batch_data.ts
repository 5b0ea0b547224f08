/**
 * The deterministic message stream of `tests/shm_batch.test.ts` and its child `shm_batch_child.ts`: message `i` of
 * seed `s` is the same bytes in every process and runtime, so the receiver checks each against what it must be.
 *
 * @module
 */

/** mulberry32: a small seeded generator of numbers in [0, 1). */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Message `i`: a size from 0 to `maxSize` (some at the edges), bytes that depend on `i` and their place. */
export function message(seed: number, i: number, maxSize: number): Uint8Array {
  const r = random(seed ^ Math.imul(i + 1, 0x9e3779b1))();
  const size = r < 0.1 ? 0 : r < 0.2 ? maxSize : Math.floor(r * (maxSize + 1));
  const m = new Uint8Array(size);
  for (let j = 0; j < size; j++) m[j] = (i * 31 + j * 7 + seed) & 255;
  return m;
}

/** Whether `got` is message `i`; a description of the first difference otherwise. */
export function differs(got: Uint8Array, seed: number, i: number, maxSize: number): string | undefined {
  const want = message(seed, i, maxSize);
  if (got.byteLength !== want.byteLength) return `message ${i}: ${got.byteLength} bytes, expected ${want.byteLength}`;
  for (let j = 0; j < want.byteLength; j++) {
    if (got[j] !== want[j]) return `message ${i}: byte ${j} is ${got[j]}, expected ${want[j]}`;
  }
  return undefined;
}
