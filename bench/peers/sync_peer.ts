/**
 * The other side of `bench/sync.ts`'s hand-off: takes the Mutex, waits on the Condition until it is its turn
 * (word TURN = 1), hands the turn back (TURN = 0), notifies, unlocks; until word STOP is set.
 *
 * As a process: `sync_peer.ts <shm name>` (the Mutex at offset 0, the Condition at 64, words from byte 128).
 * As a worker: it is posted the SharedArrayBuffer with the same layout.
 *
 * @module
 */
import { Condition, Mutex, runtime, SharedMemory } from "../../mod.ts";

export const TURN = 32, STOP = 33, READY = 34;

export function serve(memory: SharedMemory | SharedArrayBuffer): void {
  const words = new Int32Array(memory instanceof SharedArrayBuffer ? memory : memory.buffer);
  const m = Mutex.in(memory, 0);
  const c = Condition.in(memory, 64);
  Atomics.store(words, READY, 1);
  m.lockSync();
  for (;;) {
    while (Atomics.load(words, TURN) !== 1 && Atomics.load(words, STOP) === 0) c.waitSync(m);
    if (Atomics.load(words, STOP) !== 0) break;
    Atomics.store(words, TURN, 0);
    c.notify();
  }
  m.unlock();
}

const rt = await runtime();
const [name] = rt.args();
if (name !== undefined && name.startsWith("/")) {
  const shm = await SharedMemory.open(name);
  serve(shm);
  shm.close();
} else {
  const { parentPort } = await import("node:worker_threads");
  parentPort?.once("message", (sab: SharedArrayBuffer) => {
    serve(sab);
    parentPort.close?.();
  });
}
