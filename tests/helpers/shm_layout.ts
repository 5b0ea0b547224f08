/**
 * The segment layout shared by `tests/ffi.test.ts` and `tests/helpers/shm_child.ts`. Int32 indices: 0 turn,
 * 1 counter, 2 ready count, 3 the value the parent wrote before spawning. Child i owns the 64 bytes at
 * `SLOT_BASE + i * SLOT_SIZE`: Int32 0 = the echoed value, Int32 1 = length of its runtime name, Int32 2 = its
 * pid, bytes 12.. = the runtime name in UTF-8.
 */
export const SIZE = 4096;
export const TURN = 0;
export const COUNTER = 1;
export const READY = 2;
export const MAGIC = 3;
export const SLOT_BASE = 64;
export const SLOT_SIZE = 64;
export const CHILDREN = 3;
export const INCREMENTS = 1000;
