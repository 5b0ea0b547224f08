// @test-once it builds the package once and uses it from Node, Bun and Deno children: each runner would repeat it
/**
 * The npm package as users get it: built by scripts/build_npm.ts (on this runner's runtime) into a temporary
 * directory, packed with `npm pack`, installed from the tarball into a temporary project, then used from there by
 * child processes: Node ESM `import`, Node `require`, Bun and Deno, a round trip between processes (shm and RPC over
 * a Unix socket), a Pool of plain JavaScript workers (no tsx installed), the `ipckit` bin, publint, attw and a
 * TypeScript consumer's type check. The fixtures are tests/helpers/package/*.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtimeName } from "../runtimes/detect.ts";
import { runtimeArgv, runtimeBinary } from "../runtimes/argv.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const FIXTURES = fileURLToPath(new URL("./helpers/package/", import.meta.url));
const LONG = { timeout: 300_000 };
const bin = (name: string) => join(ROOT, "node_modules", ".bin", name);

interface Result {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

// npm's lifecycle variables (from `npm test`) describe the repository, not the temporary project; c8's coverage
// directory is for the repository's sources.
const env: Record<string, string> = {};
for (const [k, v] of Object.entries(process.env)) {
  if (v !== undefined && !/^(npm_(lifecycle_|package_|config_local_prefix)|NODE_V8_COVERAGE$)/.test(k)) env[k] = v;
}
Object.assign(env, { FORCE_COLOR: "0", NO_COLOR: "1", NODE_OPTIONS: "" });

/** Runs a command to its end (killed after `timeout` ms); never rejects for a non-zero exit. */
function run(argv: string[], cwd: string, timeout = 120_000): Promise<Result> {
  const [cmd, ...args] = argv;
  const child = spawn(cmd!, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
  child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const timer = setTimeout(() => child.kill("SIGKILL"), timeout);
  return new Promise((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Runs a command that must exit 0; returns its stdout. */
async function ok(argv: string[], cwd: string, timeout?: number): Promise<string> {
  const r = await run(argv, cwd, timeout);
  assert.equal(r.code, 0, `${argv.join(" ")} exited with ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The last line of `out` that is a JSON object. */
function lastJson(out: string): Record<string, unknown> {
  const line = out.trim().split("\n").reverse().find((l) => l.startsWith("{"));
  assert.ok(line, `no JSON line in:\n${out}`);
  return JSON.parse(line) as Record<string, unknown>;
}

const node = runtimeBinary("node");
const bun = runtimeBinary("bun");
const deno = runtimeBinary("deno");

describe("the npm package", () => {
  let tmp = "";
  let pkg = ""; // the built package directory
  let app = ""; // the project that installed the tarball
  let tgz = "";

  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), "ipckit-package-"));
    pkg = join(tmp, "package");
    app = join(tmp, "app");
    env.IPCKIT_REGISTRY = join(tmp, "registry"); // what the children create is recorded here, not for the user
    await ok([...runtimeArgv(runtimeName()), join(ROOT, "scripts", "build_npm.ts"), "--out", pkg], ROOT);
    const packed = await ok(["npm", "pack", "--json", "--pack-destination", tmp, "--loglevel=error"], pkg);
    tgz = join(tmp, (JSON.parse(packed.slice(packed.indexOf("["))) as Array<{ filename: string }>)[0]!.filename);
    mkdirSync(app);
    writeFileSync(
      join(app, "package.json"),
      JSON.stringify({ name: "ipckit-consumer", private: true, type: "module" }),
    );
    for (const f of readdirSync(FIXTURES)) copyFileSync(join(FIXTURES, f), join(app, f));
    // Offline where the npm cache allows (`npm ci` filled it); optional dependencies (koffi's binary) included.
    await ok(["npm", "install", tgz, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], app);
  }, LONG);

  after(() => {
    for (const child of children) child.kill("SIGKILL");
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test("the package has dnt's layout and no tests, benchmarks, examples or scripts", LONG, () => {
    const manifest = JSON.parse(readFileSync(join(app, "node_modules", "ipckit", "package.json"), "utf8"));
    const root = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    const denoJson = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8"));
    assert.equal(manifest.name, "ipckit");
    assert.equal(manifest.version, root.version);
    assert.equal(manifest.license, "MIT");
    assert.equal(manifest.main, "./script/mod.js");
    assert.equal(manifest.module, "./esm/mod.js");
    assert.equal(manifest.types, "./script/mod.d.ts");
    assert.deepEqual(manifest.dependencies, root.dependencies);
    assert.deepEqual(manifest.engines, root.engines);
    const keys = Object.keys(manifest.exports).filter((k) => k !== "./package.json");
    assert.deepEqual(keys, Object.keys(denoJson.exports));
    assert.deepEqual(Object.keys(root.exports), Object.keys(denoJson.exports));
    for (const key of keys) {
      const entry = manifest.exports[key];
      const source = (denoJson.exports[key] as string).replace(/^\.\//, "").replace(/\.ts$/, "");
      assert.deepEqual(entry, {
        import: { types: `./esm/${source}.d.ts`, default: `./esm/${source}.js` },
        require: { types: `./script/${source}.d.ts`, default: `./script/${source}.js` },
      });
    }
    const installed = join(app, "node_modules", "ipckit");
    for (const f of ["README.md", "LICENSE", "esm/package.json", "script/package.json"]) {
      assert.ok(existsSync(join(installed, f)), f);
    }
    assert.equal(JSON.parse(readFileSync(join(installed, "esm", "package.json"), "utf8")).type, "module");
    assert.equal(JSON.parse(readFileSync(join(installed, "script", "package.json"), "utf8")).type, "commonjs");
    const top = readdirSync(installed).sort();
    assert.deepEqual(top, ["LICENSE", "README.md", "esm", "include", "package.json", "python", "script"]);
    assert.ok(existsSync(join(installed, "include", "ipckit_ring.h")), "the C header ships");
    assert.ok(existsSync(join(installed, "python", "ipckit_ring.py")), "the Python module ships");
    assert.ok(existsSync(join(installed, "include", "ipckit_pubsub.h")), "the pub-sub C header ships");
    assert.ok(existsSync(join(installed, "python", "ipckit_pubsub.py")), "the pub-sub Python module ships");
    for (const dir of ["esm", "script"]) {
      const shipped = readdirSync(join(installed, dir), { recursive: true }).map(String);
      for (const f of shipped) assert.doesNotMatch(f, /^(tests|bench|examples|scripts)\b|\.test\.|\.ts$(?<!\.d\.ts)/);
    }
    // koffi's binary comes in its optional platform package, which must have been installed
    const koffi = readdirSync(join(app, "node_modules", "@koromix"));
    assert.ok(koffi.some((d) => d.startsWith(`koffi-${process.platform}-`)), koffi.join(", "));
  });

  test("publint and attw find no problems", LONG, async () => {
    await ok([bin("publint"), "--strict", pkg], ROOT);
    const out = await ok(
      [bin("attw"), "--no-definitely-typed", "--no-emoji", "--no-color", "--format", "ascii", tgz],
      ROOT,
    );
    assert.doesNotMatch(out, /Resolution failed|Masquerades|Internal resolution error|Missing `export =`/);
  });

  test("a TypeScript consumer type-checks against the installed declarations (ESM and CommonJS)", LONG, async () => {
    writeFileSync(
      join(app, "consumer.mts"),
      [
        `import { type Channel, NotFoundError, rpc, type Runtime, SharedMemory } from "ipckit";`,
        `import { runtime } from "ipckit/runtime";`,
        `import { Pool, worker } from "ipckit/pool";`,
        `import { serve } from "ipckit/rpc";`,
        `import { IpcError } from "ipckit/errors";`,
        `import { encodeFrame } from "ipckit/framing";`,
        `const rt: Runtime = await runtime();`,
        `const seg: SharedMemory = await SharedMemory.create("/x", { size: 1 });`,
        `const n: number = seg.size;`,
        `const e: IpcError = new NotFoundError("x");`,
        `const f: Uint8Array = encodeFrame(new Uint8Array(1));`,
        `const p = new Pool<{ run(n: number): number }>({ worker: new URL("./w.js", import.meta.url) });`,
        `const sq: number = await p.run(2);`,
        `export { rt, n, e, f, sq, rpc, serve, worker, type Channel };`,
      ].join("\n"),
    );
    writeFileSync(
      join(app, "consumer.cts"),
      [
        `import ipckit = require("ipckit");`,
        `import errors = require("ipckit/errors");`,
        `const e: errors.IpcError = new ipckit.TimeoutError("x");`,
        `export = e;`,
      ].join("\n"),
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "NodeNext",
          moduleResolution: "NodeNext",
          target: "ES2022",
          lib: ["ES2024", "DOM"],
          types: ["node"],
          typeRoots: [join(ROOT, "node_modules", "@types")],
          strict: true,
          skipLibCheck: false,
          noEmit: true,
        },
        files: ["consumer.mts", "consumer.cts"],
      }),
    );
    await ok([bin("tsc"), "-p", app], app);
  });

  test("Node imports it as ES modules and requires it as CommonJS", LONG, async () => {
    const esm = lastJson(await ok([node, "smoke.mjs"], app));
    const cjs = lastJson(await ok([node, "smoke.cjs"], app));
    for (const [r, format] of [[esm, "esm"], [cjs, "cjs"]] as const) {
      assert.equal(r.format, format);
      assert.equal(r.runtime, "node");
      assert.deepEqual(r.seen, [1, 2, 3]);
      assert.equal(r.afterUnlink, "NotFoundError");
      assert.equal(r.frame, "frame");
      assert.equal(r.sameClasses, true);
      assert.equal(r.functions, true);
    }
    assert.match(String(esm.resolved), /\/node_modules\/ipckit\/esm\/mod\.js$/);
    assert.match(String(cjs.resolved), /\/node_modules\/ipckit\/script\/mod\.js$/);
    assert.equal(esm.exports, cjs.exports);
  });

  test("Bun imports the ES modules and requires the CommonJS build", LONG, async () => {
    const esm = lastJson(await ok([bun, "smoke.mjs"], app));
    const cjs = lastJson(await ok([bun, "smoke.cjs"], app));
    for (const r of [esm, cjs]) {
      assert.equal(r.runtime, "bun");
      assert.deepEqual(r.seen, [1, 2, 3]);
      assert.equal(r.afterUnlink, "NotFoundError");
      assert.equal(r.sameClasses, true);
    }
    assert.match(String(esm.resolved), /\/node_modules\/ipckit\/esm\/mod\.js$/);
    assert.match(String(cjs.resolved), /\/node_modules\/ipckit\/script\/mod\.js$/);
  });

  test("Deno imports it from node_modules (a package.json project)", LONG, async () => {
    const r = lastJson(await ok([deno, "run", "-A", "--quiet", "smoke.mjs"], app));
    assert.equal(r.runtime, "deno");
    assert.deepEqual(r.seen, [1, 2, 3]);
    assert.equal(r.afterUnlink, "NotFoundError");
    assert.equal(r.sameClasses, true);
    assert.match(String(r.resolved), /\/node_modules\/ipckit\/esm\/mod\.js$/);
  });

  test(
    "a round trip between processes: Node ESM serves shm and RPC, Bun, Node require and Deno connect",
    LONG,
    async () => {
      const id = `${process.pid}-${Date.now()}`;
      const shmName = `/ipckit-pkg-${id}`;
      const socket = join(tmp, "rpc.sock");
      const clients = [
        [bun, "client.mjs", "bun", socket, shmName],
        [node, "client.cjs", "node-cjs", socket],
        [deno, "run", "-A", "--quiet", "client.mjs", "deno", socket],
      ];
      const server = spawn(node, ["server.mjs", shmName, socket, String(clients.length)], {
        cwd: app,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.add(server);
      let out = "";
      let err = "";
      server.stderr!.setEncoding("utf8").on("data", (d: string) => (err += d));
      const exited = new Promise<number | null>((resolve) => server.on("close", (code) => resolve(code)));
      const timer = setTimeout(() => server.kill("SIGKILL"), 120_000);
      try {
        await new Promise<void>((resolve, reject) => {
          server.stdout!.setEncoding("utf8").on("data", (d: string) => {
            out += d;
            if (out.includes("ready\n")) resolve();
          });
          void exited.then((code) => reject(new Error(`the server exited with ${code} before it was ready\n${err}`)));
        });
        const results = await Promise.all(clients.map((argv) => run(argv, app)));
        for (const [i, r] of results.entries()) {
          assert.equal(
            r.code,
            0,
            `${clients[i]!.join(" ")} exited with ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`,
          );
        }
        const [fromBun, fromCjs, fromDeno] = results.map((r) => lastJson(r.stdout));
        assert.deepEqual(fromBun!.shm, { from: "node-esm", n: 42 });
        assert.equal(fromBun!.runtime, "bun");
        assert.equal(fromCjs!.runtime, "node");
        assert.equal(fromDeno!.runtime, "deno");
        for (const [r, who] of [[fromBun, "bun"], [fromCjs, "node-cjs"], [fromDeno, "deno"]] as const) {
          assert.deepEqual({ ...(r!.hello as object), pid: 0 }, { from: "node-esm", to: who, pid: 0 });
        }
        assert.equal(await exited, 0, err);
        const report = lastJson(out);
        assert.deepEqual(report.shm, [{ from: "bun", n: 41 }, "bye"]);
        assert.equal(report.rpcClients, clients.length);
      } finally {
        clearTimeout(timer);
        server.kill("SIGKILL");
        children.delete(server);
        rmSync(join("/dev/shm", shmName.slice(1)), { force: true });
      }
    },
  );

  test("a Pool runs plain JavaScript workers as threads and as Node processes without tsx", LONG, async () => {
    assert.ok(!existsSync(join(app, "node_modules", "tsx")));
    const r = lastJson(await ok([node, "pool_master.mjs"], app));
    for (const kind of ["thread", "process"]) {
      const got = r[kind] as { squares: number[]; pids: number };
      assert.deepEqual(got.squares, [1, 4, 9, 16], kind);
    }
    assert.ok((r.process as { pids: number }).pids >= 1);
  });

  test("deno publish --dry-run accepts the JSR package: the library, the CLI, README and LICENSE", LONG, async () => {
    const r = await run([deno, "publish", "--dry-run", "--allow-dirty"], ROOT);
    const out = `${r.stdout}\n${r.stderr}`; // NO_COLOR is set
    assert.equal(r.code, 0, out);
    assert.match(out, /Dry run complete/);
    const shipped = [...out.matchAll(/^\s*(file:\/\/\S+) \(/gm)].map((m) => relative(ROOT, fileURLToPath(m[1]!)));
    for (const f of ["LICENSE", "README.md", "deno.json", "mod.ts", "cli/main.ts"]) assert.ok(shipped.includes(f), f);
    for (const f of shipped) assert.doesNotMatch(f, /^(tests|bench|examples|scripts|npm|coverage|node_modules)\//);
  });

  test("the ipckit bin is the executable ESM CLI and runs through npm exec", LONG, async () => {
    const manifest = JSON.parse(readFileSync(join(app, "node_modules", "ipckit", "package.json"), "utf8"));
    assert.deepEqual(manifest.bin, { ipckit: "./esm/cli/main.js" });
    const main = join(app, "node_modules", "ipckit", "esm", "cli", "main.js");
    assert.ok(readFileSync(main, "utf8").startsWith("#!/usr/bin/env node\n"));
    assert.ok((statSync(main).mode & 0o111) !== 0, "esm/cli/main.js is not executable");
    const help = await ok([join(app, "node_modules", ".bin", "ipckit"), "--help"], app);
    assert.match(help, /ipckit/);
    assert.match(help, /\bls\b/);
    const viaNpm = await ok(["npm", "exec", "--no", "--", "ipckit", "--help"], app);
    assert.equal(viaNpm, help);
    const listed = JSON.parse(await ok([join(app, "node_modules", ".bin", "ipckit"), "ls", "--json"], app));
    assert.ok(Array.isArray(listed), JSON.stringify(listed));
  });

  test(
    "ipckit monitor --web serves its page (web/) and uPlot (the uplot dependency) from the installed package",
    LONG,
    async () => {
      const child = spawn(join(app, "node_modules", ".bin", "ipckit"), ["monitor", "--web", "--port", "0"], {
        cwd: app,
        env,
        stdio: ["ignore", "pipe", "pipe"],
      });
      children.add(child);
      const closed = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
      try {
        let out = "";
        const url = await new Promise<string>((resolve, reject) => {
          child.stdout!.setEncoding("utf8").on("data", (d: string) => {
            out += d;
            const m = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
            if (m) resolve(m[1]!);
          });
          void closed.then((code) => reject(new Error(`ipckit monitor exited with ${code}: ${out}`)));
        });
        const types: Array<[string, RegExp]> = [
          ["", /^text\/html/],
          ["app.js", /^text\/javascript/],
          ["style.css", /^text\/css/],
          ["uplot.js", /^text\/javascript/],
          ["uplot.css", /^text\/css/],
          ["metrics", /^text\/plain; version=0\.0\.4/],
        ];
        for (const [path, type] of types) {
          const r = await fetch(`${url}${path}`);
          assert.equal(r.status, 200, path);
          assert.match(r.headers.get("content-type") ?? "", type, path);
          const text = await r.text();
          if (path === "uplot.js") assert.match(text, /uPlot/);
        }
      } finally {
        child.kill("SIGTERM");
        assert.equal(await closed, 0, "SIGTERM closes it");
        children.delete(child);
      }
    },
  );
});
