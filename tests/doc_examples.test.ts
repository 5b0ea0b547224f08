/**
 * The docs are code: every value export of the public entry points (deno.json `exports`, namespaces included) has a
 * JSDoc summary and an `@example`, and every `@example` in the files those exports come from runs, on this runtime.
 *
 * The examples are extracted (tests/helpers/doc_examples.ts), their `"ipckit"` imports pointed at the local files,
 * and run one after another in ONE child process of this runtime (tests/helpers/doc_example_driver.ts), which
 * reports per example. Afterwards nothing they made may be left: no owner record in the driver's private
 * `IPCKIT_REGISTRY` (every named object ipckit creates is recorded until it is removed), no shm segment, message
 * queue, semaphore or file in /tmp with the driver's pid in its name, and nothing in the driver's private TMPDIR.
 * The examples also type-check (in the Deno run), and a static check keeps their names unique (the pid in them).
 *
 * While writing docs: `IPCKIT_DOC_ONLY=<text>` runs the examples whose id (`file#name`) contains it, and
 * `IPCKIT_DOC_VERBOSE=1` prints what each one printed.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import process from "node:process";
import { runtimeName } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import {
  type DocExample,
  documentedFiles,
  examplesIn,
  publicExports,
  rewriteSpecifiers,
  ROOT,
} from "./helpers/doc_examples.ts";
import { startNatsServer } from "./helpers/nats_server.ts";
import { buildMirror } from "../scripts/ts_mirror.mjs";

/**
 * Examples that cannot run alone in one process, by id (`file#name`), with the reason. Keep it short: rewrite an
 * example so it runs (spawn its peer with `runtimeArgv`, or use a Worker) rather than list it here.
 */
const NOT_RUN: Record<string, string> = {};

const EXPORTS = publicExports();
const FILES = documentedFiles(ROOT, EXPORTS);
const EXAMPLES: DocExample[] = FILES.flatMap((f) => examplesIn(f));
const DRIVER = join(ROOT, "tests", "helpers", "doc_example_driver.ts");
const RUNTIME = runtimeName();

const list = (lines: string[]) => lines.map((l) => `  ${l}`).join("\n");

test("every value export of the entry points has a JSDoc summary and an @example", () => {
  const values = EXPORTS.filter((e) => e.kind === "value");
  assert.ok(values.length > 50, `only ${values.length} value exports found: the walk is broken`);
  const missing = values
    .filter((e) => !e.summary || !e.hasExample)
    .map((e) =>
      `${e.name} (${e.file}): ${
        [!e.summary && "no summary", !e.hasExample && "no @example"].filter(Boolean).join(", ")
      }`
    );
  assert.deepEqual(missing, [], `exports without docs:\n${list(missing)}`);
});

test("every public method and accessor of an exported class has a JSDoc summary", () => {
  const members = EXPORTS.filter((e) => e.kind === "member");
  assert.ok(members.length > 50, `only ${members.length} class members found: the walk is broken`);
  const missing = members.filter((e) => !e.summary).map((e) => `${e.name} (${e.file})`);
  assert.deepEqual(missing, [], `members without a summary:\n${list(missing)}`);
});

test("every exported type has a JSDoc summary", () => {
  const missing = EXPORTS.filter((e) => e.kind === "type" && !e.summary).map((e) => `${e.name} (${e.file})`);
  assert.deepEqual(missing, [], `types without a summary:\n${list(missing)}`);
});

test("the examples' allow-list names only examples that exist, each with a reason", () => {
  const ids = new Set(EXAMPLES.map((e) => e.id));
  const stale = Object.keys(NOT_RUN).filter((id) => !ids.has(id));
  assert.deepEqual(stale, [], "allow-listed examples that no longer exist: remove them from NOT_RUN");
  for (const [id, reason] of Object.entries(NOT_RUN)) assert.ok(reason.length > 10, `${id}: say why it cannot run`);
});

/** Fixed paths and names examples may use: none of them is ever created. */
const FIXED_NAMES = new Set(["/tmp", "/tmp/nobody-listens-here.sock", "/ipckit-no-such-segment"]);

test("the examples name what they create uniquely (the pid in the name), so parallel runs cannot collide", () => {
  const fixed: string[] = [];
  for (const e of EXAMPLES) {
    const code = e.code.split("\n").map((l) => l.replace(/(^|\s)\/\/.*$/, "")).join("\n"); // without comments
    for (const [, , literal] of code.matchAll(/(["'`])(\/[^"'`\n]*)\1/g)) {
      if (literal!.includes("${") || FIXED_NAMES.has(literal!) || /^\/(?:proc|sys|dev)\//.test(literal!)) continue;
      fixed.push(`${e.id}: "${literal}"`);
    }
  }
  assert.deepEqual(fixed, [], "fixed names in examples: add the pid (`${(await runtime()).pid}`)");
});

interface Result {
  id: string;
  ok: boolean;
  ms: number;
  error?: string;
  output: string[];
}

interface Run {
  results: Map<string, Result>;
  extra: Result[];
  pid: number | undefined;
  code: number | null;
  log: string;
  leftovers: string[];
}

/** Names in the directories where examples create OS objects. */
function snapshot(): Map<string, Set<string>> {
  const dirs = ["/dev/shm", "/dev/mqueue", tmpdir()];
  return new Map(dirs.map((d) => [d, new Set(existsSync(d) ? readdirSync(d) : [])]));
}

/** Writes `examples` as modules in a fresh directory, with their "ipckit" imports pointing at the local files. */
function writeModules(examples: DocExample[]): { dir: string; manifest: { id: string; path: string }[] } {
  const dir = mkdtempSync(join(tmpdir(), "ipckit-doc-examples-"));
  const manifest = examples.map((e, i) => {
    const path = join(dir, `${String(i).padStart(3, "0")}_${e.id.replace(/[^\w]+/g, "_")}.ts`);
    writeFileSync(path, `// ${e.id} (${e.file}:${e.line})\n${rewriteSpecifiers(e.code)}\nexport {};\n`);
    return { id: e.id, path };
  });
  writeFileSync(join(dir, "package.json"), '{ "type": "module" }\n'); // tsx: ESM, for top-level await
  return { dir, manifest };
}

async function runAll(): Promise<Run> {
  const privateTmp = mkdtempSync(join(tmpdir(), "ipckit-doc-tmp-"));
  // ipckit records every named object it creates (registry.ts) and drops the record when the object is removed:
  // a record left in this private registry is an object an example (or its child) did not clean up.
  const registry = mkdtempSync(join(tmpdir(), "ipckit-doc-registry-"));
  // IPCKIT_DOC_ONLY=<text> runs only the examples whose id contains it (while writing docs).
  const only = process.env.IPCKIT_DOC_ONLY;
  const runnable = EXAMPLES.filter((e) => !(e.id in NOT_RUN) && (only === undefined || e.id.includes(only)));
  const { dir: modules, manifest } = writeModules(runnable);
  writeFileSync(join(modules, "manifest.json"), JSON.stringify(manifest));
  const resultsFile = join(modules, "results.jsonl");
  writeFileSync(resultsFile, "");
  const before = snapshot();
  // The NATS examples talk to a real server, found the way the nats CLI finds one: NATS_URL.
  const natsServer = await startNatsServer();
  // Node runs the driver and the examples from compiled copies when the suite has them (IPCKIT_TS_COMPILED).
  const compiled = process.env.IPCKIT_TS_COMPILED;
  if (compiled) await buildMirror(modules, compiled);
  const [cmd, ...args] = runtimeArgv(RUNTIME, DRIVER);
  const child = spawn(cmd!, args, {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      ...process.env,
      TMPDIR: privateTmp,
      IPCKIT_REGISTRY: registry,
      IPCKIT_DOC_MANIFEST: join(modules, "manifest.json"),
      IPCKIT_DOC_RESULTS: resultsFile,
      IPCKIT_DOC_TIMEOUT: process.env.IPCKIT_DOC_TIMEOUT ?? "30000",
      NATS_URL: natsServer.url,
    },
  });
  let log = "";
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const killer = setTimeout(() => child.kill("SIGKILL"), 400_000);
  try {
    const code = await new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
    const results = new Map<string, Result>();
    const extra: Result[] = [];
    for (const line of readFileSync(resultsFile, "utf8").split("\n")) {
      if (!line) continue;
      const r = JSON.parse(line) as Result;
      if (results.has(r.id) || !runnable.some((e) => e.id === r.id)) extra.push(r);
      else results.set(r.id, r);
    }
    // What the examples left, by the driver's pid in the name, or anywhere in its private TMPDIR.
    const pid = child.pid;
    const leftovers: string[] = [];
    const mark = new RegExp(`(?<!\\d)${pid}(?!\\d)`);
    for (const [dir, names] of snapshot()) {
      for (const name of names) if (!before.get(dir)!.has(name) && mark.test(name)) leftovers.push(join(dir, name));
    }
    // IPCKIT_DOC_VERBOSE=1 prints what every example printed (to read the docs' claims against the output).
    if (process.env.IPCKIT_DOC_VERBOSE) {
      for (const r of results.values()) {
        console.error(`${r.ok ? "ok  " : "FAIL"} ${r.id} ${r.ms} ms${r.ok ? "" : `: ${r.error}`}`);
        for (const line of r.output) console.error(`       | ${line}`);
      }
    }
    for (const name of readdirSync(privateTmp)) {
      if (!name.startsWith("tsx-")) leftovers.push(join(privateTmp, name)); // tsx's own compile cache
    }
    for (const name of readdirSync(registry)) {
      if (name.endsWith(".json")) leftovers.push(`${name}: ${readFileSync(join(registry, name), "utf8").trim()}`);
    }
    return { results, extra, pid, code, log, leftovers };
  } finally {
    clearTimeout(killer);
    await natsServer.stop();
    child.kill("SIGKILL");
    rmSync(modules, { recursive: true, force: true });
    rmSync(privateTmp, { recursive: true, force: true });
    rmSync(registry, { recursive: true, force: true });
  }
}

let running: Promise<Run> | undefined;
const run = () => (running ??= runAll());

const byFile = new Map<string, DocExample[]>();
for (const e of EXAMPLES) byFile.set(e.file, [...(byFile.get(e.file) ?? []), e]);

for (const [file, examples] of byFile) {
  test(`the JSDoc examples of ${file} run on ${RUNTIME} (${examples.length})`, { timeout: 420_000 }, async () => {
    const { results, log } = await run();
    const failures: string[] = [];
    for (const e of examples) {
      if (e.id in NOT_RUN) continue;
      const r = results.get(e.id);
      if (r === undefined && process.env.IPCKIT_DOC_ONLY !== undefined) continue;
      if (r === undefined) failures.push(`${e.id} (line ${e.line}): did not run (the driver stopped before it)`);
      else if (!r.ok) failures.push(`${e.id} (line ${e.line}): ${r.error}\n    output: ${JSON.stringify(r.output)}`);
    }
    const stopped = failures.some((f) => f.includes("did not run"));
    assert.deepEqual(failures, [], `failed examples:\n${list(failures)}${stopped ? `\ndriver output:\n${log}` : ""}`);
  });
}

test(`the JSDoc examples leave nothing behind and end cleanly on ${RUNTIME}`, { timeout: 420_000 }, async () => {
  const { extra, leftovers, code, log } = await run();
  assert.deepEqual(extra.map((r) => `${r.id}: ${r.error}`), [], "errors outside an example");
  assert.deepEqual(leftovers, [], "left behind by the examples");
  assert.equal(code, 0, `the driver exited with ${code}:\n${log}`);
});

test(
  "the JSDoc examples type-check (deno check, strict, against the local sources)",
  { skip: RUNTIME !== "deno" && "type-checked once, in the Deno run", timeout: 300_000 },
  async () => {
    const { dir, manifest } = writeModules(EXAMPLES);
    try {
      const child = spawn(runtimeArgv("deno")[0]!, [
        "check",
        "--quiet",
        "--config",
        join(ROOT, "deno.json"),
        ...manifest.map((m) => m.path),
      ], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NO_COLOR: "1" } });
      let out = "";
      child.stdout!.on("data", (d) => (out += d));
      child.stderr!.on("data", (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      // Name the examples by id rather than by their temporary file.
      for (const m of manifest) out = out.replaceAll(pathToFileURL(m.path).href, m.id).replaceAll(m.path, m.id);
      assert.equal(code, 0, `deno check failed:\n${out}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
