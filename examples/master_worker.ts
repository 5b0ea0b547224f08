/**
 * The Master-Worker model: a master (any runtime) hands tasks to worker processes on Deno, Bun and Node, collects
 * the results in order, and survives a worker being killed mid-run. This one file is both: started as a pool worker
 * it serves the task, otherwise it is the master.
 *
 *   deno run -A examples/master_worker.ts      (or: bun examples/master_worker.ts, node --import tsx ...)
 *
 * @module
 */
import { Pool, pool, runtime, WorkerDiedError } from "../mod.ts";

const rt = await runtime();

/** The work: count the primes below n (slow enough to see the workers share it). */
function primesBelow(n: number): number {
  let count = 0;
  for (let i = 2; i < n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) {
      if (i % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

if (rt.env("IPCKIT_POOL_WORKER")) {
  // A worker: serve the task, and say where it ran.
  await pool.worker({
    run: (n: number) => ({ n, primes: primesBelow(n), runtime: rt.name, pid: rt.pid }),
  });
} else {
  const master = new Pool<{ run(n: number): { n: number; primes: number; runtime: string; pid: number } }>({
    worker: new URL(import.meta.url),
    kind: "process",
    runtime: ["deno", "bun", "node"],
    size: 3,
  });
  try {
    await master.ready(); // not needed (tasks queue until a worker is up), but then all three share the first tasks
    const ranOn = new Map<string, number>();
    for await (const r of master.map(Array.from({ length: 30 }, (_, i) => 20_000 + i * 1000))) {
      ranOn.set(r.runtime, (ranOn.get(r.runtime) ?? 0) + 1);
      if (r.n % 10_000 === 0) console.log(`primes below ${r.n}: ${r.primes} (on ${r.runtime}, pid ${r.pid})`);
    }
    console.log("tasks per runtime:", Object.fromEntries(ranOn));

    // Kill a worker while tasks run: idempotent tasks are re-run elsewhere, and the worker is replaced.
    const victim = master.stats.workers[1]!.id!;
    const tasks = Array.from({ length: 12 }, (_, i) => master.run(200_000 + i, { idempotent: true }));
    rt.kill(victim, "SIGKILL");
    const results = await Promise.allSettled(tasks);
    const lost = results.filter((r) => r.status === "rejected" && r.reason instanceof WorkerDiedError).length;
    console.log(`killed worker ${victim}: ${results.length - lost} of 12 tasks done, ${lost} lost`);
    const { done, retried, restarts } = master.stats;
    console.log(`stats: ${done} done, ${retried} re-run after the kill, ${restarts} worker restarted`);
  } finally {
    await master.close();
  }
}
