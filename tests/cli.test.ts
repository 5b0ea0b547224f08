import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  type Channel,
  type ChildProcess,
  MessageQueue,
  NamedSemaphore,
  NotFoundError,
  pipe,
  resources,
  runtime,
  runtimeArgv,
  type RuntimeName,
  SharedMemory,
  SysvQueue,
} from "../mod.ts";
import { main } from "../cli/commands.ts";
import { recordFile } from "../registry.ts";
import { scriptPath } from "../runtimes/argv.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";

const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("../", import.meta.url));
const CLI = rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/resource_child.ts", import.meta.url));
const text = new TextDecoder();

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `ipckit <args>` from the source on runtime `on` (this test's runtime by default). */
function cli(args: string[], env: Record<string, string> = {}, on: RuntimeName = rt.name): Promise<Run> {
  return run(runtimeArgv(on, CLI).concat(args), env);
}

/** Runs `ipckit <args>`'s dispatcher in this process: its exit code and the lines it wrote. */
async function inProcess(args: string[]): Promise<Run> {
  let stdout = "";
  let stderr = "";
  const code = await main(args, { out: (t) => (stdout += `${t}\n`), err: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

function run(argv: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const [file, ...args] = argv;
    const child = spawn(file!, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

interface Made {
  pid: number;
  name: string;
  fifo: string;
  sock: string;
  dgram: string;
  id: number;
}

interface Started {
  channel: Channel;
  child: ChildProcess;
  made: Made;
}

async function startChild(on: RuntimeName, tag: string, dir: string, registry: string): Promise<Started> {
  const { channel, child } = await pipe.spawn([...runtimeArgv(on, CHILD), tag, dir], {
    cwd: ROOT,
    env: { IPCKIT_REGISTRY: registry },
  });
  try {
    const made = JSON.parse(text.decode(await channel.receive({ timeout: 60_000 }))) as Made & { ready: boolean };
    assert.equal(made.ready, true);
    return { channel, child, made };
  } catch (e) {
    child.kill("SIGKILL");
    await channel.close();
    throw e;
  }
}

/** What is really there of a child's objects, checked without the records. */
async function present(m: Made): Promise<Record<string, boolean>> {
  const opens = async (f: () => Promise<{ close(): unknown }>) => {
    try {
      await (await f()).close();
      return true;
    } catch (e) {
      if (e instanceof NotFoundError) return false;
      throw e;
    }
  };
  return {
    shm: existsSync(`/dev/shm${m.name}`),
    mq: await opens(() => MessageQueue.open(m.name)),
    sem: existsSync(`/dev/shm/sem.${m.name.slice(1)}`),
    fifoIn: existsSync(`${m.fifo}.in`),
    fifoOut: existsSync(`${m.fifo}.out`),
    socket: existsSync(m.sock),
    dgram: existsSync(m.dgram),
    sysv: await opens(() => SysvQueue.fromId(m.id)),
  };
}

const ALL_THERE = {
  shm: true,
  mq: true,
  sem: true,
  fifoIn: true,
  fifoOut: true,
  socket: true,
  dgram: true,
  sysv: true,
};
const ALL_GONE = Object.fromEntries(Object.keys(ALL_THERE).map((k) => [k, false]));

/** The names a child's objects have in the records. */
function recorded(m: Made): string[] {
  return [m.name, m.name, m.name, `${m.fifo}.in`, `${m.fifo}.out`, m.sock, m.dgram, String(m.id)].sort();
}

/** Removes whatever is left of a child's objects, ignoring what is gone. */
async function removeAll(m: Made): Promise<void> {
  const quiet = (p: Promise<unknown>) => p.catch(() => {});
  await quiet(SharedMemory.unlink(m.name));
  await quiet(MessageQueue.unlink(m.name));
  await quiet(NamedSemaphore.unlink(m.name));
  for (const p of [`${m.fifo}.in`, `${m.fifo}.out`, m.sock, m.dgram]) await quiet(rt.removeFile(p));
  await quiet(SysvQueue.fromId(m.id).then((q) => q.remove()));
}

for (const [i, creator] of RUNTIMES.entries()) {
  const other = RUNTIMES[(i + 1) % RUNTIMES.length]!;
  test(`ipckit clean removes what a SIGKILLed ${creator} child left and leaves a live ${other} child's objects`, {
    timeout: 240_000,
  }, async () => {
    const dir = await rt.makeTempDir("ipckit-cli-test-");
    const registry = join(dir, "registry");
    mkdirSync(registry, { mode: 0o700 });
    const env = { IPCKIT_REGISTRY: registry };
    const tag = `${rt.pid}-${creator}-${Math.random().toString(36).slice(2, 8)}`;
    const started: Started[] = [];
    try {
      const dead = await startChild(creator, `${tag}-a`, dir, registry);
      started.push(dead);
      const live = await startChild(other, `${tag}-b`, dir, registry);
      started.push(live);
      dead.child.kill("SIGKILL");
      assert.equal((await dead.child.exited).signal, "SIGKILL");

      const ls = await cli(["ls", "--json"], env);
      assert.equal(ls.code, 0, ls.stderr);
      const listed = JSON.parse(ls.stdout) as resources.Resource[];
      const of = (pid: number) => listed.filter((r) => r.pid === pid);
      assert.deepEqual(of(dead.made.pid).map((r) => r.name).sort(), recorded(dead.made), ls.stdout);
      assert.deepEqual(of(live.made.pid).map((r) => r.name).sort(), recorded(live.made));
      assert.ok(of(dead.made.pid).every((r) => r.status === "dead" && r.runtime === creator), ls.stdout);
      assert.ok(of(live.made.pid).every((r) => r.status === "alive" && r.runtime === other), ls.stdout);
      assert.equal(listed.length, 16);

      const table = await cli(["ls"], env);
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /KIND\s+NAME\s+PID\s+RUNTIME\s+OWNER\s+AGE/);
      assert.match(table.stdout, new RegExp(`shm\\s+${dead.made.name}\\s+${dead.made.pid}\\s+${creator}\\s+dead`));

      const dry = await cli(["clean", "--dry-run", "--json"], env);
      assert.equal(dry.code, 0, dry.stderr);
      const would = JSON.parse(dry.stdout) as resources.CleanReport & { dryRun: boolean };
      assert.equal(would.dryRun, true);
      assert.deepEqual(would.removed.map((r) => r.name).sort(), recorded(dead.made));
      assert.deepEqual(await present(dead.made), ALL_THERE, "a dry run removes nothing");

      const cleaned = await cli(["clean"], env);
      assert.equal(cleaned.code, 0, cleaned.stderr);
      assert.match(cleaned.stdout, new RegExp(`removed shm ${dead.made.name} \\(pid ${dead.made.pid}`));
      assert.match(cleaned.stdout, /left 8 object\(s\) of live processes alone/);
      assert.deepEqual(await present(dead.made), ALL_GONE, "the dead child's objects are gone");
      assert.deepEqual(await present(live.made), ALL_THERE, "the live child's objects are untouched");

      const after = JSON.parse((await cli(["ls", "--json", "--all"], env)).stdout) as resources.Resource[];
      assert.deepEqual(after.map((r) => r.pid), new Array(8).fill(live.made.pid));

      // The live child removes its own objects when told to stop: the records go with them.
      await live.channel.send(new TextEncoder().encode("stop"));
      assert.deepEqual(await live.child.exited, { code: 0, signal: null });
      assert.deepEqual(await present(live.made), ALL_GONE);
      assert.deepEqual(await resources.list({ dir: registry, all: true }), []);
    } finally {
      for (const s of started) {
        s.child.kill("SIGKILL");
        await s.child.exited.catch(() => {});
        await s.channel.close();
        await removeAll(s.made);
      }
      await rt.removeDir(dir);
    }
  });
}

test("ipckit clean leaves another program's objects and unverified records alone; --force takes the latter", {
  timeout: 120_000,
}, async () => {
  const dir = await rt.makeTempDir("ipckit-cli-test-");
  const registry = join(dir, "registry");
  mkdirSync(registry, { mode: 0o700 });
  const env = { IPCKIT_REGISTRY: registry };
  const theirs = join(dir, "theirs.sock");
  const old = join(dir, "old.fifo");
  // Another program (Python) owns a live socket; a record of a dead process names its path with another identity.
  const python = spawn("python3", [
    "-c",
    "import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(); print('ready', flush=True); " +
    "sys.stdin.read()",
    theirs,
  ], { stdio: ["pipe", "pipe", "inherit"] });
  const closed = new Promise((r) => python.on("close", r));
  try {
    await new Promise((resolve, reject) => {
      python.stdout.once("data", resolve);
      python.once("close", () => reject(new Error("the Python program ended early")));
    });
    const dead = spawn("true");
    const pid = await new Promise<number>((r) => dead.on("close", () => r(dead.pid!)));
    const record = (kind: string, name: string, extra: object) =>
      writeFileSync(
        join(registry, recordFile(kind as resources.Kind, name)),
        JSON.stringify({ v: 2, kind, name, pid, start: null, runtime: "node", created: Date.now(), ...extra }),
      );
    // Kind "socket": the word older versions wrote for a Unix listener's file; ls and clean call it "unix".
    record("socket", theirs, { identity: { dev: "0:1", ino: "2", ctime: "3.000000000" } });
    // A FIFO recorded by an older ipckit (no identity): it cannot be told from another program's.
    assert.equal(spawnSync("mkfifo", [old]).status, 0);
    record("fifo", old, {});

    const table = await cli(["ls", "--all"], env);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, new RegExp(`unix\\s+${theirs}\\s+${pid}\\s+node\\s+replaced`));
    assert.match(table.stdout, new RegExp(`fifo\\s+${old}\\s+${pid}\\s+node\\s+dead\\?`));
    assert.match(table.stdout, /1 object\(s\) of dead processes marked "\?" cannot be told/);

    const cleaned = await cli(["clean"], env);
    assert.equal(cleaned.code, 0, cleaned.stderr);
    assert.match(
      cleaned.stdout,
      new RegExp(`dropped stale record of unix ${theirs} \\(another object has that name`),
    );
    assert.match(cleaned.stdout, new RegExp(`left fifo ${old} \\(pid ${pid} node, dead\\) alone: .*--force`));
    assert.deepEqual([existsSync(theirs), existsSync(old)], [true, true]);

    const forced = await cli(["clean", "--force", "--json"], env);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual((JSON.parse(forced.stdout) as resources.CleanReport).removed.map((r) => r.name), [old]);
    assert.deepEqual([existsSync(theirs), existsSync(old)], [true, false]);
  } finally {
    python.stdin.end();
    await closed;
    await rt.removeDir(dir);
  }
});

test("ipckit with bad usage exits 2 and says what is wrong", { timeout: 120_000 }, async () => {
  const cases: [string[], RegExp][] = [
    [[], /usage: ipckit <command>/],
    [["frob"], /unknown command "frob"/],
    [["ls", "--frob"], /ipckit ls: unknown option "--frob"\nusage: ipckit ls/],
    [["ls", "extra"], /unexpected argument "extra"/],
    [["clean", "--dry-run=yes"], /option "--dry-run" takes no value/],
    [["clean", "--force=1"], /option "--force" takes no value/],
    [["bench", "--runtime", "perl"], /unknown "perl" \(expected deno, bun, node\)/],
    [["bench", "--iterations", "0"], /"--iterations" must be a positive integer/],
    [["demo", "--iterations"], /"--iterations" needs a value/],
  ];
  // The dispatcher in this process (a process start per case would be most of the test's cost)...
  for (const [args, message] of cases) {
    const r = await inProcess(args);
    assert.equal(r.code, 2, `ipckit ${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, "");
  }
  const help = await inProcess(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /ipckit ls \[--json\] \[--all\]/);
  const lsHelp = await inProcess(["ls", "--help"]);
  assert.equal(lsHelp.code, 0);
  assert.match(lsHelp.stdout, /^usage: ipckit ls/);
  // ...and the command itself: its exit codes and streams.
  const bad = await cli(["ls", "--frob"]);
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /ipckit ls: unknown option "--frob"\nusage: ipckit ls/);
  assert.equal(bad.stdout, "");
  const shown = await cli(["--help"]);
  assert.equal(shown.code, 0, shown.stderr);
  assert.equal(shown.stdout.trim(), help.stdout.trim());
});

test("ipckit ls says so when records are off, and lists nothing", { timeout: 60_000 }, async () => {
  const off = await cli(["ls"], { IPCKIT_REGISTRY: "off" });
  assert.equal(off.code, 0);
  assert.match(off.stderr, /records are off \(IPCKIT_REGISTRY=off\)/);
  const json = await cli(["ls", "--json"], { IPCKIT_REGISTRY: "off" });
  assert.deepEqual(JSON.parse(json.stdout), []);
});

test("ipckit bench --quick prints a table per runtime, with progress on stderr", { timeout: 240_000 }, async () => {
  const r = await cli(["bench", "--quick", "--iterations", "10"]);
  assert.equal(r.code, 0, r.stderr);
  for (const name of RUNTIMES) {
    assert.match(r.stdout, new RegExp(`${name} child \\(pid \\d+\\)\\ntransport\\s+median us\\s+p90 us`));
  }
  for (const t of ["unix", "tcp", "pipe", "fifo", "shm"]) {
    assert.equal(r.stdout.match(new RegExp(`^${t}\\s+\\d+\\.\\d`, "gm"))?.length, 3, `${t} rows:\n${r.stdout}`);
  }
  assert.match(r.stderr, /\[1\/18\] deno unix \.\.\./);
  assert.match(r.stderr, /\[18\/18\] node mq \.\.\./);
});

test("ipckit bench reports a runtime it cannot start and measures the others", { timeout: 240_000 }, async () => {
  const r = await cli(["bench", "--iterations", "5", "--runtime", "bun,node", "--transport", "unix,shm"], {
    IPCKIT_BUN: "/nonexistent/bun",
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /bun: could not start a child/);
  assert.match(r.stdout, /node child \(pid \d+\)\ntransport/);
});

test("ipckit demo prints one row per runtime", { timeout: 240_000 }, async () => {
  const r = await cli(["demo", "--iterations", "10"]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /child\s+unix us\s+tcp us\s+pipe us\s+fifo us\s+shm us/);
  for (const name of RUNTIMES) assert.match(r.stdout, new RegExp(`^${name} \\(pid \\d+\\)(\\s+\\d+\\.\\d){5}$`, "m"));
});

test("runtimeArgv(name, script) runs a JavaScript file on plain node, TypeScript through tsx", async () => {
  const node = runtimeArgv("node", "/x/a.js");
  assert.equal(node.length, 2);
  assert.equal(node[1], "/x/a.js");
  assert.deepEqual(runtimeArgv("node", "/x/a.mjs").slice(1), ["/x/a.mjs"]);
  assert.deepEqual(runtimeArgv("node", "/x/a.ts").slice(1), [...runtimeArgv("node").slice(1), "/x/a.ts"]);
  assert.ok(runtimeArgv("node", "/x/a.ts").includes("--import"));
  assert.deepEqual(runtimeArgv("deno", "/x/a.js").slice(1), ["run", "-A", "--quiet", "/x/a.js"]);
  assert.deepEqual(runtimeArgv("bun", "/x/a.js").slice(1), ["/x/a.js"]);
  const dir = await rt.makeTempDir("ipckit-argv-test-");
  try {
    const script = join(dir, "hello.mjs");
    writeFileSync(script, 'console.log("hello from " + process.version);\n');
    const r = await run(runtimeArgv("node", script), { NODE_OPTIONS: "" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^hello from v\d+/);
  } finally {
    await rt.removeDir(dir);
  }
});

test("scriptPath() finds a sibling as .ts from the source and as .js from a build", async () => {
  const dir = await rt.makeTempDir("ipckit-script-test-");
  try {
    mkdirSync(join(dir, "peers"));
    writeFileSync(join(dir, "peers", "echo.ts"), "");
    const fromTs = new URL(`file://${dir}/main.ts`);
    assert.equal(scriptPath(fromTs, "./peers/echo.ts"), join(dir, "peers", "echo.ts"));
    // A compiled module prefers .js, and falls back to the other extension when only that exists.
    const fromJs = new URL(`file://${dir}/main.js`);
    assert.equal(scriptPath(fromJs, "./peers/echo.ts"), join(dir, "peers", "echo.ts"));
    writeFileSync(join(dir, "peers", "echo.js"), "");
    assert.equal(scriptPath(fromJs, "./peers/echo.ts"), join(dir, "peers", "echo.js"));
    assert.equal(scriptPath(fromTs, "./peers/echo.ts"), join(dir, "peers", "echo.ts"));
    assert.throws(() => scriptPath(fromTs, "./peers/nope.ts"), /Cannot find "\.\/peers\/nope\.ts"/);
  } finally {
    await rt.removeDir(dir);
  }
});
