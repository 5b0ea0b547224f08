import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import {
  ClosedError,
  FileLock,
  NotFoundError,
  PermissionError,
  pipe,
  runtime,
  runtimeArgv,
  TimeoutError,
} from "../mod.ts";
import type { ByteStream, ChildProcess, RuntimeName } from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";

const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("../", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/filelock_child.ts", import.meta.url));
const text = new TextDecoder();
const enc = new TextEncoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` with a fresh temp dir, removed afterwards. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await rt.makeTempDir("ipckit-filelock-");
  try {
    await fn(dir);
  } finally {
    await rt.removeDir(dir);
  }
}

/** Collects a child's stdout text; `until(s)` waits for `s` to appear. */
function output(stream: ByteStream): { until(s: string, ms?: number): Promise<void> } {
  let seen = "";
  let ended = false;
  stream.start({ data: (c) => void (seen += text.decode(c, { stream: true })), end: () => void (ended = true) });
  return {
    async until(s, ms = 30_000) {
      const deadline = Date.now() + ms;
      while (!seen.includes(s)) {
        if (ended || Date.now() > deadline) throw new Error(`expected "${s}" on the child's stdout, got "${seen}"`);
        await sleep(10);
      }
    },
  };
}

async function reap(child: ChildProcess): Promise<void> {
  child.kill("SIGKILL");
  await child.exited.catch(() => {});
}

async function hasFlockCommand(): Promise<boolean> {
  try {
    const c = rt.spawn(["flock", "--version"], { stdio: "null", stderr: "null" });
    return (await c.exited).code === 0;
  } catch {
    return false;
  }
}

test("FileLock: an exclusive lock excludes another FileLock on the same path in the same process", async () => {
  await withDir(async (dir) => {
    using a = await FileLock.open(`${dir}/x.lock`);
    using b = await FileLock.open(`${dir}/x.lock`);
    const ga = a.tryLock();
    assert.ok(ga);
    assert.equal(b.tryLock(), undefined);
    assert.equal(b.tryLock({ shared: true }), undefined);
    ga.release();
    assert.equal(ga.held, false);
    using gb = b.tryLock();
    assert.ok(gb);
    assert.equal(a.tryLock(), undefined);
  });
});

test("FileLock: shared locks coexist; a shared lock excludes an exclusive one and the other way round", async () => {
  await withDir(async (dir) => {
    using a = await FileLock.open(`${dir}/x.lock`);
    using b = await FileLock.open(`${dir}/x.lock`);
    using c = await FileLock.open(`${dir}/x.lock`);
    const ga = a.tryLock({ shared: true });
    const gb = b.tryLock({ shared: true });
    assert.ok(ga && gb && ga.shared);
    assert.equal(c.tryLock(), undefined);
    const ga2 = a.tryLock({ shared: true }); // a second shared holder on the same object
    assert.ok(ga2);
    ga.release();
    gb.release();
    assert.equal(c.tryLock(), undefined, "a still holds one shared hold");
    ga2.release();
    using gc = c.tryLock();
    assert.ok(gc);
    assert.equal(a.tryLock({ shared: true }), undefined);
  });
});

test("FileLock: one object queues its own holders, and unlock()/close() release everything", async () => {
  await withDir(async (dir) => {
    using a = await FileLock.open(`${dir}/x.lock`);
    using b = await FileLock.open(`${dir}/x.lock`);
    const g1 = await a.lock();
    assert.equal(a.tryLock(), undefined, "flock alone would let the same fd in again");
    const second = a.lock({ timeout: 5_000 });
    await sleep(20);
    g1.release();
    const g2 = await second;
    assert.equal(b.tryLock(), undefined);
    a.unlock();
    assert.equal(g2.held, false, "unlock() releases every guard of the object");
    g2.release(); // harmless: a newer generation
    const gb = b.tryLock();
    assert.ok(gb);
    const pending = a.lock();
    await sleep(5);
    a.close();
    await assert.rejects(pending, ClosedError);
    assert.throws(() => a.tryLock(), ClosedError);
    a.close(); // idempotent
    gb.release();
  });
});

test("FileLock.open() creates the file with mode 0600, or rejects with NotFoundError when create is false", async () => {
  await withDir(async (dir) => {
    await assert.rejects(FileLock.open(`${dir}/missing.lock`, { create: false }), NotFoundError);
    await assert.rejects(FileLock.open(`${dir}/no/such/dir.lock`), NotFoundError);
    await assert.rejects(FileLock.open(""), TypeError);
    await assert.rejects(FileLock.open(`${dir}/x.lock`, { mode: 0o1000 }), RangeError);
    using a = await FileLock.open(`${dir}/x.lock`);
    assert.equal(a.path, `${dir}/x.lock`);
    const { statSync } = await import("node:fs");
    assert.equal(statSync(`${dir}/x.lock`).mode & 0o777, 0o600);
    using b = await FileLock.open(`${dir}/x.lock`, { create: false });
    assert.ok(b);
  });
});

test("FileLock.open() refuses a symlink planted at the lock path: nothing is created or touched through it", async () => {
  await withDir(async (dir) => {
    const { existsSync, mkdirSync, symlinkSync, statSync } = await import("node:fs");
    // A dangling link: following it would create the victim file (as root, anywhere the link points).
    const victim = `${dir}/victim-created`;
    symlinkSync(victim, `${dir}/a.lock`);
    await assert.rejects(FileLock.open(`${dir}/a.lock`), (e: Error) => {
      assert.ok(e instanceof PermissionError, `${e.name}: ${e.message}`);
      assert.equal((e as PermissionError).code, "ELOOP");
      assert.match(e.message, /^Cannot open lock file ".*a\.lock": it is a symbolic link/);
      return true;
    });
    assert.equal(existsSync(victim), false, "the link's target was not created");
    // A link to an existing file: refused, whether creating or not; the file is untouched (content, mode, lock).
    const precious = `${dir}/precious`;
    await writeFile(precious, "keep me", { mode: 0o644 });
    const before = statSync(precious);
    symlinkSync(precious, `${dir}/b.lock`);
    await assert.rejects(FileLock.open(`${dir}/b.lock`), PermissionError);
    await assert.rejects(FileLock.open(`${dir}/b.lock`, { create: false }), PermissionError);
    assert.equal(await readFile(precious, "utf8"), "keep me");
    assert.equal(statSync(precious).mode & 0o777, 0o644);
    assert.equal(statSync(precious).ctimeMs, before.ctimeMs);
    using direct = await FileLock.open(precious, { create: false });
    using held = direct.tryLock();
    assert.ok(held, "no FileLock holds a lock on the link's target");
    // Links in the directories above the lock file are followed as usual.
    mkdirSync(`${dir}/real`);
    symlinkSync(`${dir}/real`, `${dir}/linked`);
    using through = await FileLock.open(`${dir}/linked/c.lock`);
    assert.ok(through.tryLock());
    assert.equal(existsSync(`${dir}/real/c.lock`), true);
  });
});

test("FileLock.lock() rejects with TimeoutError after timeout, and with the abort reason when aborted", async () => {
  await withDir(async (dir) => {
    using a = await FileLock.open(`${dir}/x.lock`);
    using b = await FileLock.open(`${dir}/x.lock`);
    using _g = await a.lock();
    const t0 = Date.now();
    await assert.rejects(b.lock({ timeout: 100 }), TimeoutError);
    assert.ok(Date.now() - t0 >= 95);
    await assert.rejects(b.lock({ timeout: 0 }), TimeoutError);
    const ac = new AbortController();
    const pending = b.lock({ signal: ac.signal });
    setTimeout(() => ac.abort(), 30);
    await assert.rejects(pending, (e: Error) => e.name === "AbortError");
    await assert.rejects(b.lock({ signal: AbortSignal.abort() }), (e: Error) => e.name === "AbortError");
    await assert.rejects(b.lock({ timeout: -1 }), RangeError);
  });
});

test("FileLock: async lockers on several objects increment a counter in a file without losing an update", async () => {
  await withDir(async (dir) => {
    const counter = `${dir}/counter`;
    await writeFile(counter, "0");
    const locks = await Promise.all([0, 1, 2].map(() => FileLock.open(`${dir}/x.lock`)));
    try {
      const tasks = locks.flatMap((l) =>
        [0, 1].map(async () => {
          for (let i = 0; i < 4; i++) {
            await using _g = await l.lock({ timeout: 20_000 });
            const n = Number(await readFile(counter, "utf8"));
            await sleep(1);
            await writeFile(counter, String(n + 1));
          }
        })
      );
      await Promise.all(tasks);
      assert.equal(await readFile(counter, "utf8"), "24");
    } finally {
      for (const l of locks) l.close();
    }
  });
});

for (const peer of RUNTIMES) {
  test(`FileLock: a lock held by a ${peer} child excludes the parent until released, and dies with the child`, {
    timeout: 120_000,
  }, async () => {
    await withDir(async (dir) => {
      const path = `${dir}/x.lock`;
      using mine = await FileLock.open(path);
      const { channel, child } = await pipe.spawn([...runtimeArgv(peer as RuntimeName, CHILD), path], { cwd: ROOT });
      try {
        assert.equal(text.decode(await channel.receive({ timeout: 60_000 })), "locked");
        assert.equal(mine.tryLock(), undefined);
        await assert.rejects(mine.lock({ timeout: 50 }), TimeoutError);
        const waiting = mine.lock({ timeout: 30_000 });
        await channel.send(enc.encode("release"));
        assert.equal(text.decode(await channel.receive({ timeout: 30_000 })), "released");
        (await waiting).release();
        await channel.send(enc.encode("lock"));
        assert.equal(text.decode(await channel.receive({ timeout: 30_000 })), "locked");
        assert.equal(mine.tryLock(), undefined);
        child.kill("SIGKILL");
        assert.equal((await child.exited).signal, "SIGKILL");
        using _g = await mine.lock({ timeout: 5_000 });
      } finally {
        await channel.close();
        await reap(child);
      }
    });
  });
}

const PY_HOLD = `import fcntl, sys
f = open(sys.argv[1], "a")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()`;
const PY_TRY = `import fcntl, sys
f = open(sys.argv[1], "a")
try:
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(3)
sys.exit(0)`;

test(
  "FileLock: a Python fcntl.flock holder excludes us, and our lock excludes Python",
  { timeout: 60_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/x.lock`;
      using mine = await FileLock.open(path);
      const holder = rt.spawn(["python3", "-c", PY_HOLD, path], { stdio: "pipe" });
      try {
        await output(holder.stdio!).until("locked");
        assert.equal(mine.tryLock(), undefined);
        const waiting = mine.lock({ timeout: 10_000 });
        holder.kill("SIGKILL");
        const g = await waiting;
        const tryer = rt.spawn(["python3", "-c", PY_TRY, path], { stdio: "null" });
        assert.equal((await tryer.exited).code, 3, "Python got BlockingIOError while we hold the lock");
        g.release();
        const again = rt.spawn(["python3", "-c", PY_TRY, path], { stdio: "null" });
        assert.equal((await again.exited).code, 0);
      } finally {
        await reap(holder);
      }
    });
  },
);

test("FileLock: flock(1) from util-linux and FileLock exclude each other", { timeout: 60_000 }, async (t) => {
  if (!(await hasFlockCommand())) {
    t.skip("the flock command is not installed");
    return;
  }
  await withDir(async (dir) => {
    const path = `${dir}/x.lock`;
    using mine = await FileLock.open(path);
    // -o: the command does not inherit the lock's fd, so only flock(1) holds it; it ends when stdin ends.
    const holder = rt.spawn(["flock", "-o", path, "-c", "echo locked; read _"], { stdio: "pipe" });
    try {
      await output(holder.stdio!).until("locked");
      assert.equal(mine.tryLock(), undefined);
      const waiting = mine.lock({ timeout: 10_000 });
      holder.stdio!.close(); // `read` sees EOF: the shell and flock(1) exit
      const g = await waiting;
      const tryer = rt.spawn(["flock", "-n", "-E", "3", path, "-c", "true"], { stdio: "null" });
      assert.equal((await tryer.exited).code, 3, "flock -n fails while we hold the lock");
      g.release();
      const again = rt.spawn(["flock", "-n", "-E", "3", path, "-c", "true"], { stdio: "null" });
      assert.equal((await again.exited).code, 0);
    } finally {
      await reap(holder);
    }
  });
});
