#!/usr/bin/env node
// Runs the one test suite on Node, Deno and Bun and ends with one plain line "N passed, N failed" summing the
// three. Exits non-zero if anything failed.
//
//   npm test                              all three runtimes, all tests
//   npm test -- --only deno,bun           some runtimes
//   npm test -- tests/unix.test.ts        some files
//   npm test -- --jobs 2                  at most 2 test files at once (default: IPCKIT_TEST_JOBS, else 2 per core)
//   npm test -- --verbose                 every file's whole output, not only the failing ones'
//   IPCKIT_TS_LOADER=tsx npm test         Node through tsx, as users run it (default: scripts/ts_loader.mjs)
//   npm test -- --coverage                Node's line coverage too (c8: a summary, and coverage/lcov.info); it costs
//                                         about a third more CPU on Node. `npm run coverage` is Node alone with it.
//
// How it runs (see README "Tests" and docs/architecture.md#tests): every (runtime, test file) pair is one job, a
// runner process of its own (`node --test <file>`, `deno test <file>`, `bun test <file>`). Jobs run concurrently,
// longest first (the durations of the last run are kept in node_modules/.cache), because much of a test's time is
// spent waiting on other processes, sockets and timers. Two rules keep concurrent files apart:
// - one file never runs on two runtimes at once (a file's fixed names, ports-in-a-range or keys stay its own);
// - a file that says `// @test-serial <why>` in its first lines runs alone (it measures or changes something
//   machine-wide, or its processes must spin on CPUs at once).
// And a file that says `// @test-once <why>` runs on one runner only (Bun when it is in the run, else Deno, else
// Node): for a file that starts all three runtimes itself, so that each runner would run the very same checks
// (the npm package test builds the package once and then uses it from Node, Bun and Deno children).
// Each job has its own process group and a watchdog (IPCKIT_TEST_FILE_TIMEOUT seconds, default 900): a hung file is
// killed with everything it started and counted as failed, naming the file.
import { spawn, spawnSync } from "node:child_process";
import { cpus } from "node:os";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { preflight } from "./preflight.mjs";
import { parseCpuTimes, stolen } from "./cpu_times.mjs";

// The system tools the suite needs (python3, cc, nats-server...): installed now when possible, or a clear stop.
preflight();

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

const argv = process.argv.slice(2);
let only = ["node", "deno", "bun"];
let jobs = Number(process.env.IPCKIT_TEST_JOBS) || 2 * cpus().length;
let verbose = false;
let withCoverage = false;
const files = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--only") only = argv[++i].split(",");
  else if (argv[i] === "--jobs") jobs = Number(argv[++i]);
  else if (argv[i] === "--verbose") verbose = true;
  else if (argv[i] === "--coverage") withCoverage = true;
  else files.push(argv[i]);
}
if (!(jobs >= 1)) {
  console.error(`Cannot run with --jobs ${jobs}: it must be a positive number`);
  process.exit(2);
}
for (const name of only) {
  if (!["node", "deno", "bun"].includes(name)) {
    console.error(`Cannot run on "${name}": the runtimes are node, deno and bun`);
    process.exit(2);
  }
}
if (files.length === 0) {
  for (const f of readdirSync(join(root, "tests")).sort()) if (f.endsWith(".test.ts")) files.push(`tests/${f}`);
}

// Node's coverage (--coverage): every node job (and every node process it starts) writes V8 coverage here; c8
// reports it at the end.
const coverage = withCoverage ? mkdtempSync(join(tmpdir(), "ipckit-test-coverage-")) : undefined;

// TypeScript on Node: the suite's own lean loader (scripts/ts_loader.mjs: esbuild with a content-addressed cache)
// for the runner and every Node process and thread the tests start (runtimes/argv.ts honours IPCKIT_TS_LOADER).
// tsx, which users run, costs ~0.4 s more CPU per process; tests/runtime.test.ts keeps the tsx path covered.
// `IPCKIT_TS_LOADER=tsx npm test` runs it all through tsx instead, as users run it.
const tsLoader = process.env.IPCKIT_TS_LOADER || join(root, "scripts", "ts_loader.mjs");
// The loader's cache keeps one compiled file per content ever seen; past a few thousand (many edits), start afresh.
try {
  const tsCache = join(root, "node_modules", ".cache", "ipckit-ts");
  if (readdirSync(tsCache).length > 5000) rmSync(tsCache, { recursive: true, force: true });
} catch {
  // no cache yet
}
// The children and worker threads Node starts run from compiled copies of the repository's TypeScript, without module
// hooks (scripts/ts_mirror.mjs; runtimes/argv.ts runs a copy when IPCKIT_TS_COMPILED names the directory): ~0.3 s
// of CPU less per Node process. Not with tsx (the users' path, whole) nor with coverage (it maps the sources).
let compiledDir;
let mirrorPath;
if (tsLoader !== "tsx" && !withCoverage) {
  compiledDir = join(root, "node_modules", ".cache", "ipckit-mirror");
  const mirror = await import("./ts_mirror.mjs");
  mirrorPath = mirror.mirrorPath;
  await mirror.buildMirror(root, compiledDir);
}
const tsLoaderUrl = tsLoader === "tsx" ? "tsx" : tsLoader.startsWith("file:") ? tsLoader : pathToFileURL(tsLoader).href;
const commands = {
  // A test file with a compiled copy runs as that copy, directly (node:test runs it in this process): no hooks thread,
  // no second process. Its stack traces point at the TypeScript lines (the copy's source map).
  node: (file) =>
    compiledDir === undefined
      ? [process.execPath, "--import", tsLoaderUrl, "--test", "--test-reporter=spec", file]
      : [process.execPath, "--enable-source-maps", "--test-reporter=spec", mirrorPath(compiledDir, join(root, file))],
  // Type-checked once for all files by the "deno check" job below, not once per file (2 s of CPU each).
  deno: (file) => [bin("deno"), "test", "-A", "--quiet", "--no-check", file],
  bun: (file) => [bin("bun"), "test", "--timeout", "300000", `./${file}`],
};

// Each runner's own summary lines.
const parsers = {
  node(out) {
    const pass = out.match(/^[#ℹ] pass (\d+)/m);
    const fail = out.match(/^[#ℹ] fail (\d+)/m);
    return pass && fail ? { passed: +pass[1], failed: +fail[1] } : null;
  },
  deno(out) {
    const m = out.match(/(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/);
    return m ? { passed: +m[1] + +(m[2] ?? 0), failed: +m[3] + +(m[4] ?? 0) } : null;
  },
  bun(out) {
    const pass = out.match(/^\s*(\d+) pass/m);
    const fail = out.match(/^\s*(\d+) fail/m);
    return pass || fail ? { passed: +(pass?.[1] ?? 0), failed: +(fail?.[1] ?? 0) } : null;
  },
};

// deno-lint-ignore no-control-regex
const strip = (s) => s.replace(/\x1b\[[0-9;]*m/g, "");

// The run's own owner-record registry (see resources.ts): the records the tests' objects leave are the run's, not
// the user's, and what is still there at the end is a leak (an object some test did not remove).
const registry = mkdtempSync(join(tmpdir(), "ipckit-test-registry-"));

// How long each job took last time, to start the long ones first.
const timesFile = join(root, "node_modules", ".cache", "ipckit-test", "durations.json");
let lastTimes = {};
try {
  lastTimes = JSON.parse(readFileSync(timesFile, "utf8"));
} catch {
  // first run: file sizes stand in for durations
}
/** The files whose first lines carry a `// @<marker> <why>` line. */
const marked = (marker) => {
  const line = new RegExp(`^// @${marker} `, "m");
  return new Set(files.filter((f) => line.test(readFileSync(join(root, f), "utf8").slice(0, 3000))));
};
const serial = marked("test-serial");
const once = marked("test-once");
const onceRunner = ["bun", "deno", "node"].find((r) => only.includes(r));
const estimate = (job) => lastTimes[`${job.runtime} ${job.file}`] ?? readFileSync(join(root, job.file)).length / 1000;

const queue = [];
for (const runtime of only) {
  for (const file of files) if (!once.has(file) || runtime === onceRunner) queue.push({ runtime, file });
}
// Longest first; the files that must run alone last, so they do not hold the others up.
queue.sort((a, b) => Number(serial.has(a.file)) - Number(serial.has(b.file)) || estimate(b) - estimate(a));
// Deno type-checks the test files and everything they import, once, as one job: one test that passes or fails.
if (only.includes("deno")) {
  queue.unshift({
    runtime: "deno",
    file: "(type check)",
    argv: [bin("deno"), "check", ...files],
    parse: (_out, code) => ({ passed: code === 0 ? 1 : 0, failed: code === 0 ? 0 : 1 }),
  });
}

const fileTimeout = (Number(process.env.IPCKIT_TEST_FILE_TIMEOUT) || 900) * 1000;
const running = new Set();
const busyFiles = new Set();
const results = [];
const times = { ...lastTimes };
const started = Date.now();

// The machine's CPU time and what the hypervisor stole of it: the suite's time follows the host's, and the summary
// says how much the host took.
function cpuSteal() {
  try {
    return parseCpuTimes(readFileSync("/proc/stat", "utf8"));
  } catch {
    return undefined; // not Linux
  }
}
const stealAtStart = cpuSteal();

// The CPU seconds of this process's reaped children and all they waited for (/proc/self/stat's cutime + cstime):
// read at each job's exit, the growth since the last read is that job's CPU. Linux only; elsewhere no figure.
const ticks = 100; // USER_HZ: 100 on every Linux architecture Node runs on
function childCpu() {
  try {
    const stat = readFileSync("/proc/self/stat", "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[13]) + Number(fields[14])) / ticks; // cutime, cstime (fields 16 and 17 of stat)
  } catch {
    return NaN;
  }
}
let cpuSeen = childCpu();

function runJob(job) {
  const [cmd, ...args] = job.argv ?? commands[job.runtime](job.file);
  const t0 = Date.now();
  return new Promise((resolve) => {
    // Stats segments off (a child killed by a test would leave its own behind): the stats tests turn them on.
    const env = { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1", IPCKIT_REGISTRY: registry, IPCKIT_STATS: "off" };
    env.IPCKIT_TS_LOADER = tsLoader;
    if (compiledDir === undefined) delete env.IPCKIT_TS_COMPILED;
    else env.IPCKIT_TS_COMPILED = compiledDir;
    // The runners of this run: a check that is the same on every runner runs on one of them
    // (tests/helpers/runners.ts).
    env.IPCKIT_TEST_RUNNERS = only.join(",");
    if (job.runtime === "node" && coverage !== undefined) env.NODE_V8_COVERAGE = coverage;
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"], env, detached: true });
    const killGroup = (sig) => {
      try {
        process.kill(-child.pid, sig);
      } catch {
        // already gone
      }
    };
    job.kill = killGroup;
    let out = "";
    let timedOut = false;
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const watchdog = setTimeout(() => {
      timedOut = true;
      killGroup("SIGKILL");
    }, fileTimeout);
    let cpu = NaN;
    child.on("exit", () => {
      const now = childCpu();
      cpu = now - cpuSeen;
      cpuSeen = now;
    });
    child.on("close", (code, signal) => {
      clearTimeout(watchdog);
      killGroup("SIGKILL"); // whatever the file started and left behind
      const seconds = (Date.now() - t0) / 1000;
      const text = strip(out);
      const parsed = (job.parse ?? parsers[job.runtime])(text, code);
      const result = {
        runtime: job.runtime,
        file: job.file,
        code: code ?? signal,
        seconds,
        cpu,
        pid: child.pid,
        passed: parsed?.passed ?? 0,
        failed: parsed?.failed ?? 0,
      };
      if (parsed === null || (code !== 0 && result.failed === 0)) result.failed += 1; // a crash outside any test
      if (timedOut) result.note = `killed after ${fileTimeout / 1000} s (IPCKIT_TEST_FILE_TIMEOUT)`;
      resolve({ result, text });
    });
  });
}

function report({ result: r, text }) {
  const head =
    `--- ${r.runtime.padEnd(4)} ${r.file}: ${r.passed} passed, ${r.failed} failed (${r.seconds.toFixed(1)} s` +
    (Number.isNaN(r.cpu) ? ")" : `, ${r.cpu.toFixed(1)} s CPU)`) +
    (r.note ? ` ${r.note}` : "");
  if (r.failed > 0 || verbose) {
    console.log(`${head}\n${text.trimEnd()}\n--- end of ${r.runtime} ${r.file}`);
  } else {
    console.log(head);
  }
}

await new Promise((done) => {
  const pump = () => {
    if (queue.length === 0 && running.size === 0) return done();
    for (let i = 0; i < queue.length && running.size < jobs; i++) {
      const job = queue[i];
      const alone = serial.has(job.file);
      if (busyFiles.has(job.file)) continue;
      if (alone && running.size > 0) break; // wait for the machine to empty, keeping the order
      if ([...running].some((j) => serial.has(j.file))) break;
      queue.splice(i--, 1);
      running.add(job);
      busyFiles.add(job.file);
      runJob(job).then((finished) => {
        running.delete(job);
        busyFiles.delete(job.file);
        times[`${job.runtime} ${job.file}`] = finished.result.seconds;
        results.push(finished.result);
        report(finished);
        pump();
      });
    }
  };
  for (const sig of ["SIGINT", "SIGTERM"]) {
    process.on(sig, () => {
      for (const j of running) j.kill?.("SIGKILL");
      process.exit(130);
    });
  }
  pump();
});
const wall = (Date.now() - started) / 1000;

try {
  mkdirSync(dirname(timesFile), { recursive: true });
  writeFileSync(timesFile, JSON.stringify(times, null, 1));
  // Every job of this run (runtime, file, seconds, CPU seconds, counts), for looking at where the time goes.
  writeFileSync(join(dirname(timesFile), "last-run.json"), JSON.stringify(results, null, 1));
} catch {
  // a read-only tree: the next run orders by size again
}

// Node's coverage summary (text) and lcov (coverage/), over the library only.
if (coverage !== undefined && only.includes("node")) {
  const c8 = spawnSync(bin("c8"), [
    "report",
    `--temp-directory=${coverage}`,
    "--reporter=text-summary",
    "--reporter=lcov",
    "--reports-dir=coverage",
    "--exclude=tests/**",
    "--exclude=bench/**",
    "--exclude=examples/**",
    "--exclude=scripts/**",
  ], { cwd: root, encoding: "utf8" });
  console.log(`\n=== node coverage\n${(c8.stdout + c8.stderr).trim()}`);
}
if (coverage !== undefined) rmSync(coverage, { recursive: true, force: true });

// Objects the tests created and did not remove: the CLI lists what the run's registry still records.
function leaks() {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["--import", "tsx", "cli/main.ts", "ls", "--json"], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, IPCKIT_REGISTRY: registry },
    });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.on("close", (code) => {
      try {
        resolve(code === 0 ? JSON.parse(out) : [{ kind: "?", name: `ipckit ls exited with ${code}` }]);
      } catch (e) {
        resolve([{ kind: "?", name: `ipckit ls printed no JSON: ${e.message}` }]);
      }
    });
  });
}

const left = files.length > 0 && only.length > 0 ? await leaks() : [];
rmSync(registry, { recursive: true, force: true });

const cpuTotal = results.reduce((n, r) => n + r.cpu, 0);
const stealAtEnd = cpuSteal();
const stolenShare = stolen(stealAtStart, stealAtEnd);
console.log(
  `\n=== summary (${files.length} files x ${only.length} runtimes, ${jobs} at once, ${wall.toFixed(0)} s` +
    (Number.isNaN(cpuTotal) ? "" : `, ${cpuTotal.toFixed(0)} s CPU`) +
    (stolenShare === undefined
      ? ")"
      : `, ${(stolenShare * 100).toFixed(1)} % of the machine's CPU time stolen by the host)`),
);
const failedJobs = results.filter((r) => r.failed > 0);
for (const r of failedJobs) console.log(`failed: ${r.runtime} ${r.file} (${r.failed})${r.note ? ` ${r.note}` : ""}`);
if (left.length > 0) {
  console.log(`leak check: ${left.length} object(s) created by the tests are still there:`);
  for (const r of left) console.log(`  ${r.kind} ${r.name} (pid ${r.pid}, ${r.status})`);
}
for (const name of only) {
  const mine = results.filter((r) => r.runtime === name);
  const p = mine.reduce((n, r) => n + r.passed, 0);
  const f = mine.reduce((n, r) => n + r.failed, 0);
  const s = mine.reduce((n, r) => n + r.seconds, 0);
  const c = mine.reduce((n, r) => n + r.cpu, 0);
  console.log(
    `${name.padEnd(5)} ${p} passed, ${f} failed (${mine.length} files, ${s.toFixed(0)} s of file time` +
      (Number.isNaN(c) ? ")" : `, ${c.toFixed(0)} s CPU)`),
  );
}
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0) + (left.length > 0 ? 1 : 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
