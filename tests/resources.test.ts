// @test-serial it writes /proc/sys/kernel/ns_last_pid to make a process take a given pid: other files forking at the same time take it first
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import {
  fifo,
  MessageQueue,
  mq,
  NamedSemaphore,
  resources,
  runtime,
  SharedMemory,
  shm,
  sysv,
  SysvQueue,
  unix,
  unixDgram,
} from "../mod.ts";
import { native } from "../ffi/native.ts";
import { identify } from "../os/identity.ts";
import { recordFile } from "../registry.ts";

const rt = await runtime();
const ffi = await native();
const unique = () => `${rt.pid}-${Math.random().toString(36).slice(2, 10)}`;

/** Runs `fn` with this process's records in a fresh private directory; restores the default afterwards. */
async function withRegistry(fn: (registry: string, dir: string) => Promise<void>): Promise<void> {
  const dir = await rt.makeTempDir("ipckit-records-test-");
  const registry = join(dir, "registry");
  mkdirSync(registry, { mode: 0o700 });
  resources.useRegistry(registry);
  try {
    await fn(registry, dir);
  } finally {
    resources.useRegistry(undefined);
    await rt.removeDir(dir);
  }
}

/** The record files in a registry directory. */
const files = (registry: string) => readdirSync(registry).filter((f) => f.endsWith(".json")).sort();

/** The records this process lists, as `kind name`. */
async function listed(registry: string, all = false): Promise<string[]> {
  return (await resources.list({ dir: registry, all })).map((r) => `${r.kind} ${r.name}`).sort();
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = rt.spawn(["true"], { stdio: "null" });
  await child.exited;
  return child.pid;
}

/** Writes a record by hand, filed under the name ipckit would give it. */
function forge(registry: string, record: Record<string, unknown>, file?: string): string {
  const path = join(registry, file ?? recordFile(record.kind as resources.Kind, record.name as string));
  writeFileSync(path, JSON.stringify({ v: 1, runtime: "node", created: Date.now(), ...record }));
  return path;
}

test("every kind is recorded while it exists, with this process as its live owner, and dropped with it", async () => {
  await withRegistry(async (registry, dir) => {
    const tag = unique();
    const name = `/ipckit-test-rec-${tag}`;
    const segment = await SharedMemory.create(name, { size: 4096 });
    const queue = await MessageQueue.create(name, { maxMessages: 2, messageSize: 16 });
    const sem = await NamedSemaphore.create(name);
    const listener = await unix.listen(join(dir, "s.sock"));
    const dgram = await unixDgram.bind(join(dir, "d.dgram"));
    const q = await SysvQueue.private();
    const abort = new AbortController();
    const pending = fifo.create(join(dir, "f"), { signal: abort.signal }).catch(() => undefined);
    try {
      while (!existsSync(join(dir, "f.out"))) await new Promise((r) => setTimeout(r, 5));
      const found = await resources.list({ dir: registry });
      assert.deepEqual(found.map((r) => `${r.kind} ${r.name}`).sort(), [
        `fifo ${join(dir, "f.in")}`,
        `fifo ${join(dir, "f.out")}`,
        `mq ${name}`,
        `sem ${name}`,
        `shm ${name}`,
        `sysv ${q.id}`,
        `unix ${join(dir, "s.sock")}`,
        `unix_dgram ${join(dir, "d.dgram")}`,
      ]);
      for (const r of found) {
        assert.equal(r.pid, rt.pid);
        assert.equal(r.runtime, rt.name);
        assert.equal(r.status, "alive");
        assert.ok(Date.now() - r.created < 600_000);
      }
      assert.equal(found.find((r) => r.kind === "sysv")?.key, 0);
      // A live owner's objects are never touched by clean().
      const report = await resources.clean({ dir: registry });
      assert.equal(report.kept.length, 8);
      assert.deepEqual([report.removed, report.dropped, report.failed], [[], [], []]);
    } finally {
      segment.unlink();
      segment.close();
      queue.unlink();
      queue.close();
      sem.unlink();
      await sem.close();
      await listener.close();
      await dgram.close();
      q.remove();
      abort.abort();
      await pending;
    }
    assert.deepEqual(files(registry), []);
  });
});

test("the static unlinks, openOrCreate and channels that unlink on attach leave no record", async () => {
  await withRegistry(async (registry, dir) => {
    const name = `/ipckit-test-rec-${unique()}`;
    (await SharedMemory.openOrCreate(name, { size: 64 })).close();
    (await SharedMemory.openOrCreate(name, { size: 64 })).close(); // opens: no second record
    const sem = await NamedSemaphore.openOrCreate(name, { value: 1 });
    await (await NamedSemaphore.openOrCreate(name)).close();
    await sem.close();
    (await MessageQueue.openOrCreate(name, { maxMessages: 1, messageSize: 8 })).close();
    assert.deepEqual(await listed(registry), [`mq ${name}`, `sem ${name}`, `shm ${name}`]);
    await SharedMemory.unlink(name);
    await NamedSemaphore.unlink(name);
    await MessageQueue.unlink(name);
    assert.deepEqual(files(registry), []);

    // Channels: the names go once the peer attached, and their records with them.
    const [a, b] = await Promise.all([shm.create(name), shm.open(name, { wait: 10_000 })]);
    const [c, d] = await Promise.all([mq.channel(name, { create: true }), mq.channel(name, { wait: 10_000 })]);
    const [e, f] = await Promise.all([fifo.create(join(dir, "p")), fifo.open(join(dir, "p"), { wait: 10_000 })]);
    const k = await sysv.key(dir, 9);
    const [g, h] = await Promise.all([sysv.channel(k, { create: true }), sysv.channel(k, { wait: 10_000 })]);
    assert.deepEqual((await listed(registry)).map((r) => r.split(" ")[0]), ["sysv"]); // a queue has no name to unlink
    for (const ch of [a, b, c, d, e, f, g, h]) await ch.close();
    assert.deepEqual(files(registry), []);
  });
});

test("a record whose object is gone is stale: listed only with all, dropped by clean()", async () => {
  await withRegistry(async (registry) => {
    const name = `/ipckit-test-rec-${unique()}`;
    const segment = await SharedMemory.create(name, { size: 64 });
    segment.close();
    ffi.call.shm_unlink(ffi.cstring(name)); // behind ipckit's back: the record stays
    assert.deepEqual(await listed(registry), []);
    const [stale] = await resources.list({ dir: registry, all: true });
    assert.equal(stale?.status, "stale");
    assert.equal(stale?.exists, false);
    const dry = await resources.clean({ dir: registry, dryRun: true });
    assert.equal(dry.dropped.length, 1);
    assert.equal(files(registry).length, 1, "a dry run drops nothing");
    const report = await resources.clean({ dir: registry });
    assert.deepEqual(report.dropped.map((r) => `${r.name} ${r.object}`), [`${name} gone`]); // not "replaced"
    assert.deepEqual(files(registry), []);
  });
});

test("clean() removes a dead owner's FIFO but never a regular file a forged record points at", async () => {
  await withRegistry(async (registry, dir) => {
    const pid = await deadPid();
    const precious = join(dir, "precious.txt");
    writeFileSync(precious, "keep me");
    const fileIdentity = identify(ffi, "fifo", precious);
    forge(registry, { kind: "fifo", name: precious, pid, start: null, identity: fileIdentity });
    forge(registry, { kind: "unix", name: precious, pid, start: null });
    const pipePath = join(dir, "left.fifo");
    assert.equal(ffi.call.mkfifo(ffi.cstring(pipePath), 0o600), 0);
    forge(registry, { kind: "fifo", name: pipePath, pid, start: null, identity: identify(ffi, "fifo", pipePath) });
    const listedNow = await resources.list({ dir: registry, all: true });
    assert.deepEqual(listedNow.map((r) => `${r.kind} ${r.status}`).sort(), ["fifo dead", "fifo stale", "unix stale"]);
    const report = await resources.clean({ dir: registry });
    assert.deepEqual(report.removed.map((r) => r.name), [pipePath]);
    assert.equal(report.dropped.length, 2);
    assert.equal(readFileSync(precious, "utf8"), "keep me");
    assert.equal(existsSync(pipePath), false);
    assert.deepEqual(files(registry), []);
  });
});

test("a reused pid is not the owner: a record with another start time counts as dead", async () => {
  await withRegistry(async (registry, dir) => {
    const pipePath = join(dir, "reused.fifo");
    assert.equal(ffi.call.mkfifo(ffi.cstring(pipePath), 0o600), 0);
    const path = forge(registry, { kind: "fifo", name: pipePath, pid: rt.pid, start: 1 });
    assert.equal((await resources.list({ dir: registry }))[0]?.owner, "dead");
    // The same record with this process's real start time (what ipckit writes) is alive.
    const stat = readFileSync(`/proc/${rt.pid}/stat`, "utf8");
    const start = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
    forge(registry, { kind: "fifo", name: pipePath, pid: rt.pid, start });
    assert.equal((await resources.list({ dir: registry }))[0]?.owner, "alive");
    assert.equal(existsSync(path), true);
    await rt.removeFile(pipePath);
  });
});

test("malformed, misfiled and pid-0 records are ignored, and clean() leaves them alone", async () => {
  await withRegistry(async (registry, dir) => {
    const target = join(dir, "t.fifo");
    assert.equal(ffi.call.mkfifo(ffi.cstring(target), 0o600), 0);
    forge(registry, { kind: "fifo", name: target, pid: 0, start: null });
    forge(registry, { kind: "fifo", name: target, pid: -1, start: null }, "fifo-0000000000000000.json");
    forge(registry, { kind: "fifo", name: target, pid: await deadPid(), start: null }, "fifo-misfiled.json");
    forge(registry, { kind: "shm", name: "/../../etc/passwd", pid: await deadPid(), start: null });
    forge(registry, { kind: "printer", name: target, pid: await deadPid(), start: null }, "printer-x.json");
    // Identities that are not well-formed (a time that is not one; a FIFO's without device and inode).
    const [t2, t3] = [join(dir, "t2.fifo"), join(dir, "t3.fifo")];
    for (const t of [t2, t3]) assert.equal(ffi.call.mkfifo(ffi.cstring(t), 0o600), 0);
    forge(registry, { kind: "fifo", name: t2, pid: await deadPid(), start: null, identity: { dev: "1:2", ino: "3" } });
    forge(registry, { kind: "fifo", name: t3, pid: await deadPid(), start: null, identity: { ctime: "1" } });
    writeFileSync(join(registry, "junk.json"), "{ not json");
    assert.deepEqual(await resources.list({ dir: registry, all: true }), []);
    const report = await resources.clean({ dir: registry });
    assert.deepEqual([report.removed, report.dropped, report.failed, report.kept], [[], [], [], []]);
    assert.deepEqual([target, t2, t3].map((t) => existsSync(t)), [true, true, true]);
    assert.equal(files(registry).length, 8);
    for (const t of [target, t2, t3]) await rt.removeFile(t);
  });
});

test('useRegistry("off") and IPCKIT_REGISTRY=off write nothing', async () => {
  await withRegistry(async (registry) => {
    resources.useRegistry("off");
    const where = await resources.location();
    assert.equal(where.dir, undefined);
    assert.match(where.reason, /IPCKIT_REGISTRY=off/);
    const name = `/ipckit-test-rec-${unique()}`;
    const segment = await SharedMemory.create(name, { size: 64 });
    segment.close();
    resources.useRegistry(registry);
    assert.deepEqual(files(registry), []);
    segment.unlink();
    assert.deepEqual(await resources.list(), []); // list() reads this process's location
  });
  const saved = process.env.IPCKIT_REGISTRY;
  process.env.IPCKIT_REGISTRY = "off";
  resources.useRegistry(undefined);
  try {
    assert.equal((await resources.location()).dir, undefined);
  } finally {
    if (saved === undefined) delete process.env.IPCKIT_REGISTRY;
    else process.env.IPCKIT_REGISTRY = saved;
    resources.useRegistry(undefined);
  }
});

test("the default directory is used only when it is a private directory of this user", async () => {
  const dir = await rt.makeTempDir("ipckit-records-default-");
  const saved = { ...process.env };
  const uid = ffi.call.getuid();
  // Each case gets its own TMPDIR, set up before the environment points at it (a late record removal of an earlier
  // test may resolve the location at any moment).
  const fresh = join(dir, "fresh");
  const open = join(dir, "open");
  const linked = join(dir, "linked");
  const elsewhere = join(dir, "elsewhere");
  for (const d of [fresh, open, linked, elsewhere]) mkdirSync(d, { mode: 0o700 });
  mkdirSync(join(open, `ipckit-${uid}`));
  chmodSync(join(open, `ipckit-${uid}`), 0o777);
  symlinkSync(elsewhere, join(linked, `ipckit-${uid}`));
  try {
    delete process.env.IPCKIT_REGISTRY;
    delete process.env.XDG_RUNTIME_DIR;
    process.env.TMPDIR = fresh;
    resources.useRegistry(undefined);
    // Made on first use.
    assert.equal((await resources.location()).dir, join(fresh, `ipckit-${uid}`));
    assert.equal(readdirSync(fresh).includes(`ipckit-${uid}`), true);
    process.env.TMPDIR = open;
    assert.match((await resources.location()).reason, /not a private directory/);
    process.env.TMPDIR = linked;
    resources.useRegistry(undefined);
    const where = await resources.location();
    assert.equal(where.dir, undefined);
    assert.match(where.reason, /is not a directory/);
    // Nothing is written there either.
    const name = `/ipckit-test-rec-${unique()}`;
    const segment = await SharedMemory.create(name, { size: 64 });
    segment.unlink();
    segment.close();
    assert.deepEqual(readdirSync(elsewhere), []);
    process.env.XDG_RUNTIME_DIR = elsewhere;
    assert.equal((await resources.location()).dir, join(elsewhere, "ipckit"));
  } finally {
    for (const key of ["IPCKIT_REGISTRY", "XDG_RUNTIME_DIR", "TMPDIR"]) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
    resources.useRegistry(undefined);
    await rt.removeDir(dir);
  }
});

// ---- identity: clean() removes only what is still the very object recorded (issue 16, finding 5)

const OTHER_PROGRAM = rt.fromFileUrl(new URL("./helpers/other_program.py", import.meta.url));

interface Other {
  pid: number;
  zombie?: number;
  reused?: number;
  /** Ends the program (its objects stay: the test removes them). */
  stop(): Promise<void>;
}

/** Starts tests/helpers/other_program.py (Python, plain libc): it makes `spec`'s objects and keeps them. */
async function otherProgram(spec: Record<string, unknown>): Promise<Other> {
  const child = spawn("python3", [OTHER_PROGRAM, JSON.stringify(spec)], { stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let err = "";
  let ended = false;
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  void closed.then(() => (ended = true));
  const stop = async () => {
    child.stdin.end();
    const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
    await closed;
    clearTimeout(timer);
  };
  const deadline = Date.now() + 60_000;
  while (!out.includes("\n")) {
    if (ended || Date.now() > deadline) {
      child.kill("SIGKILL");
      await closed;
      throw new Error(`the Python program did not get ready: ${err || out}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return { ...JSON.parse(out), stop };
}

/** Removes named objects whatever made them, ignoring what is gone. */
function removeNamed(names: { shm?: string; mq?: string; sem?: string; paths?: string[] }): void {
  if (names.shm) ffi.call.shm_unlink(ffi.cstring(names.shm));
  if (names.mq) ffi.call.mq_unlink(ffi.cstring(names.mq));
  if (names.sem) ffi.call.sem_unlink(ffi.cstring(names.sem));
  for (const p of names.paths ?? []) ffi.call.unlink(ffi.cstring(p));
}

/** A record file's JSON, with its owner changed to `pid` (a process that is gone): what a killed creator leaves. */
function orphan(path: string, pid: number): Record<string, unknown> {
  return { ...JSON.parse(readFileSync(path, "utf8")), pid, start: null };
}

/** This process's start time, as /proc/<pid>/stat gives it. */
function startOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
}

test("clean() keeps what another program made under the names of a dead owner's removed objects", {
  timeout: 120_000,
}, async () => {
  await withRegistry(async (registry, dir) => {
    const name = `/ipckit-test-rec-${unique()}`;
    const paths = { socket: join(dir, "s.sock"), dgram: join(dir, "d.sock"), fifo: join(dir, "f") };
    const named = { shm: name, mq: name, sem: name, paths: [paths.socket, paths.dgram, `${paths.fifo}.in`] };
    let other: Other | undefined;
    try {
      // ipckit makes one object of each kind with a name; their records (with identities) are kept aside.
      const segment = await SharedMemory.create(name, { size: 4096 });
      const queue = await MessageQueue.create(name, { maxMessages: 2, messageSize: 16 });
      const sem = await NamedSemaphore.create(name);
      const listener = await unix.listen(paths.socket);
      const dgram = await unixDgram.bind(paths.dgram);
      const abort = new AbortController();
      const pending = fifo.create(paths.fifo, { signal: abort.signal }).catch(() => undefined);
      while (!existsSync(`${paths.fifo}.out`)) await new Promise((r) => setTimeout(r, 5));
      const saved = files(registry).map((f) => [f, readFileSync(join(registry, f), "utf8")] as const);
      assert.equal(saved.length, 7);
      // The objects are removed; the owner "dies" with its records left behind (written back, with a dead pid).
      segment.unlink();
      segment.close();
      queue.unlink();
      queue.close();
      sem.unlink();
      await sem.close();
      await listener.close();
      await dgram.close();
      abort.abort();
      await pending;
      const dead = await deadPid();
      for (const [f, text] of saved) {
        writeFileSync(join(registry, f), JSON.stringify({ ...JSON.parse(text), pid: dead }));
      }
      // Another program (Python, plain libc) makes new objects under the same names.
      other = await otherProgram({
        shm: name,
        mq: name,
        sem: name,
        socket: paths.socket,
        dgram: paths.dgram,
        fifo: `${paths.fifo}.in`,
      });
      const listedNow = await resources.list({ dir: registry, all: true });
      const report = await resources.clean({ dir: registry });
      // The other program's objects are all still there.
      assert.ok(existsSync(`/dev/shm${name}`), "the segment");
      assert.ok(existsSync(`/dev/shm/sem.${name.slice(1)}`), "the semaphore");
      assert.notEqual(identify(ffi, "mq", name), undefined, "the message queue");
      for (const p of named.paths) assert.ok(existsSync(p), p);
      assert.deepEqual(
        listedNow.map((r) => `${r.kind} ${r.object} ${r.status}`).sort(),
        [
          "fifo gone stale", // f.out: nothing there now
          "fifo replaced stale",
          "mq replaced stale",
          "sem replaced stale",
          "shm replaced stale",
          "unix replaced stale",
          "unix_dgram replaced stale",
        ],
      );
      assert.deepEqual(report.removed, []);
      assert.deepEqual(report.failed, []);
      assert.equal(report.dropped.length, 7);
      assert.deepEqual(files(registry), [], "the stale records are dropped");
    } finally {
      await other?.stop();
      removeNamed(named);
    }
  });
});

test("clean() never removes a live object of another program that a forged record points at", {
  timeout: 120_000,
}, async () => {
  await withRegistry(async (registry, dir) => {
    const name = `/ipckit-test-rec-${unique()}`;
    const paths = { socket: join(dir, "s.sock"), dgram: join(dir, "d.sock"), fifo: join(dir, "p.fifo") };
    const named = { shm: name, mq: name, sem: name, paths: Object.values(paths) };
    const other = await otherProgram({ shm: name, mq: name, sem: name, ...paths });
    try {
      const pid = await deadPid();
      const targets: [resources.Kind, string][] = [
        ["shm", name],
        ["mq", name],
        ["sem", name],
        ["unix", paths.socket],
        ["unix_dgram", paths.dgram],
        ["fifo", paths.fifo],
      ];
      // Records without an identity (as older ipckit versions wrote them): reported, never removed.
      for (const [kind, target] of targets) forge(registry, { kind, name: target, pid, start: null });
      const listed = await resources.list({ dir: registry });
      const report = await resources.clean({ dir: registry });
      const allThere = () => {
        assert.ok(existsSync(`/dev/shm${name}`) && existsSync(`/dev/shm/sem.${name.slice(1)}`));
        assert.notEqual(identify(ffi, "mq", name), undefined);
        for (const p of named.paths) assert.ok(existsSync(p), p);
      };
      allThere();
      assert.deepEqual(listed.map((r) => `${r.object} ${r.status}`), new Array(6).fill("unverified dead"));
      assert.deepEqual([report.removed, report.dropped, report.failed], [[], [], []]);
      assert.equal(report.unverified.length, 6);
      assert.equal(files(registry).length, 6, "their records stay, to be seen");
      // Records with an identity that is not the object's (as if made for an earlier object of that name).
      for (const [kind, target] of targets) {
        const real = identify(ffi, kind, target)!;
        const forged = { ...real, ino: String(BigInt(real.ino!) + 1n), ctime: "1.000000000" };
        delete (forged as { btime?: string }).btime;
        forge(registry, { kind, name: target, pid, start: null, identity: forged });
      }
      const again = await resources.clean({ dir: registry });
      allThere();
      assert.deepEqual([again.removed, again.failed], [[], []]);
      assert.deepEqual(again.dropped.map((r) => r.object), new Array(6).fill("replaced"));
    } finally {
      await other.stop();
      removeNamed(named);
    }
  });
});

test("clean() removes a dead owner's objects whose identity matches; force also takes unverified ones", async () => {
  await withRegistry(async (registry, dir) => {
    const name = `/ipckit-test-rec-${unique()}`;
    const paths = [join(dir, "s.sock"), join(dir, "d.sock"), join(dir, "x.fifo")];
    let q: SysvQueue | undefined;
    const closers: (() => unknown)[] = [];
    try {
      const segment = await SharedMemory.create(name, { size: 64 });
      closers.push(() => segment.close());
      const queue = await MessageQueue.create(name, { maxMessages: 2, messageSize: 16 });
      closers.push(() => queue.close());
      await queue.send(new Uint8Array([1])); // traffic moves a queue's ctime: still the same queue
      const sem = await NamedSemaphore.create(name);
      closers.push(() => sem.close());
      const listener = await unix.listen(paths[0]!);
      closers.push(() => listener.close()); // its socket file is gone by then, or removed by this
      const dgram = await unixDgram.bind(paths[1]!);
      closers.push(() => dgram.close());
      q = await SysvQueue.private();
      q.setMaxBytes(4096); // IPC_SET moves msg_ctime: still the same queue
      const dead = await deadPid();
      const records = files(registry).map((f) => join(registry, f));
      const orphans = records.map((f) => orphan(f, dead));
      // The process "dies" without closing anything (its handles are dropped below, after the clean).
      for (const [i, f] of records.entries()) writeFileSync(f, JSON.stringify(orphans[i]));
      // An older record without identity, of a FIFO: left alone, unless forced.
      assert.equal(ffi.call.mkfifo(ffi.cstring(paths[2]!), 0o600), 0);
      forge(registry, { kind: "fifo", name: paths[2], pid: dead, start: null });
      const report = await resources.clean({ dir: registry });
      assert.deepEqual(report.removed.map((r) => r.kind).sort(), ["mq", "sem", "shm", "sysv", "unix", "unix_dgram"]);
      assert.deepEqual(report.unverified.map((r) => r.name), [paths[2]]);
      assert.equal(existsSync(`/dev/shm${name}`), false);
      assert.equal(identify(ffi, "mq", name), undefined);
      assert.equal(identify(ffi, "sysv", String(q.id)), undefined);
      assert.deepEqual(paths.map((p) => existsSync(p)), [false, false, true]);
      const forced = await resources.clean({ dir: registry, force: true });
      assert.deepEqual(forced.removed.map((r) => r.name), [paths[2]]);
      assert.equal(existsSync(paths[2]!), false);
      assert.deepEqual(files(registry), []);
    } finally {
      for (const close of closers) await close();
      removeNamed({ shm: name, mq: name, sem: name, paths });
      if (q !== undefined) ffi.call.msgctl(q.id, 0, /* IPC_RMID */ null);
    }
  });
});

test('older records of kinds "socket" and "dgram" are listed as unix and unix_dgram, and cleaned', async () => {
  await withRegistry(async (registry, dir) => {
    const paths = { socket: join(dir, "s.sock"), dgram: join(dir, "d.sock") };
    const listener = await unix.listen(paths.socket);
    const bound = await unixDgram.bind(paths.dgram);
    try {
      const dead = await deadPid();
      // What an older ipckit wrote: the same record (with identity) under the old kind word and its file name.
      for (const [old, path] of Object.entries(paths)) {
        const kind = old === "socket" ? "unix" : "unix_dgram";
        const current = join(registry, recordFile(kind, path));
        const record = { ...JSON.parse(readFileSync(current, "utf8")), kind: old, pid: dead, start: null };
        rmSync(current);
        forge(registry, record, recordFile(old as resources.Kind, path));
      }
      assert.deepEqual(files(registry).map((f) => f.split("-")[0]).sort(), ["dgram", "socket"]);
      const shown = await resources.list({ dir: registry });
      assert.deepEqual(shown.map((r) => `${r.kind} ${r.name} ${r.object} ${r.status}`).sort(), [
        `unix ${paths.socket} same dead`,
        `unix_dgram ${paths.dgram} same dead`,
      ]);
      const report = await resources.clean({ dir: registry });
      assert.deepEqual(report.removed.map((r) => r.kind).sort(), ["unix", "unix_dgram"]);
      assert.deepEqual([existsSync(paths.socket), existsSync(paths.dgram)], [false, false]);
      assert.deepEqual(files(registry), [], "the old records went with their objects");
    } finally {
      await listener.close();
      await bound.close();
    }
  });
});

test("a zombie owner is dead for list() and clean(): its object is removed", { timeout: 60_000 }, async () => {
  await withRegistry(async (registry, dir) => {
    const other = await otherProgram({ zombie: true });
    const pipePath = join(dir, "z.fifo");
    try {
      const zombie = other.zombie!;
      assert.match(readFileSync(`/proc/${zombie}/stat`, "utf8"), /\) Z /, "the child is a zombie");
      assert.equal(ffi.call.mkfifo(ffi.cstring(pipePath), 0o600), 0);
      const identity = identify(ffi, "fifo", pipePath);
      forge(registry, { kind: "fifo", name: pipePath, pid: zombie, start: startOf(zombie), identity });
      const [r] = await resources.list({ dir: registry });
      assert.equal(r?.owner, "dead");
      assert.equal(r?.status, "dead");
      const report = await resources.clean({ dir: registry });
      assert.deepEqual(report.removed.map((x) => x.name), [pipePath]);
      assert.equal(existsSync(pipePath), false);
      // Its live parent, with its real start time, is alive: the same object recorded for it would be kept.
      assert.equal(ffi.call.mkfifo(ffi.cstring(pipePath), 0o600), 0);
      forge(registry, {
        kind: "fifo",
        name: pipePath,
        pid: other.pid,
        start: startOf(other.pid),
        identity: identify(ffi, "fifo", pipePath),
      });
      assert.equal((await resources.clean({ dir: registry })).kept.length, 1);
      assert.equal(existsSync(pipePath), true);
    } finally {
      await other.stop();
      removeNamed({ paths: [pipePath] });
    }
  });
});

test("a reused pid is told apart: the dead owner's object is removed, the new process's kept", {
  timeout: 120_000,
}, async (t) => {
  if (ffi.call.getuid() !== 0) {
    t.skip("needs root: a new process is made to take a dead one's pid by writing /proc/sys/kernel/ns_last_pid");
    return;
  }
  await withRegistry(async (registry, dir) => {
    // The first owner: a process that ran, then died and was reaped.
    const first = rt.spawn(["sleep", "600"], { stdio: "null" });
    const pid = first.pid;
    const firstStart = startOf(pid);
    first.kill("SIGKILL");
    await first.exited;
    const other = await otherProgram({ reuse: pid });
    const mine = join(dir, "first.fifo");
    const theirs = join(dir, "second.fifo");
    try {
      assert.equal(other.reused, pid, `a new process took pid ${pid} (another fork may have taken it every try)`);
      const secondStart = startOf(pid);
      assert.notEqual(secondStart, firstStart);
      for (const [path, start] of [[mine, firstStart], [theirs, secondStart]] as const) {
        assert.equal(ffi.call.mkfifo(ffi.cstring(path), 0o600), 0);
        forge(registry, { kind: "fifo", name: path, pid, start, identity: identify(ffi, "fifo", path) });
      }
      const listed = await resources.list({ dir: registry });
      assert.deepEqual(
        listed.map((r) => `${r.name === mine ? "first" : "second"} ${r.owner}`).sort(),
        ["first dead", "second alive"],
      );
      const report = await resources.clean({ dir: registry });
      assert.deepEqual(report.removed.map((r) => r.name), [mine]);
      assert.deepEqual(report.kept.map((r) => r.name), [theirs]);
      assert.deepEqual([existsSync(mine), existsSync(theirs)], [false, true]);
    } finally {
      await other.stop();
      removeNamed({ paths: [mine, theirs] });
    }
  });
});
