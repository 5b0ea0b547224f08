/**
 * A load to watch: a pool of two worker processes (on the other runtimes) fed batches of tasks, an RPC client and
 * server over a shm channel (each method timed), and an observed mutex and semaphore, each object counting in this
 * process's stats segment. While it runs,
 * `ipckit top` shows it in a terminal and `ipckit monitor --web` in a browser (with /metrics); at the end it reads
 * its own counters back, as any other process would. This one file is both: started as a pool worker it serves the
 * task, otherwise it is the load.
 *
 *   deno run -A examples/monitor.ts [--seconds N]   (3 by default; or: bun examples/monitor.ts, node --import tsx ...)
 *   npx ipckit monitor --web                        (in another terminal: then open http://127.0.0.1:8019/)
 *
 * @module
 */
import { Mutex, Pool, pool, rpc, runtime, type RuntimeName, Semaphore, shm, stats } from "../mod.ts";

const rt = await runtime();
stats.setStats(true); // on by default; the test runner turns them off (IPCKIT_STATS=off)

/** The task: a sum of squares, slow enough that the workers have a queue now and then. */
function squares(n: number): number {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += i * i;
  return sum;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

if (rt.env("IPCKIT_POOL_WORKER")) {
  await pool.worker({ run: (n: number) => squares(n) });
} else {
  const args = rt.args();
  const at = args.indexOf("--seconds");
  const seconds = at < 0 ? 3 : Number(args[at + 1]);
  const others = (["deno", "bun", "node"] as RuntimeName[]).filter((r) => r !== rt.name);
  const workers = new Pool<{ run(n: number): number }>({
    worker: new URL(import.meta.url),
    kind: "process",
    runtime: others,
    size: 2,
    name: "squares",
  });
  const [a, handle] = shm.pair();
  const server = rpc.serve(a, {
    add: (x: number, y: number) => x + y,
    slow: (ms: number) => sleep(ms).then(() => ms),
  }, { name: "calculator (server)" });
  const client = rpc.connect<{ add(x: number, y: number): number; slow(ms: number): number }>(
    shm.fromHandle(handle),
    { name: "calculator (client)" },
  );
  const totals = new Mutex().observe("totals lock"); // shown with its holder and its longest hold
  const slowSlots = new Semaphore(2).observe("slow call slots"); // two slow calls at a time
  try {
    await workers.ready();
    console.log(`load running for ${seconds} s: pid ${rt.pid} (${rt.name}), workers on ${others.join(" and ")}`);
    const end = Date.now() + seconds * 1000;
    const slow = (async () => {
      while (Date.now() < end) {
        await Promise.all(Array.from({ length: 4 }, async (_, i) => {
          using _slot = await slowSlots.acquire();
          return await client.api.slow(150 + 50 * i);
        }));
      }
    })();
    let tasks = 0;
    let calls = 0;
    while (Date.now() < end) {
      const batch = Array.from({ length: 40 }, (_, i) => workers.run(20_000 + i));
      for (let i = 0; i < 50; i++) await client.api.add(i, calls++);
      const done = await Promise.all(batch);
      await totals.lock();
      tasks += done.length;
      totals.unlock();
      await sleep(20);
    }
    await slow;
    // Read back from this process's stats segment, as `ipckit stats` does from outside.
    const me = (await stats.listStats()).find((p) => "pid" in p && p.pid === rt.pid);
    const objects = me && "objects" in me ? me.objects : [];
    const find = (name: string) => objects.find((o) => o.name === name)?.counters;
    console.log(`ran ${tasks} tasks and ${calls} calls (and the slow ones)`);
    console.log(`stats: pool "squares" done ${find("squares")?.done}, workers ${find("squares")?.workers}`);
    console.log(`stats: rpc "calculator (client)" calls ${find("calculator (client)")?.calls}`);
    const add = objects.find((o) => o.name === "calculator (client) · call add");
    console.log(`stats: add's p50 ${add?.buckets ? stats.quantile(add.buckets, 0.5).toFixed(1) : "?"} us`);
    console.log(`stats: "totals lock" acquired ${find("totals lock")?.acquired}`);
  } finally {
    await client.close();
    await server.close();
    await workers.close();
  }
}
