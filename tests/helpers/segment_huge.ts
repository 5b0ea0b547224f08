/**
 * Child of `tests/shm_segment.test.ts`: creates a segment of `<size>` bytes (more than 4 GiB, sparse: no page is
 * touched). Either it works and the buffer has all the bytes, or `create` throws an ipckit error or a RangeError
 * and leaves no name behind. Runs in a child because a crash here must not take the test runner down. Exits 0
 * when all is well, 1 with a message on stderr otherwise.
 *
 * Usage: `<runtime argv> tests/helpers/segment_huge.ts <shm name> <size>`
 *
 * @module
 */
import { IpcError, NotFoundError, SharedMemory } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [name, sizeArg] = rt.args();
const size = Number(sizeArg);

function fail(message: string): never {
  rt.printError(`segment_huge (${rt.name}): ${message}\n`);
  return rt.exit(1);
}

let shm: SharedMemory | undefined;
try {
  shm = await SharedMemory.create(name!, { size });
} catch (e) {
  if (!(e instanceof IpcError || e instanceof RangeError)) fail(`create threw ${String(e)}`);
  // A failed create must not leave the name behind: unlinking it must find nothing.
  let left = true;
  try {
    await SharedMemory.unlink(name!);
  } catch (e2) {
    if (!(e2 instanceof NotFoundError)) fail(`unlink after a failed create threw ${String(e2)}`);
    left = false;
  }
  if (left) fail(`create threw ${String(e)} but left "${name}" behind`);
}
if (shm !== undefined) {
  try {
    if (shm.buffer.byteLength !== size) fail(`the buffer has ${shm.buffer.byteLength} bytes, expected ${size}`);
  } finally {
    shm.close();
    await SharedMemory.unlink(name!);
  }
}
