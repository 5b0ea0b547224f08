import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import {
  AlreadyExistsError,
  ClosedError,
  NamedSemaphore,
  NotFoundError,
  runtime,
  runtimeArgv,
  TimeoutError,
} from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";

const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("../", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/sem_child.ts", import.meta.url));
const name = () => `/ipckit-test-sem-${rt.pid}-${Math.random().toString(36).slice(2, 10)}`;

async function withSem(value: number, fn: (sem: NamedSemaphore) => Promise<void>): Promise<void> {
  const sem = await NamedSemaphore.create(name(), { value });
  try {
    await fn(sem);
  } finally {
    await sem.close();
    await NamedSemaphore.unlink(sem.name).catch(() => {});
  }
}

test("NamedSemaphore counts permits: tryAcquire takes them, release returns them, value shows the count", async () => {
  await withSem(2, (sem) => {
    assert.equal(sem.value, 2);
    const a = sem.tryAcquire();
    const b = sem.tryAcquire();
    assert.ok(a && b);
    assert.equal(sem.tryAcquire(), undefined);
    assert.equal(sem.value, 0);
    a.release();
    a.release(); // idempotent
    assert.equal(sem.value, 1);
    b[Symbol.dispose]();
    sem.release(3);
    assert.equal(sem.value, 5);
    return Promise.resolve();
  });
});

test("NamedSemaphore.acquire() waits without freezing the event loop and gets the permit released later", async () => {
  await withSem(0, async (sem) => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    try {
      setTimeout(() => sem.release(), 100);
      using _permit = await sem.acquire({ timeout: 30_000 });
      assert.ok(ticks > 0, "the event loop kept running while acquire() waited");
    } finally {
      clearInterval(timer);
    }
  });
});

test("NamedSemaphore.acquire() rejects with TimeoutError, and with the abort reason, without taking a permit", async () => {
  await withSem(0, async (sem) => {
    await assert.rejects(sem.acquire({ timeout: 50 }), TimeoutError);
    const ac = new AbortController();
    const pending = assert.rejects(sem.acquire({ signal: ac.signal }), (e: Error) => e.name === "AbortError");
    setTimeout(() => ac.abort(), 30);
    await pending;
    assert.equal(sem.value, 0);
    await assert.rejects(sem.acquire({ timeout: -1 }), RangeError);
  });
});

test("NamedSemaphore: create/open/unlink errors and name validation", async () => {
  const n = name();
  await assert.rejects(NamedSemaphore.open(n), NotFoundError);
  const sem = await NamedSemaphore.create(n, { value: 1 });
  try {
    await assert.rejects(NamedSemaphore.create(n), AlreadyExistsError);
    const again = await NamedSemaphore.openOrCreate(n, { value: 9 });
    assert.equal(again.value, 1, "openOrCreate opened the existing one");
    await again.close();
    sem.unlink();
    assert.throws(() => sem.unlink(), NotFoundError);
    assert.equal(sem.value, 1, "an unlinked semaphore still works through open handles");
  } finally {
    await sem.close();
  }
  await assert.rejects(NamedSemaphore.create("no-slash"), TypeError);
  await assert.rejects(NamedSemaphore.create(name(), { value: -1 }), RangeError);
  await assert.rejects(NamedSemaphore.create(name(), { mode: 0o1000 }), RangeError);
  assert.throws(() => sem.tryAcquire(), ClosedError);
});

test("NamedSemaphore.close() ends a waiting acquire() with ClosedError", async () => {
  const sem = await NamedSemaphore.create(name(), { value: 0 });
  try {
    const pending = assert.rejects(sem.acquire(), ClosedError);
    await new Promise((r) => setTimeout(r, 20));
    await sem.close();
    await pending;
  } finally {
    await NamedSemaphore.unlink(sem.name);
  }
});

test("a NamedSemaphore(1) keeps a counter exact across children of every runtime", { timeout: 120_000 }, async () => {
  await withSem(1, async (sem) => {
    const dir = await rt.makeTempDir("ipckit-test-");
    const file = `${dir}/counter`;
    writeFileSync(file, "0");
    const rounds = 40;
    const children = RUNTIMES.map((r) =>
      rt.spawn([...runtimeArgv(r, CHILD), sem.name, file, String(rounds)], { cwd: ROOT, stdio: "null" })
    );
    try {
      const statuses = await Promise.all(children.map((c) => c.exited));
      assert.deepEqual(statuses, RUNTIMES.map(() => ({ code: 0, signal: null })));
      assert.equal(Number(readFileSync(file, "utf8")), rounds * RUNTIMES.length);
    } finally {
      for (const c of children) c.kill("SIGKILL");
      await rt.removeDir(dir);
    }
  });
});

test("a Python process (ctypes on libc) and ipckit share one named semaphore", { timeout: 60_000 }, async () => {
  await withSem(0, async (sem) => {
    const code = `
import ctypes, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.sem_open.restype = ctypes.c_void_p
libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
s = libc.sem_open(sys.argv[1].encode(), 0)
if not s: sys.exit(2)
libc.sem_post.argtypes = [ctypes.c_void_p]
libc.sem_post(s); libc.sem_post(s)
libc.sem_wait.argtypes = [ctypes.c_void_p]
`;
    const py = rt.spawn(["python3", "-c", code, sem.name], { stdio: "null" });
    assert.deepEqual(await py.exited, { code: 0, signal: null });
    using _a = await sem.acquire({ timeout: 30_000 });
    using _b = await sem.acquire({ timeout: 30_000 });
    assert.equal(sem.value, 0);
  });
});
