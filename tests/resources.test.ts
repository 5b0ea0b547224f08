import { test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fifo, mq, NamedSemaphore, resources, runtime, SharedMemory, shm, sysv, unix, unixDgram } from "../mod.ts";
import { native } from "../ffi/native.ts";
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
    const queue = await mq.create(name, { maxMessages: 2, messageSize: 16 });
    const sem = await NamedSemaphore.create(name);
    const listener = await unix.listen(join(dir, "s.sock"));
    const dgram = await unixDgram.bind(join(dir, "d.dgram"));
    const q = await sysv.private();
    const abort = new AbortController();
    const pending = fifo.create(join(dir, "f"), { signal: abort.signal }).catch(() => undefined);
    try {
      while (!existsSync(join(dir, "f.out"))) await new Promise((r) => setTimeout(r, 5));
      const found = await resources.list({ dir: registry });
      assert.deepEqual(found.map((r) => `${r.kind} ${r.name}`).sort(), [
        `dgram ${join(dir, "d.dgram")}`,
        `fifo ${join(dir, "f.in")}`,
        `fifo ${join(dir, "f.out")}`,
        `mq ${name}`,
        `sem ${name}`,
        `shm ${name}`,
        `socket ${join(dir, "s.sock")}`,
        `sysv ${q.id}`,
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
    (await mq.openOrCreate(name, { maxMessages: 1, messageSize: 8 })).close();
    assert.deepEqual(await listed(registry), [`mq ${name}`, `sem ${name}`, `shm ${name}`]);
    await SharedMemory.unlink(name);
    await NamedSemaphore.unlink(name);
    await mq.MessageQueue.unlink(name);
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
    assert.deepEqual(report.dropped.map((r) => r.name), [name]);
    assert.deepEqual(files(registry), []);
  });
});

test("clean() removes a dead owner's FIFO but never a regular file a forged record points at", async () => {
  await withRegistry(async (registry, dir) => {
    const pid = await deadPid();
    const precious = join(dir, "precious.txt");
    writeFileSync(precious, "keep me");
    forge(registry, { kind: "fifo", name: precious, pid, start: null });
    forge(registry, { kind: "socket", name: precious, pid, start: null });
    const pipePath = join(dir, "left.fifo");
    assert.equal(ffi.call.mkfifo(ffi.cstring(pipePath), 0o600), 0);
    forge(registry, { kind: "fifo", name: pipePath, pid, start: null });
    const listedNow = await resources.list({ dir: registry, all: true });
    assert.deepEqual(listedNow.map((r) => `${r.kind} ${r.status}`).sort(), ["fifo dead", "fifo stale", "socket stale"]);
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
    writeFileSync(join(registry, "junk.json"), "{ not json");
    assert.deepEqual(await resources.list({ dir: registry, all: true }), []);
    const report = await resources.clean({ dir: registry });
    assert.deepEqual([report.removed, report.dropped, report.failed, report.kept], [[], [], [], []]);
    assert.equal(existsSync(target), true);
    assert.equal(files(registry).length, 6);
    await rt.removeFile(target);
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
