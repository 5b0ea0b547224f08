/**
 * The native floor of the shared-memory channel: builds `bench/native/ring.c` with the system's C compiler (once
 * per source hash, cached in `node_modules/.cache/ipckit-bench/`), runs it, and returns what it measured, so that
 * a benchmark can print each of its figures as a ratio to the C ring's in the same run. Runs unchanged on Deno,
 * Bun and Node: everything goes through ipckit's runtime API.
 *
 * @example
 * ```ts
 * import { nativeFloor, nativeFloorRows } from "./native_floor.ts";
 *
 * const floor = await nativeFloor({ rounds: 1000, messages: 10000, big: 100 });
 * console.log(`C ring: 8 B round trip p50 ${floor.roundTrip8.p50} us, 64 B ${floor.oneWay64.msgsPerSec} msg/s`);
 * const { latency, throughput } = nativeFloorRows(floor); // rows for a BenchReport
 * ```
 *
 * @module
 */
import { type Runtime, runtime } from "../mod.ts";
import { within } from "../async/mod.ts";
import { packageRoot } from "../runtimes/argv.ts";
import type { LatencyRow, NativeFloor, ThroughputRow } from "./report.ts";

/** What to measure and how; every count has a default sized for about a second or two in all. */
export interface NativeFloorOptions {
  /** 8-byte round trips to time (default 200 000). */
  rounds?: number;
  /** 64-byte messages per one-way run (default 20 000 000). */
  messages?: number;
  /** 64 KiB messages in the big one-way run (default 100 000). */
  big?: number;
  /** CPUs to pin the two processes to; the same twice shares one core. Not pinned by default. */
  cpus?: [number, number];
  /** The C source to build (default `bench/native/ring.c`). */
  source?: string;
  /** The C compiler to build it with (default `cc`). */
  compiler?: string;
  /** How long the build and the run may each take, in milliseconds (default 120 000). */
  timeout?: number;
}

const FLAGS = ["-O2", "-std=c11", "-D_GNU_SOURCE"];
const FAIL = "Cannot measure the native floor";

/**
 * Builds (when needed) and runs the C ring, and returns its figures.
 *
 * @throws {RangeError} when a count, the CPUs or the timeout are not positive integers (CPUs: non-negative).
 * @throws {Error} `Cannot measure the native floor: ...` when the compiler is missing, the source cannot be read
 *   or does not build (with the compiler's message), or the program fails or prints something unexpected.
 * @example
 * ```ts
 * const floor = await nativeFloor({ rounds: 1000, messages: 10000, big: 100, cpus: [0, 1] });
 * console.log(floor.roundTrip8.p50, floor.oneWay64K.bytesPerSec / 1e9);
 * ```
 */
export async function nativeFloor(options: NativeFloorOptions = {}): Promise<NativeFloor> {
  const args: string[] = [];
  for (const key of ["rounds", "messages", "big"] as const) {
    const v = options[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 1 || v > 1e9) {
      throw new RangeError(`Cannot use ${key} ${v}: it must be an integer from 1 to 10^9`);
    }
    args.push(`--${key}`, String(v));
  }
  if (options.cpus !== undefined) {
    const c = options.cpus;
    if (!Array.isArray(c) || c.length !== 2 || !c.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      throw new RangeError(`Cannot pin to CPUs ${JSON.stringify(c)}: give two CPU numbers (>= 0)`);
    }
    args.push("--cpu", `${c[0]},${c[1]}`);
  }
  const timeout = options.timeout ?? 120_000;
  if (!Number.isSafeInteger(timeout) || timeout < 1) {
    throw new RangeError(`Cannot use timeout ${timeout}: it must be a positive integer of milliseconds`);
  }
  const rt = await runtime();
  const binary = await nativeRingBinary(options);
  const out = await runToEnd(rt, [binary, ...args], timeout, "the ring program");
  if (out.code !== 0) {
    throw new Error(`${FAIL}: the ring program failed (${exitText(out)}): ${out.stderr.trim() || "no message"}`);
  }
  return parseFloor(out.stdout);
}

/**
 * The path of the built C ring, building it first unless a build of the same source, compiler and flags is in the
 * cache: for running it by hand (`taskset`, `perf stat`) or with arguments `nativeFloor` does not offer.
 *
 * @throws {Error} `Cannot measure the native floor: ...` when the compiler is missing or the source cannot be read
 *   or does not build (with the compiler's message).
 * @example
 * ```ts
 * const ring = await nativeRingBinary();
 * console.log(`run it by hand: taskset -c 0 ${ring} --rounds 1000`);
 * ```
 */
export async function nativeRingBinary(
  options: Pick<NativeFloorOptions, "source" | "compiler" | "timeout"> = {},
): Promise<string> {
  const timeout = options.timeout ?? 120_000;
  if (!Number.isSafeInteger(timeout) || timeout < 1) {
    throw new RangeError(`Cannot use timeout ${timeout}: it must be a positive integer of milliseconds`);
  }
  const rt = await runtime();
  const source = options.source ?? rt.fromFileUrl(new URL("./native/ring.c", import.meta.url));
  return await build(rt, source, { compiler: options.compiler ?? "cc", timeout });
}

/**
 * The floor as rows of a {@linkcode BenchReport}: the round trip as transport `"C ring (floor)"`, pair `"C"`, and
 * its three one-way runs (64 B published each, 64 B in batches, 64 KiB).
 *
 * @example
 * ```ts
 * const rows = nativeFloorRows(await nativeFloor({ rounds: 1000, messages: 10000, big: 100 }));
 * const latency = [rows.latency]; // beside the channels' rows of a BenchReport
 * const throughput = [...rows.throughput];
 * console.log(latency[0]?.p50, throughput.length); // e.g. 0.19 3
 * ```
 */
export function nativeFloorRows(floor: NativeFloor): { latency: LatencyRow; throughput: ThroughputRow[] } {
  const transport = "C ring (floor)";
  const pair = "C";
  const { count, p50, p99, p999, max } = floor.roundTrip8;
  const b = floor.oneWay64Batch;
  return {
    latency: { transport, pair, p50, p99, p999, max, count },
    throughput: [
      {
        transport,
        api: "publish each",
        pair,
        size: 64,
        msgsPerSec: floor.oneWay64.msgsPerSec,
        bytesPerSec: floor.oneWay64.msgsPerSec * 64,
      },
      {
        transport,
        api: `batch of ${b.batch}`,
        pair,
        size: 64,
        msgsPerSec: b.msgsPerSec,
        bytesPerSec: b.msgsPerSec * 64,
      },
      { transport, api: "publish each", pair, size: 65536, ...pick(floor.oneWay64K) },
    ],
  };
}

const pick = ({ msgsPerSec, bytesPerSec }: { msgsPerSec: number; bytesPerSec: number }) => ({
  msgsPerSec,
  bytesPerSec,
});

/** Compiles `source` into the cache unless a build of the same source, compiler and flags is there; its path. */
async function build(rt: Runtime, source: string, o: { compiler: string; timeout: number }): Promise<string> {
  let code: string;
  try {
    code = await rt.readTextFile(source);
  } catch (e) {
    throw new Error(`${FAIL}: no readable source at ${source} (${(e as Error).message})`);
  }
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode([o.compiler, ...FLAGS, code].join("\0")),
  );
  const hash = [...new Uint8Array(digest).slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = `${packageRoot(import.meta.url)}/node_modules/.cache/ipckit-bench`;
  const binary = `${dir}/ring-${hash}`;
  if ((await rt.fileInfo(binary))?.type === "file") return binary;
  // The runtime API has no mkdir or rename: the system's tools do it. The build goes to a name of this process's
  // own and is renamed into place, so runners building at the same time never run a half-written binary.
  const mkdir = await runToEnd(rt, ["mkdir", "-p", dir], o.timeout, "mkdir");
  if (mkdir.code !== 0) throw new Error(`${FAIL}: cannot make the cache directory ${dir}: ${mkdir.stderr.trim()}`);
  const partial = `${binary}.${rt.pid}.tmp`;
  let cc: Output;
  try {
    cc = await runToEnd(rt, [o.compiler, ...FLAGS, "-o", partial, source], o.timeout, `the C compiler "${o.compiler}"`);
  } catch (e) {
    if ((e as Error).name === "NotFoundError") {
      throw new Error(`${FAIL}: the C compiler "${o.compiler}" was not found (install cc, e.g. gcc or clang)`);
    }
    throw e;
  }
  if (cc.code !== 0) {
    await rt.removeFile(partial).catch(() => {});
    throw new Error(`${FAIL}: ${o.compiler} could not build ${source} (${exitText(cc)}):\n${cc.stderr.trim()}`);
  }
  const mv = await runToEnd(rt, ["mv", "-f", partial, binary], o.timeout, "mv");
  if (mv.code !== 0) throw new Error(`${FAIL}: cannot move the build into ${binary}: ${mv.stderr.trim()}`);
  // Builds of older sources are of no more use: the cache keeps one.
  for (const name of await rt.readDir(dir).catch(() => [])) {
    if (/^ring-[0-9a-f]{16}$/.test(name) && `${dir}/${name}` !== binary) {
      await rt.removeFile(`${dir}/${name}`).catch(() => {});
    }
  }
  return binary;
}

export interface Output {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

const exitText = (o: Output) => (o.code === null ? `killed by ${o.signal}` : `exit status ${o.code}`);

/** Runs `argv` to the end and collects its output; kills it after `timeout` ms. */
export async function runToEnd(rt: Runtime, argv: string[], timeout: number, what: string): Promise<Output> {
  const child = rt.spawn(argv, { stdio: "pipe", stderr: "pipe" });
  const chunks: Uint8Array[] = [];
  const stdout = new Promise<void>((resolve) => {
    const io = child.stdio;
    if (io === null) return resolve();
    io.start({
      data: (c) => void chunks.push(io.ownsChunks ? c : c.slice()),
      end: () => resolve(),
    });
  });
  const stderr = (async () => {
    const parts: Uint8Array[] = [];
    if (child.stderr !== null) { for await (const c of child.stderr) parts.push(c.slice()); }
    return text(parts);
  })().catch(() => "");
  try {
    if (!(await within(child.exited, timeout))) {
      child.kill("SIGKILL");
      await child.exited.catch(() => {});
      throw new Error(`${FAIL}: ${what} did not finish in ${timeout} ms`);
    }
    const status = await child.exited; // rejects (NotFoundError) when the program does not exist
    // The pipes end with the process; a grandchild holding them open must not hang the caller.
    await within(stdout, 5000);
    const message = (await within(stderr, 5000)) ? await stderr : "";
    return { code: status.code, signal: status.signal, stdout: text(chunks), stderr: message };
  } finally {
    child.stdio?.close();
  }
}

function text(parts: Uint8Array[]): string {
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, (at += p.length) - p.length);
  return new TextDecoder().decode(all);
}

/** Parses and checks the program's one line of JSON. */
function parseFloor(stdout: string): NativeFloor {
  const line = stdout.trim().split("\n").pop() ?? "";
  const bad = (why: string): never => {
    throw new Error(
      `${FAIL}: the ring program printed unexpected output (${why}): ${JSON.stringify(line.slice(0, 200))}`,
    );
  };
  let x: Record<string, Record<string, unknown>>;
  try {
    x = JSON.parse(line);
  } catch {
    return bad("not JSON");
  }
  const num = (o: Record<string, unknown> | undefined, k: string) => {
    const v = o?.[k];
    return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : bad(`${k} is not a positive number`);
  };
  if (typeof x !== "object" || x === null) return bad("not an object");
  const rt = x.roundTrip8;
  const [count, p50, p99, p999, max, mean] = ["count", "p50", "p99", "p999", "max", "mean"].map((k) => num(rt, k));
  if (!(p50! <= p99! && p99! <= p999! && p999! <= max!)) bad("percentiles out of order");
  const cpus = x.cpus as unknown;
  return {
    roundTrip8: { count: count!, p50: p50!, p99: p99!, p999: p999!, max: max!, mean: mean! },
    oneWay64: { count: num(x.oneWay64, "count"), msgsPerSec: num(x.oneWay64, "msgsPerSec") },
    oneWay64Batch: {
      count: num(x.oneWay64Batch, "count"),
      batch: num(x.oneWay64Batch, "batch"),
      msgsPerSec: num(x.oneWay64Batch, "msgsPerSec"),
    },
    oneWay64K: {
      count: num(x.oneWay64K, "count"),
      msgsPerSec: num(x.oneWay64K, "msgsPerSec"),
      bytesPerSec: num(x.oneWay64K, "bytesPerSec"),
    },
    cpus: Array.isArray(cpus) && cpus.length === 2 ? [Number(cpus[0]), Number(cpus[1])] : null,
    sharedCore: (x as Record<string, unknown>).sharedCore === true,
  };
}
