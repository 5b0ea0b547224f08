#!/usr/bin/env node
// Runs the one test suite on Node (tsx, with c8 coverage), Deno and Bun, one after the other, and ends with one
// plain line "N passed, N failed" summing the three. Exits non-zero if any runner failed.
//
//   npm test                      all three runtimes, all tests
//   npm test -- --only deno,bun   some runtimes
//   npm test -- tests/unix.test.ts   some files
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { preflight } from "./preflight.mjs";

// The system tools the suite needs (python3, cc, nats-server...): installed now when possible, or a clear stop.
preflight();

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

const argv = process.argv.slice(2);
let only = ["node", "deno", "bun"];
const files = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--only") only = argv[++i].split(",");
  else files.push(argv[i]);
}
if (files.length === 0) {
  for (const f of readdirSync(join(root, "tests")).sort()) if (f.endsWith(".test.ts")) files.push(`tests/${f}`);
}

const runners = {
  node: [
    bin("c8"),
    "--reporter=text-summary",
    "--reporter=lcov",
    "--reports-dir=coverage",
    "--exclude=tests/**",
    "--exclude=bench/**",
    "--exclude=examples/**",
    "--exclude=scripts/**",
    process.execPath,
    "--import",
    "tsx",
    "--test",
    "--test-reporter=spec",
    ...files,
  ],
  deno: [bin("deno"), "test", "-A", "--quiet", ...files],
  bun: [bin("bun"), "test", "--timeout", "300000", ...files.map((f) => `./${f}`)],
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

function run(name) {
  const [cmd, ...args] = runners[name];
  return new Promise((resolve) => {
    console.log(`\n=== ${name}: ${[cmd.replace(root + "/", ""), ...args.slice(0, 4)].join(" ")} ...`);
    const child = spawn(cmd, args, {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1", IPCKIT_REGISTRY: registry },
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      process.stdout.write(d);
    });
    child.stderr.on("data", (d) => {
      out += d;
      process.stderr.write(d);
    });
    child.on("close", (code) => {
      const parsed = parsers[name](strip(out));
      const result = parsed ?? { passed: 0, failed: 1 };
      if (code !== 0 && result.failed === 0) result.failed = 1; // a crash outside any test
      resolve({ name, code, ...result });
    });
  });
}

const results = [];
for (const name of only) results.push(await run(name));

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

console.log("\n=== summary");
if (left.length > 0) {
  console.log(`leak check: ${left.length} object(s) created by the tests are still there:`);
  for (const r of left) console.log(`  ${r.kind} ${r.name} (pid ${r.pid}, ${r.status})`);
  results.push({ name: "leaks", code: 1, passed: 0, failed: 1 });
}
for (const r of results) console.log(`${r.name.padEnd(5)} ${r.passed} passed, ${r.failed} failed (exit ${r.code})`);
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
