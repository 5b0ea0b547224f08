#!/usr/bin/env node
// Runs the one test suite on Node (tsx, with c8 coverage), Deno and Bun, one after the other, and ends with one
// plain line "N passed, N failed" summing the three. Exits non-zero if any runner failed.
//
//   npm test                      all three runtimes, all tests
//   npm test -- --only deno,bun   some runtimes
//   npm test -- tests/unix.test.ts   some files
import { spawn } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

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

function run(name) {
  const [cmd, ...args] = runners[name];
  return new Promise((resolve) => {
    console.log(`\n=== ${name}: ${[cmd.replace(root + "/", ""), ...args.slice(0, 4)].join(" ")} ...`);
    const child = spawn(cmd, args, {
      cwd: root,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1" },
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

console.log("\n=== summary");
for (const r of results) console.log(`${r.name.padEnd(5)} ${r.passed} passed, ${r.failed} failed (exit ${r.code})`);
const passed = results.reduce((n, r) => n + r.passed, 0);
const failed = results.reduce((n, r) => n + r.failed, 0);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
