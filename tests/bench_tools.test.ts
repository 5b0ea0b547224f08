/**
 * The benchmarks' tools (issue 18, target 6): the chart drawn from a report (`bench/chart.ts`, `bench/report.ts`)
 * and the native floor, the C ring built and run from any runtime (`bench/native_floor.ts`). No figure is checked
 * against a bound: the machine is loaded, so only the shape of what comes back is.
 */
import { test } from "node:test";
import { takesSharedChecks } from "./helpers/runners.ts";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { renderChart } from "../bench/chart.ts";
import { type BenchReport, checkReport, machineInfo } from "../bench/report.ts";
import { nativeFloor, nativeFloorRows, nativeRingBinary, runToEnd } from "../bench/native_floor.ts";
import { JS_RING_CAPACITY, JS_RING_SEGMENT, JsRing } from "../bench/js_ring.ts";
import { RING_AT, TURNS_SEGMENT } from "../bench/ring_turns_layout.ts";
import { Ring } from "../shm/ring.ts";
import { Latency, ratioRange } from "../bench/stats.ts";
import { cpuTimes, parseCpuTimes, stolen, stolenNote } from "../bench/steal.ts";
import { type ChildProcess, runtime, runtimeArgv } from "../mod.ts";
import { delay } from "../async/mod.ts";

const REPORT: BenchReport = {
  date: "2026-12-06",
  machine: { cpu: "Test CPU 9000", cores: 2, memoryGiB: 23.5, kernel: "6.1.0-test" },
  runtimes: { deno: "2.9.6", bun: "1.4.5", node: "20.19.0" },
  latency: [
    { transport: "shm", pair: "node-bun", p50: 0.83, p99: 2.1, p999: 40, max: 460, count: 100_000 },
    { transport: "raw JS spin (floor)", pair: "node-bun", p50: 0.21, count: 200_000 },
    { transport: "unix", pair: "deno-deno", p50: 59, p99: 120, p999: 400, max: 2000, count: 5000 },
    { transport: "C ring (floor)", pair: "C", p50: 0.19, p99: 9.6, p999: 19.9, max: 5359, count: 200_000 },
  ],
  throughput: [
    { transport: "shm", api: "trySend", pair: "node-bun", size: 64, msgsPerSec: 14.6e6, bytesPerSec: 934e6 },
    { transport: "shm", api: "await send", pair: "bun-bun", size: 64, msgsPerSec: 2.6e6, bytesPerSec: 166e6 },
    { transport: "C ring (floor)", api: "batch of 64", pair: "C", size: 64, msgsPerSec: 147e6, bytesPerSec: 9.4e9 },
    { transport: "shm", api: "trySend", pair: "node-bun", size: 65536, msgsPerSec: 9000, bytesPerSec: 0.59e9 },
    { transport: "C ring (floor)", pair: "C", size: 65536, msgsPerSec: 653_000, bytesPerSec: 42.8e9 },
  ],
  notes: ["not pinned; payload touched"],
};

/** The text of an SVG with its markup stripped and its entities decoded: what a reader sees. */
function visibleText(svg: string): string {
  return svg.replace(/<[^>]*>/g, "\n").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"')
    .replace(/&#39;|&apos;/g, "'").replace(/&amp;/g, "&");
}

/** Fails unless every tag of `svg` is closed in order (a small well-formedness check: no XML parser in all three). */
function assertBalanced(svg: string): void {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([A-Za-z][\w:.-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    if (selfClosing) continue;
    if (closing) assert.equal(stack.pop(), name, `</${name}> closes the tag that is open`);
    else stack.push(name!);
  }
  assert.deepEqual(stack, [], "every tag is closed");
  assert.doesNotMatch(svg.replace(/<(?:[^>"']|"[^"]*"|'[^']*')*>/g, ""), /[<>]/, "no stray angle bracket in text");
}

test("renderChart draws a standalone SVG with the date, the machine, every row and the axis units", async () => {
  const svg = await renderChart(REPORT);
  assert.match(svg, /^<svg[\s>]/);
  assert.match(svg.trimEnd(), /<\/svg>$/);
  assertBalanced(svg);
  assert.doesNotMatch(svg, /<script|<image|@import|url\(|<foreignObject/i, "nothing is fetched or run");
  const text = visibleText(svg);
  for (const s of ["2026-12-06", "Test CPU 9000", "2 cores", "23.5 GiB", "6.1.0-test", "node 20.19.0", "bun 1.4.5"]) {
    assert.ok(text.includes(s), `the title has ${s}`);
  }
  assert.ok(text.includes("not pinned; payload touched"), "the notes are shown");
  for (const r of REPORT.latency) assert.ok(text.includes(`${r.transport} · ${r.pair}`), `latency row ${r.transport}`);
  for (const r of REPORT.throughput) {
    const label = `${r.transport}${r.api ? ` (${r.api})` : ""} · ${r.pair}`;
    assert.ok(text.includes(label), `throughput row ${label}`);
  }
  for (const unit of ["µs", "M msg/s", "GB/s", "64 B", "64 KiB"]) assert.ok(text.includes(unit), `axis unit ${unit}`);
  const width = Number(svg.match(/^<svg[^>]*\swidth="(\d+(?:\.\d+)?)"/)?.[1]);
  assert.ok(width > 400 && width <= 1000, `readable at about 900 px (width ${width})`);
});

test("renderChart draws a report with only latency rows, or only throughput rows", async () => {
  const latencyOnly = await renderChart({ ...REPORT, throughput: [] });
  assert.ok(visibleText(latencyOnly).includes("µs") && !visibleText(latencyOnly).includes("GB/s"));
  const throughputOnly = await renderChart({ ...REPORT, latency: [] });
  assert.ok(visibleText(throughputOnly).includes("GB/s") && !visibleText(throughputOnly).includes("round trip"));
});

test("renderChart escapes labels: any transport and pair names come out as text, the SVG stays well formed", async () => {
  const seed = Date.now() % 2 ** 31;
  console.log(`renderChart escaping property: fast-check seed ${seed}`);
  const name = fc.string({ minLength: 1, maxLength: 10, unit: fc.constantFrom(..."ab<>&\"' é·-") })
    // SVG text collapses runs of spaces and trims them at the ends: names here have none, so they show as written.
    .filter((s) => s.trim() === s && s !== "" && !s.includes("  "));
  await fc.assert(
    fc.asyncProperty(name, name, fc.double({ min: 0.01, max: 1e5, noNaN: true }), async (transport, pair, p50) => {
      const svg = await renderChart({
        ...REPORT,
        latency: [{ transport, pair, p50, count: 1 }],
        throughput: [{ transport, pair, size: 64, msgsPerSec: p50 * 1e6, bytesPerSec: p50 * 64e6 }],
      });
      assertBalanced(svg);
      assert.ok(visibleText(svg).includes(`${transport} · ${pair}`), "the label is there, as written");
    }),
    { numRuns: 12, seed },
  );
});

test("renderChart refuses an empty or malformed report with a TypeError that names the field", async () => {
  const cases: [unknown, RegExp][] = [
    [null, /it is not an object/],
    [{ ...REPORT, latency: [], throughput: [] }, /no latency and no throughput rows/],
    [{ ...REPORT, date: "" }, /date/],
    [{ ...REPORT, machine: undefined }, /machine is missing/],
    [{ ...REPORT, runtimes: { node: 20 } }, /runtimes/],
    [{ ...REPORT, latency: "x" }, /latency and throughput must be arrays/],
    [{ ...REPORT, latency: [{ ...REPORT.latency[0], p50: -1 }] }, /latency\[0\]\.p50/],
    [{ ...REPORT, latency: [{ ...REPORT.latency[0], p99: NaN }] }, /latency\[0\]\.p99/],
    [{ ...REPORT, latency: [{ ...REPORT.latency[0], p50: 5, p99: 2 }] }, /latency\[0\]\.p99 is below/],
    [{ ...REPORT, latency: [{ ...REPORT.latency[0], pair: "" }] }, /latency\[0\]\.transport and \.pair/],
    [{ ...REPORT, throughput: [{ ...REPORT.throughput[1], msgsPerSec: Infinity }] }, /throughput\[0\]\.msgsPerSec/],
    [{ ...REPORT, throughput: [{ ...REPORT.throughput[1], api: "" }] }, /throughput\[0\]\.api/],
    [{ ...REPORT, notes: [1] }, /notes/],
  ];
  for (const [report, detail] of cases) {
    await assert.rejects(renderChart(report as BenchReport), (e: Error) => {
      assert.ok(e instanceof TypeError, `a TypeError for ${detail}`);
      assert.match(e.message, /^Cannot use the benchmark report: /);
      assert.match(e.message, detail);
      assert.doesNotMatch(e.message, /\.$/, "no final period");
      return true;
    });
  }
  assert.doesNotThrow(() => checkReport(REPORT));
});

// Positions are bytes modulo 2^32 as Int32s: from 0, and across 2^31 (where they turn negative) and 2^32 (back to 0).
for (const start of [0, 2 ** 31 - (20 << 20), -(20 << 20)]) {
  test(`the JS ring delivers every message whole and in order, single or in batches, through wrap-around and a full ring (from position ${start})`, () => {
    const buffer = new SharedArrayBuffer(JS_RING_SEGMENT);
    const parent = JsRing.ends(buffer, 0, start);
    const peer = JsRing.ends(buffer, 1, start);
    // Message k of n bytes: byte j is (31k + j) mod 256, a slice of one pattern (a byte at a time was most of the
    // file's time).
    const pattern = new Uint8Array(256 + 65_536).map((_, j) => j & 255);
    const message = (k: number, n: number) => pattern.slice((k * 31) & 255, ((k * 31) & 255) + n);
    const sizes = [0, 1, 8, 15, 16, 17, 64, 1000, 65_536];
    let sent = 0;
    let got = 0;
    const sum = new Float64Array(1);
    // Several laps of the ring: sends until it is full (the send says so), then takes all, by receive() or drain().
    for (let lap = 0; lap < 40; lap++) {
      const before = sent;
      for (;;) {
        const n = sizes[sent % sizes.length]!;
        const batch = lap % 2 === 0
          ? [message(sent, n)]
          : [message(sent, n), message(sent + 1, sizes[(sent + 1) % 9]!)];
        const ok = batch.length === 1 ? parent.out.send(batch[0]!) : parent.out.sendBatch(batch);
        if (!ok) break;
        sent += batch.length;
      }
      assert.ok(sent - before > 0 && (sent - before) * 8 < JS_RING_CAPACITY, `lap ${lap} sent ${sent - before}`);
      if (lap % 3 === 2) {
        const expected = Array.from({ length: sent - got }, (_, i) => message(got + i, sizes[(got + i) % 9]!));
        const want = expected.reduce((a, m) => a + (m.length > 0 ? m[0]! + m[m.length - 1]! : 0), 0);
        const before = sum[0]!;
        assert.equal(peer.in.drain(sum), sent - got);
        assert.equal(sum[0]! - before, want);
        got = sent;
      } else {
        for (; got < sent; got++) assert.deepEqual(peer.in.receive(), message(got, sizes[got % 9]!), `message ${got}`);
      }
      assert.equal(peer.in.receive(), undefined);
    }
    assert.ok(sent > 1000);
  });
}

test("machineInfo reads the CPU, cores, memory and kernel of this machine", async () => {
  const m = await machineInfo();
  assert.ok(m.cpu.length > 0 && m.cpu !== "unknown", `cpu ${m.cpu}`);
  assert.ok(Number.isInteger(m.cores) && m.cores >= 1, `cores ${m.cores}`);
  assert.ok(m.memoryGiB > 0, `memory ${m.memoryGiB}`);
  assert.match(m.kernel, /^\d+\.\d+/);
});

test("parseCpuTimes reads /proc/stat's cpu line: all ten columns' first eight summed, steal the eighth", () => {
  const stat = [
    "cpu  1463013 1477 267569 736249 1675 0 3445 14798 120 0",
    "cpu0 731000 700 133000 368000 800 0 1700 7400 60 0",
    "intr 123 4 5",
    "processes 243139",
  ].join("\n");
  assert.deepEqual(parseCpuTimes(stat), {
    total: 1463013 + 1477 + 267569 + 736249 + 1675 + 0 + 3445 + 14798,
    steal: 14798,
  });
  // Guest time is inside user and nice already: a guest column does not count twice.
  assert.equal(parseCpuTimes("cpu 1 1 1 1 1 1 1 1 50 50")!.total, 8);
  for (
    const garbage of ["", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3 4 5 6 7", "cpu 1 2 x 4 5 6 7 8", "cpu -1 2 3 4 5 6 7 8"]
  ) {
    assert.equal(parseCpuTimes(garbage), undefined, JSON.stringify(garbage));
  }
  const seed = Date.now() % 2 ** 31;
  console.log(`parseCpuTimes property: fast-check seed ${seed}`);
  fc.assert(
    fc.property(fc.array(fc.nat({ max: 2 ** 40 }), { minLength: 8, maxLength: 10 }), (fields) => {
      const t = parseCpuTimes(`cpu0 9 9 9 9 9 9 9 9\ncpu  ${fields.join(" ")}\nctxt 5`);
      assert.deepEqual(t, { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), steal: fields[7] });
    }),
    { numRuns: 50, seed },
  );
});

test("stolen is the share of CPU time stolen between two readings; a missing, stalled or reset one gives undefined", async () => {
  assert.equal(stolen({ total: 1000, steal: 10 }, { total: 3000, steal: 210 }), 0.1);
  assert.equal(stolen(undefined, { total: 3000, steal: 210 }), undefined);
  assert.equal(stolen({ total: 1000, steal: 10 }, undefined), undefined);
  assert.equal(stolen({ total: 1000, steal: 10 }, { total: 1000, steal: 10 }), undefined, "no time passed");
  assert.equal(stolen({ total: 1000, steal: 10 }, { total: 2000, steal: 5 }), undefined, "a counter went back");
  assert.match(stolenNote({ total: 0, steal: 0 }, { total: 400, steal: 50 }), /stolen .*: 12\.5 %/);
  assert.match(stolenNote(undefined, undefined), /unknown/);
  // This machine (Linux): two readings a moment apart.
  const before = await cpuTimes();
  await delay(50);
  const after = await cpuTimes();
  assert.ok(before && after, "/proc/stat has a cpu line");
  assert.ok(after.total >= before.total && after.steal >= before.steal);
  const share = stolen(before, after);
  assert.ok(share === undefined || (share >= 0 && share <= 1), `share ${share}`);
});

/** Why the native floor cannot be measured here, or undefined when `cc` is installed. */
function noCompiler(): string | undefined {
  try {
    execFileSync("cc", ["--version"], { stdio: "ignore" });
    return undefined;
  } catch {
    return "cc is not installed (the test preflight installs it)";
  }
}

test("nativeFloor builds the C ring, runs it with tiny counts and returns positive, ordered figures", {
  timeout: 60_000,
}, async (t) => {
  const why = noCompiler();
  if (why !== undefined) return void t.skip(why);
  const floor = await nativeFloor({ rounds: 500, messages: 2000, big: 20 });
  const r = floor.roundTrip8;
  assert.equal(r.count, 500);
  for (const [k, v] of Object.entries(r)) assert.ok(Number.isFinite(v) && v > 0, `roundTrip8.${k} = ${v}`);
  assert.ok(r.p50 <= r.p99 && r.p99 <= r.p999 && r.p999 <= r.max, `percentiles in order: ${JSON.stringify(r)}`);
  assert.equal(floor.oneWay64.count, 2000);
  assert.equal(floor.oneWay64Batch.batch, 64);
  assert.equal(floor.oneWay64K.count, 20);
  for (const x of [floor.oneWay64.msgsPerSec, floor.oneWay64Batch.msgsPerSec, floor.oneWay64K.bytesPerSec]) {
    assert.ok(Number.isFinite(x) && x > 0);
  }
  const perMessage = floor.oneWay64K.bytesPerSec / floor.oneWay64K.msgsPerSec;
  assert.ok(Math.abs(perMessage / 65536 - 1) < 1e-3, `64 KiB a message (${perMessage})`);
  assert.equal(floor.cpus, null);
  assert.equal(floor.sharedCore, false);
  // Its rows fit a report and the chart draws them.
  const rows = nativeFloorRows(floor);
  const svg = await renderChart({ ...REPORT, latency: [rows.latency], throughput: rows.throughput });
  assert.ok(visibleText(svg).includes("C ring (floor) (batch of 64) · C"));
});

test("nativeFloor pins both sides to one core when asked, and says so", { timeout: 60_000 }, async (t) => {
  const why = noCompiler();
  if (why !== undefined) return void t.skip(why);
  const floor = await nativeFloor({ rounds: 50, messages: 200, big: 2, cpus: [0, 0] });
  assert.deepEqual(floor.cpus, [0, 0]);
  assert.equal(floor.sharedCore, true);
  assert.ok(floor.roundTrip8.p50 > 0);
});

test("nativeFloor fails with a clear error: compiler message, missing source, missing compiler, bad CPU", {
  timeout: 60_000,
}, async (t) => {
  const why = noCompiler();
  if (why !== undefined) return void t.skip(why);
  const dir = mkdtempSync(join(tmpdir(), "ipckit-bench-tools-"));
  try {
    const broken = join(dir, "broken.c");
    writeFileSync(broken, "int main(void) { return undeclared_name; }\n");
    const clear = (detail: RegExp) => (e: Error) => {
      assert.match(e.message, /^Cannot measure the native floor: /);
      assert.match(e.message, detail);
      return true;
    };
    await assert.rejects(nativeFloor({ source: broken }), clear(/could not build .*broken\.c[\s\S]*undeclared_name/));
    await assert.rejects(nativeFloor({ source: join(dir, "absent.c") }), clear(/no readable source at .*absent\.c/));
    await assert.rejects(nativeFloor({ compiler: "ipckit-no-such-cc" }), clear(/"ipckit-no-such-cc" was not found/));
    await assert.rejects(
      nativeFloor({ rounds: 10, messages: 10, big: 1, cpus: [0, 1000] }),
      clear(/ring program failed \(exit status 1\): .*Cannot pin to a CPU: CPU 1000/),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(nativeFloor({ rounds: 0 }), RangeError);
  await assert.rejects(nativeFloor({ cpus: [0, -1] }), RangeError);
  await assert.rejects(nativeFloor({ timeout: 0 }), RangeError);
});

/** The state letter and parent pid of a process (from /proc/<pid>/stat), or undefined when it is gone. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: state!, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** The children of `pid`, waiting (up to 10 s) until it has one. */
async function childrenOf(pid: number): Promise<number[]> {
  for (const end = Date.now() + 10_000; Date.now() < end; await delay(10)) {
    const kids = readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number).filter((p) =>
      procStat(p)?.ppid === pid
    );
    if (kids.length > 0) return kids;
  }
  throw new Error(`Cannot find the children of ${pid}: none after 10 s`);
}

/** Waits (up to 10 s) until `pid` is gone or a zombie; true when it is. */
async function ended(pid: number): Promise<boolean> {
  for (const end = Date.now() + 10_000; Date.now() < end; await delay(10)) {
    const s = procStat(pid);
    if (s === undefined || s.state === "Z") return true;
  }
  return false;
}

/** Starts the ring on a run long enough to be interrupted (its parent is in the one-way run). */
async function longRing(): Promise<{ parent: ChildProcess; child: number; cleanup: () => Promise<void> }> {
  const rt = await runtime();
  const bin = await nativeRingBinary();
  const parent = rt.spawn([bin, "--rounds", "1", "--messages", "1000000000", "--big", "1"], {
    stdio: "null",
    stderr: "pipe",
  });
  const cleanup = async () => {
    parent.kill("SIGKILL");
    await parent.exited.catch(() => {});
  };
  try {
    const [child] = await childrenOf(parent.pid);
    return { parent, child: child!, cleanup };
  } catch (e) {
    await cleanup();
    throw e;
  }
}

// The C program's own behaviour does not depend on the runner that starts it: one runner checks it (runners.ts).
if (takesSharedChecks()) {
  test("the C ring's child dies with its parent (PR_SET_PDEATHSIG)", { timeout: 60_000 }, async (t) => {
    const why = noCompiler();
    if (why !== undefined) return void t.skip(why);
    const { parent, child, cleanup } = await longRing();
    try {
      parent.kill("SIGKILL");
      assert.equal((await parent.exited).signal, "SIGKILL");
      assert.ok(await ended(child), `the child ${child} ended with its parent`);
    } finally {
      await cleanup();
      if (!(await ended(child))) (await runtime()).kill(child, "SIGKILL");
    }
  });

  test("the C ring stops with a clear message when its child dies", { timeout: 60_000 }, async (t) => {
    const why = noCompiler();
    if (why !== undefined) return void t.skip(why);
    const { parent, child, cleanup } = await longRing();
    try {
      const stderr = (async () => {
        let text = "";
        for await (const c of parent.stderr!) text += new TextDecoder().decode(c);
        return text;
      })();
      (await runtime()).kill(child, "SIGKILL");
      assert.equal((await parent.exited).code, 1);
      assert.match(
        await stderr,
        /^ring: Cannot finish the run: the child process ended before the end of the run \(signal 9\)\n/,
      );
    } finally {
      await cleanup();
    }
  });
}

test("ratioRange pairs two runs' parts one by one: the lowest and highest ratio, and no pairing of unlike lists", () => {
  // Four quarters of two transports' round trips: one's p99 is twice the other's in one quarter, half in another.
  const shm = Array.from({ length: 4 }, () => new Latency());
  const unix = Array.from({ length: 4 }, () => new Latency());
  const slow = [10, 40, 10, 10]; // us: the p99 of each of shm's quarters
  const other = [10, 20, 20, 10];
  for (let q = 0; q < 4; q++) {
    for (let i = 0; i < 1000; i++) {
      shm[q]!.record(i < 980 ? 1 : slow[q]!);
      unix[q]!.record(i < 980 ? 1 : other[q]!);
    }
  }
  const [lo, hi] = ratioRange(shm.map((l) => l.summary().p99), unix.map((l) => l.summary().p99));
  assert.ok(Math.abs(lo - 0.5) < 0.01 && Math.abs(hi - 2) < 0.02, `range ${lo}-${hi}`);
  assert.deepEqual(ratioRange([3], [3]), [1, 1]);
  assert.throws(() => ratioRange([1, 2], [1]), RangeError);
  assert.throws(() => ratioRange([], []), RangeError);
});

test("Latency.encode/decode carry every sample to another process and add() sums two runs; garbage is a TypeError", () => {
  const fast = new Latency();
  const slow = new Latency();
  for (let i = 1; i <= 1000; i++) {
    fast.record(i / 100); // 0.01-10 us
    slow.record(100 + i / 100); // 100.01-110 us
  }
  const sum = Latency.decode(fast.encode());
  const { max, ...rest } = sum.summary();
  const { max: recordedMax, ...recorded } = fast.summary();
  assert.deepEqual(rest, recorded, "decoded as it was recorded");
  assert.ok(
    Math.abs(max / recordedMax - 1) < 1e-3,
    `max ${max} against ${recordedMax}: within the histogram's 3 digits`,
  );
  sum.add(Latency.decode(slow.encode()));
  const d = sum.summary();
  assert.equal(d.count, 2000);
  assert.ok(d.p50 > 9.9 && d.p50 < 10.1, `p50 ${d.p50}: the slowest of the fast half`);
  assert.ok(d.p99 > 109 && d.p99 < 110.1, `p99 ${d.p99}`);
  assert.ok(Math.abs(d.mean - (fast.summary().mean + slow.summary().mean) / 2) < 0.1, `mean ${d.mean}`);
  for (const bad of ["", "garbage", "HISTFAAAAB"]) {
    assert.throws(() => Latency.decode(bad), /^TypeError: Cannot decode a latency histogram/, JSON.stringify(bad));
  }
});

test(
  "bench/shm_blocking.ts's driver times every transport, made in the turned order, and prints each one's histograms",
  {
    timeout: 180_000,
  },
  async () => {
    const rt = await runtime();
    const script = rt.fromFileUrl(new URL("../bench/shm_blocking.ts", import.meta.url));
    const argv = [...runtimeArgv(rt.name, script), "--driver", "--turn", "1", "--rounds", "80", "--warm", "20"];
    const out = await runToEnd(rt, [...argv, "--idle", "spin-then-park,park"], 150_000, "the driver");
    assert.equal(out.code, 0, out.stderr);
    const printed = JSON.parse(out.stdout.trim().split("\n").at(-1)!) as Record<
      string,
      { all: string; parts: string[] }
    >;
    assert.deepEqual(Object.keys(printed), ["shm park", "unix", "shm spin-then-park"], "made from the second one on");
    for (const [transport, { all, parts }] of Object.entries(printed)) {
      assert.equal(Latency.decode(all).summary().count, 80, transport);
      const counts = parts.map((p) => Latency.decode(p).summary().count);
      assert.equal(counts.length, 4, transport);
      assert.ok(counts.every((n) => n > 0), `${transport}: every quarter timed round trips (${counts})`);
      assert.equal(counts.reduce((a, b) => a + b), 80, transport);
    }
  },
);

test("the JS ring and the ring's own writer can take turns on one ring (bench/ring_turns.ts): its reader gets every message whole and in order, through wrap-around", () => {
  const buffer = new SharedArrayBuffer(TURNS_SEGMENT);
  Ring.init(buffer, RING_AT, JS_RING_CAPACITY);
  const reader = Ring.attach(buffer, RING_AT);
  const js = new JsRing(buffer, RING_AT);
  const message = (k: number) => new Uint8Array(1 + (k % 300)).map((_, j) => (k * 7 + j) & 255);
  let sent = 0;
  let got = 0;
  // Turns of a few thousand messages each, the reader taking them after every turn: more than six laps of the ring.
  for (let turn = 0; turn < 40; turn++) {
    const writer = turn % 2 === 0 ? Ring.attach(buffer, RING_AT) : undefined;
    if (writer === undefined) js.resume();
    for (let i = 0; i < 5000; i++, sent++) {
      assert.equal(writer ? writer.tryWrite(message(sent)) : js.send(message(sent)), true, `message ${sent}`);
    }
    for (let m = reader.tryRead(); m !== undefined; m = reader.tryRead(), got++) {
      assert.deepEqual(m, message(got), `message ${got}`);
    }
    assert.equal(got, sent);
  }
  assert.ok(sent * 160 > 6 * JS_RING_CAPACITY, "the ring wrapped around several times");
});
