/**
 * A computation in phases across worker threads, kept in step by a `Barrier`: three workers each sum a third of
 * 0..99 (phase 1), one of them adds the partial sums (phase 2), and all of them read the total (phase 3). Nobody
 * starts a phase before everyone finished the one before. This one file is the main thread and the workers.
 *
 *   node --import tsx examples/barrier.ts      (or: npx deno run -A / npx bun examples/barrier.ts)
 *
 * @module
 */
import { Barrier, runtime, type SyncHandle } from "../mod.ts";

const WORKERS = 3;
const N = 100;
const rt = await runtime();
const parent = rt.parentPort();

if (parent !== null) {
  parent.onMessage((message) => {
    const { barrier: handle, memory, id } = message as { barrier: SyncHandle; memory: SharedArrayBuffer; id: number };
    const barrier = Barrier.from(handle);
    const partial = new Float64Array(memory, 0, WORKERS);
    const total = new Float64Array(memory, 8 * WORKERS, 1);
    // Phase 1: my third of 0..N-1.
    for (let i = id; i < N; i += WORKERS) partial[id]! += i;
    barrier.waitSync({ timeout: 10_000 });
    // Phase 2: worker 0 adds the partial sums.
    if (id === 0) total[0] = partial.reduce((a, b) => a + b, 0);
    barrier.waitSync({ timeout: 10_000 });
    // Phase 3: everyone reads the total.
    parent.postMessage(total[0]);
  });
} else {
  const barrier = new Barrier(WORKERS);
  const memory = new SharedArrayBuffer(8 * (WORKERS + 1));
  const workers = Array.from({ length: WORKERS }, () => rt.worker(new URL(import.meta.url)));
  const totals = workers.map((w) => new Promise<number>((r) => w.onMessage(r as never)));
  workers.forEach((w, id) => w.postMessage({ barrier: barrier.handle, memory, id }));
  try {
    const seen = await Promise.all(totals);
    if (new Set(seen).size !== 1) throw new Error(`Cannot trust the barrier: workers saw ${seen.join(", ")}`);
    console.log(`phase 3 done by all ${WORKERS} workers: sum ${seen[0]} (${barrier.generation} generations)`);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
