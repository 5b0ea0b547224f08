import { test } from "node:test";
import assert from "node:assert/strict";
import { pipe, runtime, runtimeArgv, runtimeName } from "../mod.ts";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { compiledCopy, runtimeBinary } from "../runtimes/argv.ts";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { RUNTIMES } from "../runtimes/runtime.ts";

const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("../", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/signal_child.ts", import.meta.url));
const text = new TextDecoder();

test("runtime() detects the runtime running the tests", () => {
  const g = globalThis as Record<string, unknown>;
  const expected = "Deno" in g ? "deno" : "Bun" in g ? "bun" : "node";
  assert.equal(rt.name, expected);
  assert.equal(runtimeName(), expected);
  assert.ok(rt.pid > 0);
  assert.match(rt.version, /^\d+\.\d+/);
});

test("runtimeArgv() starts a script on each runtime", { timeout: 120_000 }, async () => {
  for (const name of RUNTIMES) {
    const argv = runtimeArgv(name);
    assert.ok(argv.length >= 1);
    const child = rt.spawn([...argv, CHILD, "handle"], { cwd: ROOT, stdio: "pipe" });
    child.kill("SIGKILL");
    const status = await child.exited;
    assert.equal(status.signal, "SIGKILL", `${name}: ${JSON.stringify(status)}`);
  }
});

test(
  "without IPCKIT_TS_LOADER, Node runs TypeScript processes and worker threads through tsx",
  { timeout: 120_000 },
  () => {
    // npm test points IPCKIT_TS_LOADER at a lean loader for speed; users have tsx. This child is the users' path.
    const script = rt.fromFileUrl(new URL("./helpers/tsx_default.ts", import.meta.url));
    const tsx = new URL("../node_modules/tsx/dist/loader.mjs", import.meta.url).href;
    const r = spawnSync(runtimeBinary("node"), ["--import", tsx, script], {
      cwd: ROOT,
      env: { ...process.env, IPCKIT_TS_LOADER: "", IPCKIT_TS_COMPILED: "" },
      encoding: "utf8",
      timeout: 100_000,
    });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    const line = r.stdout.trim().split("\n").at(-1)!;
    const got = JSON.parse(line) as { argv: string[]; echoed: { echo: string } };
    assert.ok(got.argv.some((a) => a.includes("/tsx/dist/loader.mjs")), got.argv.join(" "));
    assert.equal(got.echoed.echo, "ping");
  },
);

test(
  "IPCKIT_TS_COMPILED: Node runs a TypeScript file's compiled copy, without a loader; one without a copy as before",
  {
    timeout: 120_000,
  },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "ipckit-compiled-"));
    const saved = process.env.IPCKIT_TS_COMPILED;
    t.after(() => {
      if (saved === undefined) delete process.env.IPCKIT_TS_COMPILED;
      else process.env.IPCKIT_TS_COMPILED = saved;
      rmSync(dir, { recursive: true, force: true });
    });
    // A source and a hand-made copy that say different things: which one ran is in the output.
    const src = join(dir, "src");
    const copies = join(dir, "copies");
    mkdirSync(src);
    const script = join(src, "which.ts");
    writeFileSync(script, 'const n: number = 1;\nconsole.log("source", n);\n');
    const copy = join(copies, script).replace(/\.ts$/, ".mjs");
    mkdirSync(join(copy, ".."), { recursive: true });
    writeFileSync(
      copy,
      'import { parentPort } from "node:worker_threads";\n' +
        'if (parentPort) parentPort.on("message", (m) => { parentPort.postMessage(`copy ${m}`); parentPort.close(); });\n' +
        'else console.log("copy");\n',
    );
    process.env.IPCKIT_TS_COMPILED = copies;
    assert.equal(compiledCopy(script), copy);
    assert.equal(compiledCopy(pathToFileURL(script)), copy);
    assert.deepEqual(runtimeArgv("node", script), [runtimeBinary("node"), copy]);
    assert.equal(compiledCopy(join(src, "other.ts")), undefined, "no copy: the source");
    assert.ok(runtimeArgv("node", join(src, "other.ts")).includes("--import"));
    assert.deepEqual(runtimeArgv("deno", script).at(-1), script, "only Node runs copies");
    const out = spawnSync(runtimeArgv("node", script)[0]!, runtimeArgv("node", script).slice(1), { encoding: "utf8" });
    assert.equal(out.stdout.trim(), "copy", out.stderr);
    if (rt.name === "node") {
      // A worker thread of a TypeScript module starts from its copy too.
      const w = rt.worker(pathToFileURL(script));
      const echoed = await new Promise<unknown>((resolve, reject) => {
        w.onMessage(resolve);
        w.onError(reject);
        w.postMessage("ping");
      });
      await w.terminate();
      assert.equal(echoed, "copy ping");
    }
    delete process.env.IPCKIT_TS_COMPILED;
    assert.equal(compiledCopy(script), undefined, "unset: no copies");
  },
);

test("onSignal() receives a signal sent with kill(), and disposing it removes the handler", async () => {
  let n = 0;
  const got = new Promise<void>((resolve) => {
    const h = rt.onSignal("SIGUSR2", () => {
      n++;
      h[Symbol.dispose]();
      resolve();
    });
  });
  // A signal handler does not keep the process alive (by design): hold it open until the signal arrives.
  const keepAlive = setTimeout(() => {}, 60_000);
  try {
    rt.kill(rt.pid, "SIGUSR2");
    await got;
  } finally {
    clearTimeout(keepAlive);
  }
  assert.equal(n, 1);
});

for (const peer of RUNTIMES) {
  test(`a ${runtimeName()} parent signals a ${peer} child, whose handler runs`, { timeout: 120_000 }, async () => {
    const { channel, child } = await pipe.spawn([...runtimeArgv(peer, CHILD), "handle"], { cwd: ROOT });
    try {
      assert.equal(text.decode(await channel.receive({ timeout: 60_000 })), "ready");
      rt.kill(child.pid, "SIGUSR2");
      assert.equal(text.decode(await channel.receive({ timeout: 60_000 })), "got SIGUSR2");
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    } finally {
      await channel.close();
      child.kill("SIGKILL");
      await child.exited;
    }
  });

  test(`a ${peer} child whose SIGUSR2 handler was disposed dies of the signal (default action)`, {
    timeout: 120_000,
  }, async () => {
    const { channel, child } = await pipe.spawn([...runtimeArgv(peer, CHILD), "dispose"], { cwd: ROOT });
    try {
      assert.equal(text.decode(await channel.receive({ timeout: 60_000 })), "ready");
      rt.kill(child.pid, "SIGUSR2");
      assert.equal((await child.exited).signal, "SIGUSR2");
    } finally {
      await channel.close();
      child.kill("SIGKILL");
      await child.exited;
    }
  });
}

test("spawn() reports a missing program as a rejected exited promise, not a crash", async () => {
  const child = rt.spawn(["/nonexistent/ipckit-no-such-program"], { stdio: "null" });
  await assert.rejects(child.exited);
});

test(
  "ChildProcess.kill() escalates: a child that ignores SIGTERM is ended by a later SIGKILL",
  { timeout: 120_000 },
  async () => {
    const dir = await rt.makeTempDir("ipckit-kill-");
    // A Python child that ignores SIGTERM, says so through a file, then sleeps.
    const ready = `${dir}/ready`;
    const script = `import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nopen(${
      JSON.stringify(ready)
    }, "w").close()\ntime.sleep(600)\n`;
    const child = rt.spawn(["python3", "-c", script], { stdio: "null" });
    try {
      for (let i = 0; !(await rt.exists(ready)); i++) {
        if (i > 6000) throw new Error("the child never started");
        await new Promise((r) => setTimeout(r, 10));
      }
      child.kill("SIGTERM"); // ignored
      child.kill("SIGKILL");
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hung = new Promise((resolve) => (timer = setTimeout(() => resolve("still running"), 60_000)));
      assert.deepEqual(await Promise.race([child.exited, hung]), { code: null, signal: "SIGKILL" });
      clearTimeout(timer);
    } finally {
      child.kill("SIGKILL");
      await child.exited.catch(() => {});
      await rt.removeDir(dir);
    }
  },
);

test("worker() starts a worker thread on a TypeScript module and exchanges messages", { timeout: 60_000 }, async () => {
  const w = rt.worker(new URL("./helpers/echo_worker.ts", import.meta.url));
  try {
    const reply = new Promise<unknown>((resolve, reject) => {
      w.onMessage(resolve);
      w.onError(reject);
    });
    const sab = new SharedArrayBuffer(8);
    w.postMessage({ n: 42, sab });
    const got = (await reply) as { echo: { n: number; sab: SharedArrayBuffer }; threadId: number };
    assert.equal(got.echo.n, 42);
    assert.ok(got.echo.sab instanceof SharedArrayBuffer);
    assert.ok(got.threadId > 0);
  } finally {
    await w.terminate();
  }
});
