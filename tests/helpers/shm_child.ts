/**
 * Child of `tests/ffi.test.ts`: maps the parent's POSIX shared memory segment and coordinates with the other
 * children (each on another runtime) through Atomics on it.
 *
 * Usage: `<runtime argv> tests/helpers/shm_child.ts <shm name> <index> <size>`
 *
 * The segment layout is in `shm_layout.ts`.
 *
 * @module
 */
import { isMapFailed, MAP_SHARED, O_RDWR, PROT_READ, PROT_WRITE } from "../../ffi/constants.ts";
import { native } from "../../ffi/native.ts";
import { runtime } from "../../runtimes/detect.ts";
import { CHILDREN, COUNTER, INCREMENTS, MAGIC, READY, SLOT_BASE, SLOT_SIZE, TURN } from "./shm_layout.ts";

const TIMEOUT_MS = 20_000;

const rt = await runtime();
const ffi = await native();
const [name, indexArg, sizeArg] = rt.args();
const index = Number(indexArg);
const size = Number(sizeArg);
if (name === undefined || !Number.isInteger(index) || !Number.isInteger(size)) {
  throw new TypeError(`Cannot start shm_child: bad arguments ${JSON.stringify(rt.args())}`);
}

const deadline = Date.now() + TIMEOUT_MS;
async function until(what: string, ok: () => boolean): Promise<void> {
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`Cannot finish shm_child ${index} (${rt.name}): timed out ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

const fd = ffi.call.shm_open(ffi.cstring(name), O_RDWR, 0);
if (fd < 0) throw new Error(`Cannot open shared memory "${name}" in ${rt.name}: errno ${ffi.errno()}`);
let address = 0;
try {
  address = ffi.call.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (isMapFailed(address)) throw new Error(`Cannot map shared memory "${name}" in ${rt.name}: errno ${ffi.errno()}`);
  const buffer = ffi.view(address, size);
  const words = new Int32Array(buffer);

  // All children increment at once, to show Atomics.add is atomic across processes and runtimes.
  Atomics.add(words, READY, 1);
  await until("waiting for the other children to map the segment", () => Atomics.load(words, READY) >= CHILDREN);
  for (let i = 0; i < INCREMENTS; i++) Atomics.add(words, COUNTER, 1);

  // Then one at a time, in index order.
  await until(`waiting for turn ${index}`, () => Atomics.load(words, TURN) === index);
  const slot = SLOT_BASE + index * SLOT_SIZE;
  const slotWords = new Int32Array(buffer, slot, 3);
  const nameBytes = new TextEncoder().encode(rt.name);
  new Uint8Array(buffer, slot + 12, SLOT_SIZE - 12).set(nameBytes);
  Atomics.store(slotWords, 0, Atomics.load(words, MAGIC));
  Atomics.store(slotWords, 1, nameBytes.byteLength);
  Atomics.store(slotWords, 2, rt.pid);
  Atomics.store(words, TURN, index + 1);
} finally {
  if (address !== 0 && !isMapFailed(address)) ffi.call.munmap(address, size);
  ffi.call.close(fd);
}
