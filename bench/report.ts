/**
 * What one benchmark run found, as data: the machine, the runtimes, latency distributions and one-way throughput
 * per transport and runtime pair. `bench/shm.ts` fills a {@linkcode BenchReport} as it measures; `bench/chart.ts`
 * draws it; `bench/native_floor.ts` adds the C ring's rows. Kept apart from both so that neither depends on the
 * other's details.
 *
 * @example
 * ```ts
 * import { checkReport, machineInfo, type BenchReport } from "./report.ts";
 *
 * const report: BenchReport = {
 *   date: new Date().toISOString().slice(0, 10),
 *   machine: await machineInfo(),
 *   runtimes: { node: "20.19.0" },
 *   latency: [{ transport: "shm", pair: "node-node", p50: 0.83, p99: 2.1, p999: 40, max: 460, count: 100000 }],
 *   throughput: [{ transport: "shm", api: "trySend", pair: "node-node", size: 64, msgsPerSec: 14.6e6, bytesPerSec: 934e6 }],
 * };
 * checkReport(report);
 * ```
 *
 * @module
 */
import { runtime } from "../mod.ts";
import type { Distribution } from "./stats.ts";

/** The machine a run was measured on. */
export interface Machine {
  /** The CPU model, as /proc/cpuinfo names it. */
  readonly cpu: string;
  /** Logical CPUs. */
  readonly cores: number;
  /** Total memory in GiB (one decimal). */
  readonly memoryGiB: number;
  /** The kernel release (`uname -r`). */
  readonly kernel: string;
}

/**
 * One latency distribution, in microseconds: a round trip over one transport between one pair of runtimes.
 * Where only a typical figure is known (a mean of a tight loop, such as the raw spin floor), give `p50` alone: the
 * chart draws the percentiles that are there.
 */
export interface LatencyRow {
  /** What carries the messages: `"shm"`, `"unix"`, `"C ring (floor)"`, `"raw JS spin (floor)"`... */
  readonly transport: string;
  /** The two sides, `"node-bun"` (parent-peer), or `"C"` for the native floor. */
  readonly pair: string;
  readonly p50: number;
  readonly p99?: number | undefined;
  readonly p999?: number | undefined;
  readonly max?: number | undefined;
  /** Samples behind the figures. */
  readonly count: number;
}

/** One-way throughput of one message size over one transport (and API) between one pair of runtimes. */
export interface ThroughputRow {
  readonly transport: string;
  /** How messages were sent, when it matters: `"await send"`, `"trySend"`, `"sendMany"`, `"batch of 64"`... */
  readonly api?: string | undefined;
  readonly pair: string;
  /** Message size in bytes (64 and 65536 in `bench/shm.ts`). */
  readonly size: number;
  readonly msgsPerSec: number;
  readonly bytesPerSec: number;
}

/** Everything the chart shows, from one run. */
export interface BenchReport {
  /** The day of the run, `YYYY-MM-DD` (or a full ISO timestamp). */
  readonly date: string;
  readonly machine: Machine;
  /** Runtime name to version, e.g. `{ node: "20.19.0", deno: "2.9.6" }`. */
  readonly runtimes: Readonly<Record<string, string>>;
  readonly latency: readonly LatencyRow[];
  readonly throughput: readonly ThroughputRow[];
  /** Lines printed under the chart (pinning, load, what was touched). */
  readonly notes?: readonly string[] | undefined;
}

/** What the C ring (`bench/native/ring.c`) measured in one run: the native floor of the shm channel. */
export interface NativeFloor {
  /** 8-byte round trips, each timed, in microseconds (nearest-rank percentiles of the sorted samples). */
  readonly roundTrip8: Distribution;
  /** 64-byte messages one way, each published on its own. */
  readonly oneWay64: { readonly count: number; readonly msgsPerSec: number };
  /** 64-byte messages one way, published once per `batch`. */
  readonly oneWay64Batch: { readonly count: number; readonly batch: number; readonly msgsPerSec: number };
  /** 64 KiB messages one way, the consumer copying each out. */
  readonly oneWay64K: { readonly count: number; readonly msgsPerSec: number; readonly bytesPerSec: number };
  /** The CPUs the parent and the child were pinned to, or null when not pinned. */
  readonly cpus: readonly [number, number] | null;
  /** Whether both sides ran on one CPU. */
  readonly sharedCore: boolean;
}

/**
 * The machine this process runs on, from /proc/cpuinfo, /proc/meminfo and /proc/sys/kernel/osrelease (Linux).
 * A field the files do not give is `"unknown"` (or 0), so a report can still be drawn.
 *
 * @example
 * ```ts
 * const m = await machineInfo();
 * console.log(`${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Linux ${m.kernel}`);
 * ```
 */
export async function machineInfo(): Promise<Machine> {
  const rt = await runtime();
  const read = (path: string) => rt.readTextFile(path).catch(() => "");
  const [cpuinfo, meminfo, release] = await Promise.all([
    read("/proc/cpuinfo"),
    read("/proc/meminfo"),
    read("/proc/sys/kernel/osrelease"),
  ]);
  // x86 says "model name"; arm64 kernels often give only "CPU implementer"/"CPU part", or a "Hardware" line.
  const field = (name: string) => cpuinfo.match(new RegExp(`^${name}\\s*:\\s*(.+)$`, "m"))?.[1]?.trim();
  const cpu = field("model name") ?? field("Hardware") ?? field("Model") ?? "unknown";
  const cores = cpuinfo.match(/^processor\s*:/gm)?.length ?? 0;
  const kib = Number(meminfo.match(/^MemTotal:\s*(\d+)\s*kB/m)?.[1] ?? 0);
  return {
    cpu: cpu.replace(/\s+/g, " "),
    cores,
    memoryGiB: Math.round((kib / 1024 / 1024) * 10) / 10,
    kernel: release.trim() || "unknown",
  };
}

const positive = (x: unknown): x is number => typeof x === "number" && Number.isFinite(x) && x > 0;
const text = (x: unknown): x is string => typeof x === "string" && x.trim() !== "";

/**
 * Checks that `report` is a {@linkcode BenchReport} a chart can be drawn from: a date, a machine, at least one
 * latency or throughput row, every figure a positive finite number, percentiles in order.
 *
 * @throws {TypeError} naming the first field that is wrong.
 * @example
 * ```ts
 * try {
 *   checkReport({});
 * } catch (e) {
 *   console.log((e as Error).message); // Cannot use the benchmark report: date must be a non-empty string
 * }
 * ```
 */
export function checkReport(report: unknown): asserts report is BenchReport {
  const fail = (what: string): never => {
    throw new TypeError(`Cannot use the benchmark report: ${what}`);
  };
  if (typeof report !== "object" || report === null) fail("it is not an object");
  const r = report as Record<string, unknown>;
  if (!text(r.date)) fail("date must be a non-empty string");
  const m = r.machine as Record<string, unknown> | undefined;
  if (typeof m !== "object" || m === null) fail("machine is missing");
  if (!text(m!.cpu) || !text(m!.kernel)) fail("machine.cpu and machine.kernel must be non-empty strings");
  if (typeof m!.cores !== "number" || typeof m!.memoryGiB !== "number") {
    fail("machine.cores and machine.memoryGiB must be numbers");
  }
  const rts = r.runtimes;
  if (typeof rts !== "object" || rts === null || Object.values(rts).some((v) => typeof v !== "string")) {
    fail("runtimes must map runtime names to version strings");
  }
  if (!Array.isArray(r.latency) || !Array.isArray(r.throughput)) fail("latency and throughput must be arrays");
  const latency = r.latency as unknown[];
  const throughput = r.throughput as unknown[];
  if (latency.length === 0 && throughput.length === 0) fail("it has no latency and no throughput rows");
  latency.forEach((row, i) => {
    const x = (row ?? {}) as Record<string, unknown>;
    const at = `latency[${i}]`;
    if (!text(x.transport) || !text(x.pair)) fail(`${at}.transport and .pair must be non-empty strings`);
    if (!positive(x.p50)) fail(`${at}.p50 must be a positive finite number of microseconds`);
    let last = x.p50 as number;
    for (const k of ["p99", "p999", "max"]) {
      if (x[k] === undefined) continue;
      if (!positive(x[k])) fail(`${at}.${k} must be a positive finite number of microseconds`);
      if ((x[k] as number) < last) fail(`${at}.${k} is below a lower percentile`);
      last = x[k] as number;
    }
    if (!positive(x.count)) fail(`${at}.count must be a positive number`);
  });
  throughput.forEach((row, i) => {
    const x = (row ?? {}) as Record<string, unknown>;
    const at = `throughput[${i}]`;
    if (!text(x.transport) || !text(x.pair)) fail(`${at}.transport and .pair must be non-empty strings`);
    if (x.api !== undefined && !text(x.api)) fail(`${at}.api must be a non-empty string when given`);
    for (const k of ["size", "msgsPerSec", "bytesPerSec"]) {
      if (!positive(x[k])) fail(`${at}.${k} must be a positive finite number`);
    }
  });
  if (r.notes !== undefined && (!Array.isArray(r.notes) || r.notes.some((n) => typeof n !== "string"))) {
    fail("notes must be an array of strings");
  }
}
