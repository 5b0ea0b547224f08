/**
 * Task throughput of ipckit's Pool (threads, and processes of each runtime), next to tinypool, piscina, workerpool
 * and poolifier (Node only: they run on worker_threads; workerpool's process mode on child_process too), in one run.
 * `--task` says which (`bench/peers/pool_tasks.mjs`, the same for every pool): `trivial` squares a number (50 000
 * tasks a round by default), `cpu` burns 1 ms first (2000), `bytes` sends a 64 KiB array and gets its length back
 * (5000; piscina also with the array moved instead of copied, its `transferList`). Two ways to feed a pool, each
 * timed over `--tasks` tasks after a warm-up, medians of `--reps`, in tasks per second:
 * - **all at once**: every task submitted before the first settles (`Promise.all` of `--tasks` runs): the pool
 *   and the caller hold them all, so the garbage collector's work on tens of thousands of live promises counts;
 * - **in windows**: `--window` tasks submitted, awaited, then the next ones (a caller feeding a stream of work
 *   with bounded memory).
 *
 *   node --import tsx bench/pool.ts [--task trivial|cpu|bytes] [--size 2] [--tasks N] [--window 1000] [--reps 5]
 *   npx bun bench/pool.ts        npx deno run -A bench/pool.ts
 *
 * @module
 */
import { Pool, runtime, type RuntimeName } from "../mod.ts";
import { median, table } from "../cli/peers/launch.ts";
import { flags } from "./args.ts";

const rt = await runtime();
const args = rt.args();
const { opt } = flags(args);
const SIZE = Number(opt("--size", "2"));
const TASK = opt("--task", "trivial") as "trivial" | "cpu" | "bytes";
if (!["trivial", "cpu", "bytes"].includes(TASK)) throw new Error(`--task ${TASK}: trivial, cpu or bytes`);
const TASKS = Number(opt("--tasks", { trivial: "50000", cpu: "2000", bytes: "5000" }[TASK]));
const REPS = Number(opt("--reps", "5"));
const WINDOW = Math.min(TASKS, Number(opt("--window", "1000")));
const ONLY = new Set(opt("--only", "ipckit,tinypool,piscina,workerpool,poolifier").split(","));
const IPCKIT_WORKER = new URL("./peers/pool_square.ts", import.meta.url);
const JS_WORKER = new URL("./peers/pool_tasks.mjs", import.meta.url);
const PAYLOAD = new Uint8Array(64 * 1024);
/** The argument of task `i`. */
const argOf = (i: number): number | Uint8Array => (TASK === "bytes" ? PAYLOAD : i);
/** What task 7 answers. */
const EXPECTED = TASK === "bytes" ? PAYLOAD.byteLength : 49;

/** Tasks per second of `run` over TASKS tasks fed `window` at a time, median of REPS after one warm-up round. */
async function rate(run: (n: number) => Promise<unknown>, window: number): Promise<number> {
  const round = async () => {
    const t0 = performance.now();
    for (let done = 0; done < TASKS; done += window) {
      const results = await Promise.all(Array.from({ length: Math.min(window, TASKS - done) }, (_, i) => run(i)));
      if (results[7] !== EXPECTED) throw new Error(`wrong result ${results[7]}`);
    }
    const seconds = (performance.now() - t0) / 1000;
    return TASKS / seconds;
  };
  await round();
  const rates: number[] = [];
  for (let r = 0; r < REPS; r++) rates.push(await round());
  return median(rates);
}

/** The row of one pool: all at once, then in windows. */
async function measure(label: string, run: (n: number) => Promise<unknown>): Promise<void> {
  rows.push([label, fmt(await rate(run, TASKS)), fmt(await rate(run, WINDOW))]);
}

/** An installed package's version, from its package.json in node_modules. */
async function versionOf(name: string): Promise<string> {
  const { readFileSync } = await import("node:fs");
  return JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), "utf8")).version;
}

const rows: string[][] = [["pool", `all ${TASKS} at once (tasks/s)`, `${WINDOW} at a time (tasks/s)`]];
const fmt = (n: number) => Math.round(n).toLocaleString("en-US");

async function ipckit(label: string, options: ConstructorParameters<typeof Pool>[0]) {
  const pool = new Pool<Record<typeof TASK, (arg: unknown) => number>>({
    ...options,
    signals: false,
    maxQueue: TASKS * 2,
  });
  try {
    await measure(label, (n) => pool.call(TASK, [argOf(n)]));
  } finally {
    await pool.close();
  }
}

if (ONLY.has("ipckit")) {
  for (const concurrency of [1, 16]) {
    await ipckit(`ipckit threads (${rt.name}), concurrency ${concurrency}`, {
      worker: IPCKIT_WORKER,
      kind: "thread",
      size: SIZE,
      concurrency,
    });
  }
  for (const transport of ["pipe", "shm"] as const) {
    for (const r of ["node", "bun", "deno"] as RuntimeName[]) {
      await ipckit(`ipckit processes (${r}) on ${transport}, concurrency 16`, {
        worker: IPCKIT_WORKER,
        kind: "process",
        runtime: r,
        size: SIZE,
        concurrency: 16,
        transport,
      });
    }
  }
}
if (rt.name === "node" && ONLY.has("tinypool")) {
  const { default: Tinypool } = await import("tinypool");
  for (const concurrentTasksPerWorker of [1, 16]) {
    const pool = new Tinypool({
      filename: JS_WORKER.href,
      minThreads: SIZE,
      maxThreads: SIZE,
      concurrentTasksPerWorker,
    });
    await measure(
      `tinypool ${(await import("tinypool/package.json", { with: { type: "json" } })).default.version}` +
        `, concurrentTasksPerWorker ${concurrentTasksPerWorker}`,
      (n) => pool.run({ kind: TASK, arg: argOf(n) }),
    );
    await pool.destroy();
  }
}
if (rt.name === "node" && ONLY.has("piscina")) {
  const { Piscina } = await import("piscina");
  for (const concurrentTasksPerWorker of [1, 16]) {
    const pool = new Piscina({
      filename: JS_WORKER.href,
      minThreads: SIZE,
      maxThreads: SIZE,
      concurrentTasksPerWorker,
    });
    const version = await versionOf("piscina");
    const label = `piscina ${version}, concurrentTasksPerWorker ${concurrentTasksPerWorker}`;
    await measure(label, (n) => pool.run({ kind: TASK, arg: argOf(n) }));
    if (TASK === "bytes") {
      // Moved, not copied: a fresh array per task (a moved one is gone from the sender), as a caller would do.
      await measure(`${label}, moved (transferList)`, () => {
        const fresh = new Uint8Array(PAYLOAD.byteLength);
        return pool.run({ kind: TASK, arg: fresh }, { transferList: [fresh.buffer] });
      });
    }
    await pool.destroy();
  }
}
if (rt.name === "node" && ONLY.has("workerpool")) {
  const { default: workerpool } = await import("workerpool");
  const version = (await import("workerpool/package.json", { with: { type: "json" } })).default.version;
  const script = new URL("./peers/square_workerpool.mjs", import.meta.url).pathname;
  for (const workerType of ["thread", "process"] as const) {
    if (workerType === "process" && TASK === "bytes") {
      // Its process workers get JSON: a 64 KiB array as an object of 65 536 keys, ~50 tasks/s (minutes per round).
      rows.push([`workerpool ${version}, processes`, "skipped: JSON (~50/s)", "skipped"]);
      continue;
    }
    const pool = workerpool.pool(script, { minWorkers: SIZE, maxWorkers: SIZE, workerType });
    await measure(
      `workerpool ${version}, ${workerType}es`.replace("threades", "threads"),
      (n) => pool.exec(TASK, [argOf(n)]),
    );
    await pool.terminate();
  }
}
if (rt.name === "node" && ONLY.has("poolifier")) {
  const { FixedThreadPool } = await import("poolifier");
  const version = await versionOf("poolifier"); // its exports leave package.json out
  const pool = new FixedThreadPool(SIZE, new URL("./peers/square_poolifier.mjs", import.meta.url).pathname);
  await measure(`poolifier ${version}, threads`, (n) => pool.execute({ kind: TASK, arg: argOf(n) }));
  await pool.destroy();
}
console.log(
  `Pool throughput, ${TASK} task: ${rt.name} master, ${SIZE} workers, ${TASKS} tasks per round, medians of ${REPS}\n`,
);
console.log(table(rows));
