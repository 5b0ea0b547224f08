/**
 * Test data helpers shared by the suite and its child peer. They run over every byte the conformance suites move
 * (hundreds of MiB a run), so they work a word or a block at a time and compare with the runtime's memcmp. The
 * fast-check generators are in arbitraries.ts: a child peer need not load fast-check.
 */
import { Buffer } from "node:buffer";

/** Message i of a flood: byte j is (i + j) & 255. */
export function pattern(i: number, size: number): Uint8Array {
  const m = new Uint8Array(size);
  const period = Math.min(size, 256);
  for (let j = 0; j < period; j++) m[j] = (i + j) & 255;
  // The sequence repeats every 256 bytes: double what is written until the message is full.
  for (let filled = period; filled < size; filled *= 2) m.copyWithin(filled, 0, Math.min(filled, size - filled));
  return m;
}

/** Pseudo-random bytes from a seed (xorshift32, four bytes per step): cheap for multi-MiB messages. */
export function randomBytes(seed: number, size: number): Uint8Array {
  const m = new Uint8Array(size);
  const words = new Uint32Array(m.buffer, 0, size >>> 2);
  let x = seed | 1;
  for (let j = 0; j < words.length; j++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[j] = x;
  }
  for (let j = words.length * 4; j < size; j++) {
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
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
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
