/**
 * Child of `tests/shm_segment.test.ts`: opens the parent's segment with `SharedMemory.open`, checks the parent's
 * pattern, then writes its own runtime name into its slot. Exits 0 when all is well, 1 with a message on stderr
 * otherwise.
 *
 * Usage: `<runtime argv> tests/helpers/segment_child.ts <shm name>`
 *
 * The layout is in `segment_layout.ts`.
 *
 * @module
 */
import { SharedMemory } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { RUNTIMES } from "../../runtimes/runtime.ts";
import { LAST_BYTE, PATTERN_LENGTH, patternByte, SIZE, SLOT_BASE, SLOT_SIZE } from "./segment_layout.ts";

const rt = await runtime();

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(what);
}

try {
  const [name] = rt.args();
  check(name !== undefined, `bad arguments ${JSON.stringify(rt.args())}`);
  const shm = await SharedMemory.open(name!);
  try {
    check(shm.name === name, `name is ${shm.name}`);
    check(shm.size === SIZE, `size is ${shm.size}, expected ${SIZE}`);
    check(!shm.created && !shm.readOnly, `created ${shm.created}, readOnly ${shm.readOnly}`);
    const bytes = new Uint8Array(shm.buffer);
    check(bytes.byteLength === SIZE, `buffer has ${bytes.byteLength} bytes, expected ${SIZE}`);
    for (let i = 0; i < PATTERN_LENGTH; i++) {
      check(bytes[i] === patternByte(i), `byte ${i} is ${bytes[i]}, expected ${patternByte(i)}`);
    }
    check(bytes[SIZE - 1] === LAST_BYTE, `the last byte is ${bytes[SIZE - 1]}, expected ${LAST_BYTE}`);
    const index = RUNTIMES.indexOf(rt.name);
    bytes.set(new TextEncoder().encode(rt.name), SLOT_BASE + index * SLOT_SIZE);
  } finally {
    shm.close();
  }
} catch (e) {
  rt.printError(`segment_child (${rt.name}): ${e instanceof Error ? e.message : String(e)}\n`);
  rt.exit(1);
}
