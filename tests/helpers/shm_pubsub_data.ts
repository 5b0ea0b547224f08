/**
 * The messages of the pub-sub tests: message `i` is `size(i)` bytes (at least 4), its index as a little-endian
 * Uint32 and then bytes that depend on the index and the position, so a receiver can tell a message that is not
 * exactly what was published, and which one it is.
 */

/** The size of message `i` for messages of at most `max` bytes (>= 4). */
export function sizeOf(i: number, max: number): number {
  return 4 + ((i * 2654435761) >>> 0) % (max - 3);
}

/** Message `i`. */
export function message(i: number, max: number): Uint8Array {
  const out = new Uint8Array(sizeOf(i, max));
  new DataView(out.buffer).setUint32(0, i, true);
  for (let j = 4; j < out.length; j++) out[j] = (i * 31 + j * 7) & 255;
  return out;
}

/** The index of `bytes`, or throws when they are not exactly that message. */
export function indexOf(bytes: Uint8Array, max: number): number {
  if (bytes.length < 4) throw new Error(`a message of ${bytes.length} bytes`);
  const i = new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
  if (bytes.length !== sizeOf(i, max)) throw new Error(`message ${i} has ${bytes.length} bytes, not ${sizeOf(i, max)}`);
  for (let j = 4; j < bytes.length; j++) {
    if (bytes[j] !== ((i * 31 + j * 7) & 255)) throw new Error(`message ${i} differs at byte ${j}`);
  }
  return i;
}
