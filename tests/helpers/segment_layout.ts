/**
 * The layout of the segment that `tests/shm_segment.test.ts` shares with its `segment_child.ts` children.
 *
 * - bytes `[0, PATTERN_LENGTH)`: `patternByte(i)`, written by the parent
 * - byte `SIZE - 1`: `LAST_BYTE`, written by the parent (so a child that maps too little fails)
 * - `SLOT_SIZE` bytes at `SLOT_BASE + i * SLOT_SIZE`: the name of runtime `RUNTIMES[i]`, written by that child
 *
 * @module
 */

/** Size of the segment: not a multiple of the page size on purpose. */
export const SIZE = 10_000;
/** Bytes of the parent's pattern. */
export const PATTERN_LENGTH = 4096;
/** Where the children's slots start. */
export const SLOT_BASE = 8192;
/** Bytes per child slot. */
export const SLOT_SIZE = 64;
/** The value of the segment's last byte. */
export const LAST_BYTE = 0xa5;

/** Byte `i` of the parent's pattern: never the same for two neighbours, and not all zeros. */
export function patternByte(i: number): number {
  return (i * 131 + 17) & 0xff;
}
