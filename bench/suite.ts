/**
 * The whole shared-memory benchmark in one run, as `npm run bench` runs it: `bench/shm.ts` for every pair of
 * runtimes (parent-peer), the C ring (`bench/native/ring.c`, the native floor), and the waiting path against a
 * Unix socket under load (`bench/shm_blocking.ts`, node-node). Prints the ratios issue 18 sets (latency to the
 * floor, parity across pairs, the blocking path against the socket, 64 KiB against C) and writes the run as a
 * chart and as data: `<out>.svg` (drawn by `bench/chart.ts`, with the machine and the date) and `<out>.json`.
 *
 *   node --import tsx bench/suite.ts [--pairs node-node,deno-deno,...] [--reps 3] [--out docs/bench]
 *     [--no-blocking]
 *
 * Run it on a quiet machine: nothing else should run meanwhile (figures on this 2-core machine drift 3-4x between
 * runs, so only ratios within one run mean much). The chart's first note says how much CPU time the hypervisor stole
 * during the run (`bench/steal.ts`).
 *
 * @module
 */
import { writeFile } from "node:fs/promises";
import { runtime, runtimeArgv, type RuntimeName } from "../mod.ts";
import { table } from "../cli/peers/launch.ts";
import { renderChart } from "./chart.ts";
import { nativeFloor, nativeFloorRows, runToEnd } from "./native_floor.ts";
import { type BenchReport, type LatencyRow, machineInfo, type ThroughputRow } from "./report.ts";
import { flags } from "./args.ts";
import { ratioRange } from "./stats.ts";
import { cpuTimes, stolenNote } from "./steal.ts";

const rt = await runtime();
const cpuAtStart = await cpuTimes();
const args = rt.args();
const { opt } = flags(args);
const ALL = ["node", "deno", "bun"] as const;
const PAIRS = opt("--pairs", ALL.flatMap((a) => ALL.map((b) => `${a}-${b}`)).join(",")).split(",");
const REPS = opt("--reps", "3");
const OUT = opt("--out", "docs/bench");
const here = (file: string) => rt.fromFileUrl(new URL(file, import.meta.url));
const root = rt.fromFileUrl(new URL("..", import.meta.url));

interface PairRun {
  pair: string;
  runtimes: Record<string, string>;
  latency: LatencyRow[];
  throughput: ThroughputRow[];
  notes: string[];
}

/** The last line of a program's output, parsed as JSON. */
async function jsonOf(argv: string[], what: string): Promise<unknown> {
  const out = await runToEnd(rt, argv, 30 * 60_000, what);
  if (out.code !== 0) throw new Error(`Cannot run ${what}: ${out.stderr.trim() || `exit ${out.code}`}`);
  const line = out.stdout.trim().split("\n").findLast((l) => l.startsWith("{"));
  if (line === undefined) throw new Error(`Cannot read what ${what} measured: no JSON line in its output`);
  return JSON.parse(line);
}

const runs: PairRun[] = [];
for (const pair of PAIRS) {
  const [parent, peer] = pair.split("-") as [RuntimeName, RuntimeName];
  console.error(`bench: shm ${pair}...`);
  const argv = [...runtimeArgv(parent, here("./shm.ts")), "--runtime", peer, "--reps", REPS, "--json"];
  runs.push(await jsonOf(argv, `bench/shm.ts (${pair})`) as PairRun);
}
console.error("bench: the C ring...");
const floor = nativeFloor();
const native = nativeFloorRows(await floor);
/** What `bench/shm_blocking.ts --json` prints: per condition, per transport, its distribution and its quarters' p99s. */
type Blocking = {
  results: {
    condition: string;
    figures: Record<string, { p50: number; mean: number; p99: number; p99Parts: number[] }>;
  }[];
};
let blocking: Blocking | undefined;
if (!args.includes("--no-blocking")) {
  console.error("bench: the waiting path under load...");
  // 20 000 round trips each: a p99 over 2000 (the slowest 20) moved 2-8x between runs with the scheduler.
  const argv = [
    ...runtimeArgv("node", here("./shm_blocking.ts")),
    "--rounds",
    "20000",
    "--idle",
    "spin-then-park,park",
  ];
  blocking = await jsonOf([...argv, "--json"], "bench/shm_blocking.ts") as Blocking;
}

// The tables: the ratios the issue sets, all from this run.
const f = (x: number, d = 2) => x.toFixed(d);
const lat = (r: PairRun, t: string) => r.latency.find((l) => l.transport === t);
const put = (r: PairRun, size: number, api: string, transport = "shm") =>
  r.throughput.find((t) => t.size === size && t.api === api && t.transport === transport);
const rows = [[
  "pair",
  "8 B p50 us",
  "p99",
  "floor us",
  "x floor",
  "floor timed p50",
  "x (same timing)",
  "loop mean us",
  "x floor",
  "trySend us",
  "x floor",
  "JS ring us",
  "x floor",
  "trySend x JS ring",
  "unix p50",
]];
for (const r of runs) {
  const shm8 = lat(r, "shm 8 B")!;
  const raw = lat(r, "raw JS spin (floor)")!;
  const rawTimed = lat(r, "raw JS spin, timed each (floor)");
  const mean = lat(r, "shm 8 B, loop mean");
  const trySend = lat(r, "shm 8 B trySend")!;
  const jsRing = lat(r, "JS ring trySend (API floor)")?.p50 ?? NaN;
  rows.push([
    r.pair,
    f(shm8.p50),
    f(shm8.p99 ?? NaN, 1),
    f(raw.p50, 3),
    f(shm8.p50 / raw.p50),
    f(rawTimed?.p50 ?? NaN, 3),
    f(shm8.p50 / (rawTimed?.p50 ?? NaN)),
    f(mean?.p50 ?? NaN, 3),
    f((mean?.p50 ?? NaN) / raw.p50),
    f(trySend.p50),
    f(trySend.p50 / raw.p50),
    f(jsRing, 3),
    f(jsRing / raw.p50),
    f(trySend.p50 / jsRing),
    f(lat(r, "unix 8 B")?.p50 ?? NaN, 1),
  ]);
}
rows.push(["C ring", f(native.latency.p50, 3), f(native.latency.p99 ?? NaN, 1), ...rows[0]!.slice(3).map(() => "")]);
console.log(
  "\nLatency: round trip, await send/receive (HdrHistogram, each timed) and trySend/tryReceive (means of loops), " +
    "against the raw JS spin: its loop mean, and its p50 timed one by one as the await p50 is; the await loop's mean; " +
    "the JS ring (bench/js_ring.ts): the least a JS channel does, fresh arrays, no checks",
);
console.log(table(rows));

const apis = ["send", "trySend", "trySend, receiveInto", "trySend, drain", "batch, receiveMany", "batch, drain"];
const t = [[
  "pair",
  ...apis,
  "JS ring single",
  "x JS ring",
  "JS ring batch",
  "x JS ring",
  "64 KiB fresh",
  "64 KiB into",
  "x C",
  "64 KiB loans",
  "1 MiB into",
  "1 MiB loans",
]];
const c64k = native.throughput.find((x) => x.size === 65536)!;
for (const r of runs) {
  const into = put(r, 65536, "receiveInto");
  t.push([
    r.pair,
    ...apis.map((a) => f((put(r, 64, a)?.msgsPerSec ?? NaN) / 1e6)),
    ...["trySend, drain", "batch, drain"].flatMap((a) => {
      const floor = put(r, 64, a, "JS ring (floor)")?.msgsPerSec ?? NaN;
      return [f(floor / 1e6), f((put(r, 64, a)?.msgsPerSec ?? NaN) / floor)];
    }),
    f((put(r, 65536, "fresh arrays")?.bytesPerSec ?? NaN) / 1e9),
    f((into?.bytesPerSec ?? NaN) / 1e9),
    f((into?.bytesPerSec ?? NaN) / c64k.bytesPerSec),
    f((put(r, 65536, "loans")?.bytesPerSec ?? NaN) / 1e9),
    f((put(r, 1 << 20, "receiveInto")?.bytesPerSec ?? NaN) / 1e9),
    f((put(r, 1 << 20, "loans")?.bytesPerSec ?? NaN) / 1e9),
  ]);
}
// The C ring's 64 B figures under the drains they compare with (it publishes each message, or batches of 64, and
// reads each where it lies), its 64 KiB under "64 KiB into".
const [cEach, cBatched] = native.throughput.filter((x) => x.size === 64).map((x) => f(x.msgsPerSec / 1e6));
const cRow = t[0]!.map(() => "");
cRow[0] = "C ring";
cRow[t[0]!.indexOf("trySend, drain")] = cEach ?? "";
cRow[t[0]!.indexOf("batch, drain")] = cBatched ?? "";
cRow[t[0]!.indexOf("64 KiB into")] = f(c64k.bytesPerSec / 1e9);
t.push(cRow);
console.log(
  "\nThroughput, one way: 64 B in M msg/s (batches of 64), 64 KiB and 1 MiB in GB/s (C: publish each / batched; 64 KiB " +
    "copied out); loans: filled in place and read in place, against a filled buffer copied in and copied out; the JS " +
    "ring's single sends and batches (bench/js_ring.ts, read in place) and the share of them the trySend and batch drains keep",
);
console.log(table(t));

// Parity: every pair against the best pair on the same measure.
const measures: [string, (r: PairRun) => number, boolean][] = [
  ["8 B p50 (lower is better)", (r) => lat(r, "shm 8 B")!.p50, false],
  ["trySend round trip", (r) => lat(r, "shm 8 B trySend")!.p50, false],
  ["64 B trySend M msg/s", (r) => put(r, 64, "trySend")?.msgsPerSec ?? NaN, true],
  ["64 B trySend + drain", (r) => put(r, 64, "trySend, drain")?.msgsPerSec ?? NaN, true],
  ["64 B sendMany + drain", (r) => put(r, 64, "batch, drain")?.msgsPerSec ?? NaN, true],
  ["64 KiB receiveInto", (r) => put(r, 65536, "receiveInto")?.bytesPerSec ?? NaN, true],
];
const parity = [["measure", "best pair", "worst pair", "worst / best"]];
for (const [name, get, higher] of measures) {
  const sorted = [...runs].sort((a, b) => (higher ? get(b) - get(a) : get(a) - get(b)));
  const best = sorted[0]!;
  const worst = sorted.at(-1)!;
  const ratio = higher ? get(best) / get(worst) : get(worst) / get(best);
  parity.push([name, best.pair, worst.pair, f(ratio)]);
}
console.log("\nParity across runtime pairs (issue 18 aims at <= 2)");
console.log(table(parity));

if (blocking !== undefined) {
  const b = [[
    "condition",
    "transport",
    "p50 us",
    "mean us",
    "p99 us",
    "p50 / unix",
    "mean / unix",
    "p99 / unix",
    "quarters",
  ]];
  for (const { condition, figures } of blocking.results) {
    const unix = figures.unix!;
    for (const [k, d] of Object.entries(figures)) {
      const [lo, hi] = ratioRange(d.p99Parts, unix.p99Parts);
      b.push([
        condition,
        k,
        f(d.p50, 1),
        f(d.mean, 1),
        f(d.p99, 0),
        ...(["p50", "mean", "p99"] as const).map((m) => f(d[m] / unix[m])),
        k === "unix" ? "" : `${f(lo)}-${f(hi)}`,
      ]);
    }
  }
  console.log(
    "\nThe waiting path, node-node, 20 000 round trips per transport and condition (p99: the slowest 200): shm against " +
      "the Unix socket channel (issue 18 aims at <= 1 under load); quarters: the lowest and highest p99 / unix of the " +
      "run's four quarters (5000 round trips each), how far the p99 ratio moves within the run",
  );
  console.log(table(b));
}

// The chart and the data.
const versions = Object.assign({}, ...runs.map((r) => r.runtimes)) as Record<string, string>;
const onChart = (l: LatencyRow) =>
  l.transport === "shm 8 B" || (l.transport === "unix 8 B" && l.pair.split("-")[0] === l.pair.split("-")[1]) ||
  ((l.transport === "raw JS spin (floor)" || l.transport === "JS ring trySend (API floor)") && l.pair === "node-node");
const report: BenchReport = {
  date: new Date().toISOString().slice(0, 10),
  machine: await machineInfo(),
  runtimes: versions,
  latency: [...runs.flatMap((r) => r.latency.filter(onChart)), native.latency],
  throughput: [
    ...runs.flatMap((r) =>
      r.throughput.filter((x) =>
        (x.transport === "shm" &&
          (x.api === "batch, drain" || x.api === "trySend, drain" || x.api === "receiveInto" ||
            (r.pair === "node-node" && x.size === 64))) ||
        (x.transport === "JS ring (floor)" && r.pair === "node-node")
      )
    ),
    ...native.throughput,
  ],
  notes: [
    stolenNote(cpuAtStart, await cpuTimes()),
    "Round trips: await send + await receive, 8 bytes, default idle strategy; each timed (HdrHistogram).",
    "Payloads are copied out of the ring by the receiver (drain reads them in place); batches of 64. Cores not pinned.",
    ...runs.flatMap((r) => r.notes.filter((n) => n.includes("x the raw"))),
  ],
};
const svg = await renderChart(report);
await writeFile(`${root}/${OUT}.svg`, svg);
await writeFile(`${root}/${OUT}.json`, JSON.stringify({ ...report, blocking, runs }, null, 2) + "\n");
console.log(`\n${report.notes![0]}\nWrote ${OUT}.svg and ${OUT}.json`);
