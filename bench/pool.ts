/**
 * Task throughput of ipckit's Pool (threads, and processes of each runtime), next to tinypool, piscina, workerpool
 * and poolifier (Node only: they run on worker_threads; workerpool's process mode on child_process too), in one run.
 * `--task` says which (`bench/peers/pool_tasks.mjs`, the same for every pool): `trivial` squares a number (50 000
 * tasks a round by default), `cpu` burns 1 ms first (2000), `bytes` sends a 64 KiB array and gets its length back
 * (5000; also with a fresh array moved instead of copied: ipckit's `transfer`, tinypool's and piscina's
 * `transferList`, poolifier's `execute(data, name, signal, transferList)`). Two ways to feed a pool, each
 * timed over `--tasks` tasks after a warm-up (`--warm` ms of rounds first, 3000 by default, then a round before
 * each way), medians of `--reps`, in tasks per second:
 * - **all at once**: every task submitted before the first settles (`Promise.all` of `--tasks` runs): the pool
 *   and the caller hold them all, so the garbage collector's work on tens of thousands of live promises counts;
 * - **in windows**: `--window` tasks submitted, awaited, then the next ones (a caller feeding a stream of work
 *   with bounded memory).
 *
 * `--task priority` is the priority mix instead: `--low` tasks of 1 ms CPU (20 000) queued at priority low, then
 * `--high` ones (1000) at priority high; it reports when the last high one settled, their latencies' p50 and p99
 * (from their submission), and when everything had drained (medians of `--reps`). ipckit: `priority` 0 and 1 (the
 * default `priorityAging`); poolifier 5: its priorities belong to task functions (`bench/peers/prio_poolifier.mjs`,
 * with `enableTasksQueue`); piscina, tinypool and workerpool have no per-task priority: piscina in FIFO order is the
 * baseline.
 *
 * Each pool runs in a process of its own (this script again, with `--case <n>`), as an application runs one kind
 * of pool: in one process, the pools measured later ran code the JIT had compiled for the earlier ones (the
 * shared-memory process pool did 404-465 k tasks/s 1000 at a time after the thread and pipe pools, 498-536 k alone).
 * `--together` runs them all in this process instead. After the table, each ipckit pool's tasks/s as a ratio to
 * piscina's with 16 tasks per worker (issue 18 aims at >= 5x on trivial tasks).
 *
 *   node --import tsx bench/pool.ts [--task trivial|cpu|bytes|priority] [--size 2] [--tasks N] [--window 1000]
 *     [--reps 5] [--warm 3000] [--low 20000] [--high 1000] [--together]
 *   npx bun bench/pool.ts        npx deno run -A bench/pool.ts
 *
 * @module
 */
import { Pool, runtime, runtimeArgv, type RuntimeName } from "../mod.ts";
import { median, table } from "../cli/peers/launch.ts";
import { flags } from "./args.ts";
import { runToEnd } from "./native_floor.ts";
import { cpuTimes, stolenNote } from "./steal.ts";

const rt = await runtime();
const cpuAtStart = await cpuTimes();
const args = rt.args();
const { opt, has } = flags(args);
const SIZE = Number(opt("--size", "2"));
const MODE = opt("--task", "trivial") as "trivial" | "cpu" | "bytes" | "priority";
if (!["trivial", "cpu", "bytes", "priority"].includes(MODE)) {
  throw new Error(`--task ${MODE}: trivial, cpu, bytes or priority`);
}
/** The task each pool runs (the priority mix runs 1 ms CPU tasks). */
const TASK = MODE === "priority" ? "cpu" : MODE;
const TASKS = Number(opt("--tasks", { trivial: "50000", cpu: "2000", bytes: "5000" }[TASK]));
const LOW = Number(opt("--low", "20000"));
const HIGH = Number(opt("--high", "1000"));
const REPS = Number(opt("--reps", "5"));
/**
 * How long each pool runs rounds before any is timed, in ms. A pool's first seconds are slower than the rest, whoever
 * made it: here one Node process pool on shm climbed from ~90 k to ~200 k tasks/s over its first 2-3 s (1000 at a time,
 * rounds of 50 000), and a single warm-up round left the medians in that climb.
 */
const WARM_MS = Number(opt("--warm", "3000"));
if (!(WARM_MS >= 0)) throw new RangeError(`--warm ${WARM_MS}: a number of ms >= 0`);
const WINDOW = Math.min(TASKS, Number(opt("--window", "1000")));
const ONLY = new Set(opt("--only", "ipckit,tinypool,piscina,workerpool,poolifier").split(","));
/** The one case this process measures (`--case`), or -1: every case, here or each in a child (`--together`). */
const CASE = Number(opt("--case", "-1"));
const ISOLATE = CASE < 0 && !has("--together");
let cases = 0;
/** Whether this process measures the next case (each pool block asks once, before it makes its pool). */
function mine(): boolean {
  const n = cases++;
  return CASE < 0 ? !ISOLATE : CASE === n;
}
const IPCKIT_WORKER = new URL("./peers/pool_square.ts", import.meta.url);
const JS_WORKER = new URL("./peers/pool_tasks.mjs", import.meta.url);
const PAYLOAD = new Uint8Array(64 * 1024);
/** The argument of task `i`. */
const argOf = (i: number): number | Uint8Array => (TASK === "bytes" ? PAYLOAD : i);
/** What task 7 answers. */
const EXPECTED = TASK === "bytes" ? PAYLOAD.byteLength : 49;

/** Runs TASKS tasks, `window` at a time (each window awaited before the next), checking a result of each window. */
async function feed(run: (n: number) => Promise<unknown>, window: number): Promise<void> {
  for (let done = 0; done < TASKS; done += window) {
    const results = await Promise.all(Array.from({ length: Math.min(window, TASKS - done) }, (_, i) => run(i)));
    if (results[7] !== EXPECTED) throw new Error(`wrong result ${results[7]}`);
  }
}

/** Tasks per second of `run` over TASKS tasks fed `window` at a time, median of REPS after one warm-up round. */
async function rate(run: (n: number) => Promise<unknown>, window: number): Promise<number> {
  await feed(run, window);
  const rates: number[] = [];
  for (let r = 0; r < REPS; r++) {
    const t0 = performance.now();
    await feed(run, window);
    rates.push(TASKS / ((performance.now() - t0) / 1000));
  }
  return median(rates);
}

/** The row of one pool: `--warm` ms of rounds (all at once and in windows, in turns), then each way timed. */
async function measure(label: string, run: (n: number) => Promise<unknown>): Promise<void> {
  const until = performance.now() + WARM_MS;
  for (let r = 0; performance.now() < until; r++) await feed(run, r % 2 === 0 ? TASKS : WINDOW);
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
  if (!mine()) return;
  const pool = new Pool<Record<typeof TASK, (arg: unknown) => number>>({
    ...options,
    signals: false,
    maxQueue: Math.max(TASKS, LOW + HIGH) * 2,
  });
  try {
    if (MODE === "priority") {
      return await mix(label, (n, high) => pool.call(TASK, [n], high ? HIGH_PRIORITY : LOW_PRIORITY));
    }
    await measure(label, (n) => pool.call(TASK, [argOf(n)]));
    if (TASK === "bytes" && options.kind === "thread") {
      // Moved, not copied: a fresh array per task (a moved one is gone from the sender), as a caller would do.
      await measure(`${label}, moved (transfer)`, () => {
        const fresh = new Uint8Array(PAYLOAD.byteLength);
        return pool.call(TASK, [fresh], { transfer: [fresh.buffer] });
      });
    }
  } finally {
    await pool.close();
  }
}

const LOW_PRIORITY = { priority: 0 }, HIGH_PRIORITY = { priority: 1 };

/**
 * The priority mix on one pool: LOW tasks queued, then HIGH ones; when the last high one settled, their latencies'
 * p50 and p99, and when all had, in ms from the first high submission (medians of REPS after a smaller warm-up).
 */
async function mix(label: string, run: (n: number, high: boolean) => Promise<unknown>): Promise<void> {
  const round = async (low: number, high: number) => {
    const lows = Array.from({ length: low }, (_, i) => run(i, false));
    const t0 = performance.now();
    let last = 0;
    const latencies: number[] = [];
    const highs = Array.from({ length: high }, (_, i) => {
      const at = performance.now();
      return run(i, true).then((r) => {
        if (i === 7 && r !== EXPECTED) throw new Error(`wrong result ${r}`);
        const now = performance.now();
        latencies.push(now - at);
        last = Math.max(last, now - t0);
      });
    });
    await Promise.all(highs);
    await Promise.all(lows);
    const all = performance.now() - t0;
    latencies.sort((a, b) => a - b);
    const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!;
    return [last, q(0.5), q(0.99), all];
  };
  await round(Math.min(LOW, 1000), Math.min(HIGH, 100));
  const runs: number[][] = [];
  for (let r = 0; r < REPS; r++) runs.push(await round(LOW, HIGH));
  const ms = (n: number) => n.toFixed(1);
  rows.push([label, ...[0, 1, 2, 3].map((k) => ms(median(runs.map((x) => x[k]!))))]);
}

if (MODE === "priority") {
  rows[0] = ["pool", `${HIGH} high done (ms)`, "high p50 (ms)", "high p99 (ms)", `all ${LOW + HIGH} done (ms)`];
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
  for (const transport of MODE === "priority" ? ["shm"] as const : ["pipe", "shm"] as const) {
    // The priority mix: one task at a time per worker, as poolifier's queue runs them (16 would start 32 lows first).
    const concurrency = MODE === "priority" ? 1 : 16;
    for (const r of ["node", "bun", "deno"] as RuntimeName[]) {
      await ipckit(`ipckit processes (${r}) on ${transport}, concurrency ${concurrency}`, {
        worker: IPCKIT_WORKER,
        kind: "process",
        runtime: r,
        size: SIZE,
        concurrency,
        transport,
      });
    }
  }
}
if (rt.name === "node" && ONLY.has("tinypool") && MODE !== "priority") {
  const { default: Tinypool } = await import("tinypool");
  for (const concurrentTasksPerWorker of [1, 16]) {
    if (!mine()) continue;
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
    if (TASK === "bytes") {
      await measure(`tinypool, concurrentTasksPerWorker ${concurrentTasksPerWorker}, moved (transferList)`, () => {
        const fresh = new Uint8Array(PAYLOAD.byteLength);
        return pool.run({ kind: TASK, arg: fresh }, { transferList: [fresh.buffer] });
      });
    }
    await pool.destroy();
  }
}
if (rt.name === "node" && ONLY.has("piscina")) {
  const { Piscina } = await import("piscina");
  for (const concurrentTasksPerWorker of [1, 16]) {
    if (!mine()) continue;
    const pool = new Piscina({
      filename: JS_WORKER.href,
      minThreads: SIZE,
      maxThreads: SIZE,
      concurrentTasksPerWorker,
    });
    const version = await versionOf("piscina");
    const label = `piscina ${version}, concurrentTasksPerWorker ${concurrentTasksPerWorker}`;
    if (MODE === "priority") {
      // No per-task priority (only a custom TaskQueue): FIFO, the baseline.
      await mix(`${label} (FIFO: no priorities)`, (n) => pool.run({ kind: TASK, arg: n }));
      await pool.destroy();
      continue;
    }
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
if (rt.name === "node" && ONLY.has("workerpool") && MODE !== "priority") {
  const { default: workerpool } = await import("workerpool");
  const version = (await import("workerpool/package.json", { with: { type: "json" } })).default.version;
  const script = new URL("./peers/square_workerpool.mjs", import.meta.url).pathname;
  for (const workerType of ["thread", "process"] as const) {
    if (!mine()) continue;
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
if (rt.name === "node" && ONLY.has("poolifier") && mine()) {
  const { FixedThreadPool } = await import("poolifier");
  const version = await versionOf("poolifier"); // its exports leave package.json out
  if (MODE === "priority") {
    // Priorities live in its per-worker task queues: enableTasksQueue (one task at a time per worker, as ipckit's).
    const pool = new FixedThreadPool(SIZE, new URL("./peers/prio_poolifier.mjs", import.meta.url).pathname, {
      enableTasksQueue: true,
      tasksQueueOptions: { concurrency: 1 },
    });
    await mix(
      `poolifier ${version}, threads (task function priorities)`,
      (n, high) => pool.execute(n, high ? "high" : "low"),
    );
    await pool.destroy();
  } else {
    const pool = new FixedThreadPool(SIZE, new URL("./peers/square_poolifier.mjs", import.meta.url).pathname);
    const label = `poolifier ${version}, threads`;
    await measure(label, (n) => pool.execute({ kind: TASK, arg: argOf(n) }));
    if (TASK === "bytes") {
      await measure(`${label}, moved (transferList)`, () => {
        const fresh = new Uint8Array(PAYLOAD.byteLength);
        return pool.execute({ kind: TASK, arg: fresh }, undefined, undefined, [fresh.buffer]);
      });
    }
    await pool.destroy();
  }
}
if (ISOLATE) {
  const script = rt.fromFileUrl(import.meta.url);
  for (let n = 0; n < cases; n++) {
    const what = `bench/pool.ts --case ${n}`;
    const out = await runToEnd(rt, [...runtimeArgv(rt.name, script), ...args, "--case", String(n)], 30 * 60_000, what);
    const line = out.stdout.trim().split("\n").findLast((l) => l.startsWith("["));
    if (out.code !== 0 || line === undefined) {
      throw new Error(`Cannot run ${what}: ${out.stderr.trim() || `exit ${out.code}, no rows`}`);
    }
    rows.push(...JSON.parse(line) as string[][]);
  }
}
if (CASE >= 0) {
  console.log(JSON.stringify(rows.slice(1)));
  rt.exit(0);
}
console.log(
  MODE === "priority"
    ? `Pool priority mix: ${rt.name} master, ${SIZE} workers, ${LOW} low-priority tasks of 1 ms CPU then ${HIGH} ` +
      `high-priority ones, medians of ${REPS}\n`
    : `Pool throughput, ${TASK} task: ${rt.name} master, ${SIZE} workers, ${TASKS} tasks per round, medians of ${REPS} ` +
      `after ${WARM_MS} ms of rounds\n`,
);
console.log(table(rows));

/** Each ipckit pool against piscina with 16 tasks per worker, per column (issue 18 aims at >= 5x on trivial tasks). */
function againstPiscina(): string[][] {
  const piscina = rows.find((r) => /^piscina .*concurrentTasksPerWorker 16$/.test(r[0]!));
  if (MODE === "priority" || piscina === undefined) return [];
  const number = (cell: string) => Number(cell.replaceAll(",", ""));
  const out = [["ipckit pool / piscina c16", "all at once", `${WINDOW} at a time`]];
  for (const r of rows.slice(1)) {
    if (!r[0]!.startsWith("ipckit")) continue;
    out.push([r[0]!, ...[1, 2].map((k) => `${(number(r[k]!) / number(piscina[k]!)).toFixed(2)}x`)]);
  }
  return out.length > 1 ? out : [];
}

const ratios = againstPiscina();
if (ratios.length > 0) console.log(`\n${table(ratios)}`);
console.log(`\n${stolenNote(cpuAtStart, await cpuTimes())}`);
