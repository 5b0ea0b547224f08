import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  Barrier,
  Condition,
  Event,
  IpcError,
  Mutex,
  RwLock,
  Semaphore,
  SharedMemory,
  SpinLock,
  TimeoutError,
} from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { stopChild } from "./conformance/fixtures.ts";
import {
  CONSUMED,
  COUNTER,
  DATA,
  type Kind,
  type Params,
  PRODUCED,
  SIZE,
  VIOLATIONS,
} from "./helpers/sync_scenarios.ts";

const LONG = { timeout: 240_000 };
const CHILD = new URL("./helpers/sync_child.ts", import.meta.url);
const WORKER = new URL("./helpers/sync_worker.ts", import.meta.url);
const shmName = () => `/ipckit-test-sync-${Math.random().toString(36).slice(2, 12)}`;

/** Runs `kind` in `parties` workers on one SharedArrayBuffer; returns the data words. */
async function inWorkers(kind: Kind, parties: number, params: Params, init?: (sab: SharedArrayBuffer) => void) {
  const rt = await runtime();
  const sab = new SharedArrayBuffer(SIZE);
  init?.(sab);
  const workers = Array.from({ length: parties }, () => rt.worker(WORKER));
  try {
    await Promise.all(workers.map((w, party) =>
      new Promise<void>((resolve, reject) => {
        w.onMessage((m) => {
          const r = m as { ok?: number; error?: string };
          if (r.error) reject(new Error(r.error));
          else resolve();
        });
        w.onError(reject);
        w.postMessage({ kind, sab, party, params });
      })
    ));
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
  return new Int32Array(sab, DATA * 4, 64);
}

/** Runs `kind` in one child per runtime (deno, bun, node) sharing a segment; returns the data words (a copy). */
async function inProcesses(kind: Kind, params: Params, init?: (shm: SharedMemory) => void) {
  const rt = await runtime();
  const name = shmName();
  const shm = await SharedMemory.create(name, { size: SIZE });
  const children = [];
  try {
    init?.(shm);
    for (const [party, r] of RUNTIMES.entries()) {
      children.push(
        rt.spawn(
          [
            ...runtimeArgv(r),
            rt.fromFileUrl(CHILD),
            "run",
            kind,
            name,
            String(party),
            String(params.m),
            String(params.n),
          ],
          { cwd: rt.fromFileUrl(new URL("../", import.meta.url)), stdio: "null" },
        ),
      );
    }
    const codes = await Promise.all(children.map((c) => c.exited));
    assert.deepEqual(codes.map((c) => c.code), [0, 0, 0], `children exited ${JSON.stringify(codes)}`);
    return new Int32Array(shm.buffer, DATA * 4, 64).slice();
  } finally {
    for (const c of children) c.kill("SIGKILL");
    for (const c of children) await stopChild(c);
    shm.close();
    await SharedMemory.unlink(name);
  }
}

// ---- threads

for (const kind of ["mutex", "mutex-async", "spinlock"] as const) {
  test(`${kind}: 4 workers x 2000 unprotected increments under the lock give exactly 8000`, LONG, async () => {
    const d = await inWorkers(kind, 4, { m: 2000, n: 4 });
    assert.equal(d[COUNTER], 8000);
  });
}

test("RwLock: 4 workers, writers never beside a reader or another writer (invariant counters)", LONG, async () => {
  const d = await inWorkers("rwlock", 4, { m: 2000, n: 4 });
  assert.equal(d[VIOLATIONS], 0);
  assert.equal(d[COUNTER], 2000); // each worker writes on every 4th iteration
});

test("Semaphore(2): 4 workers never find more than 2 inside", LONG, async () => {
  const d = await inWorkers("semaphore", 4, { m: 2000, n: 2 }, (sab) => void Semaphore.in(sab, 0, { initial: 2 }));
  assert.equal(d[VIOLATIONS], 0);
});

test("Barrier: 4 workers x 300 generations never mix", LONG, async () => {
  const d = await inWorkers("barrier", 4, { m: 300, n: 4 });
  assert.equal(d[VIOLATIONS], 0);
});

test("Condition: 2 producers and 2 consumers with random pauses lose no wake-up", LONG, async () => {
  const d = await inWorkers("condition", 4, { m: 500, n: 4 });
  assert.equal(d[PRODUCED], 1000);
  assert.equal(d[CONSUMED], 1000);
});

// ---- processes of three runtimes in one segment

test("Mutex in a segment: a Deno, a Bun and a Node process x 2000 increments give exactly 6000", LONG, async () => {
  const d = await inProcesses("mutex", { m: 2000, n: 3 });
  assert.equal(d[COUNTER], 6000);
});

test("RwLock, Barrier and Condition in a segment across Deno, Bun and Node processes", LONG, async () => {
  assert.equal((await inProcesses("rwlock", { m: 1000, n: 3 }))[VIOLATIONS], 0);
  assert.equal((await inProcesses("barrier", { m: 100, n: 3 }))[VIOLATIONS], 0);
  const c = await inProcesses("condition", { m: 300, n: 3 });
  assert.equal(c[CONSUMED], 600);
});

test("Semaphore and SpinLock in a segment across Deno, Bun and Node processes", LONG, async () => {
  const s = await inProcesses("semaphore", { m: 1000, n: 1 }, (shm) => void Semaphore.in(shm, 0, { initial: 1 }));
  assert.equal(s[VIOLATIONS], 0);
  assert.equal((await inProcesses("spinlock", { m: 2000, n: 3 }))[COUNTER], 6000);
});

for (const r of RUNTIMES) {
  test(
    `robust Mutex: a SIGKILLed ${r} owner; the next lock() is told the owner died, markConsistent() recovers`,
    LONG,
    async () => {
      const rt = await runtime();
      const name = shmName();
      const shm = await SharedMemory.create(name, { size: SIZE });
      const child = rt.spawn([...runtimeArgv(r), rt.fromFileUrl(CHILD), "hold", name], {
        cwd: rt.fromFileUrl(new URL("../", import.meta.url)),
        stdio: "null",
      });
      try {
        const words = new Int32Array(shm.buffer);
        const mutex = Mutex.in(shm, 0);
        while (Atomics.load(words, DATA + 7) !== 1) {
          assert.equal(
            await Promise.race([child.exited.then(() => "exited"), new Promise((res) => setTimeout(res, 20))]),
            undefined,
            "the child exited before locking",
          );
        }
        assert.equal(mutex.tryLock(), false);
        const waiting = mutex.lock({ timeout: 60_000 });
        child.kill("SIGKILL");
        await child.exited;
        assert.equal(await waiting, true, "the owner died");
        assert.equal(mutex.ownerDied, true);
        mutex.unlock();
        assert.equal(await mutex.lock(), true, "still inconsistent until markConsistent()");
        mutex.markConsistent();
        mutex.unlock();
        assert.equal(await mutex.lock(), false);
        mutex.unlock();
      } finally {
        child.kill("SIGKILL");
        await stopChild(child);
        shm.close();
        await SharedMemory.unlink(name);
      }
    },
  );
}

// ---- single-thread behaviour

test("Mutex: tryLock, unlock by a non-holder, timeout, abort, guards, handles", async () => {
  const m = new Mutex();
  assert.equal(m.tryLock(), true);
  assert.equal(m.tryLock(), false);
  assert.equal(m.locked, true);
  await assert.rejects(m.lock({ timeout: 30 }), TimeoutError);
  assert.throws(() => m.lockSync({ timeout: 10 }), TimeoutError);
  const ac = new AbortController();
  const aborted = assert.rejects(m.lock({ signal: ac.signal }), (e: Error) => e.name === "AbortError");
  ac.abort();
  await aborted;
  const later = m.acquire({ timeout: 30_000 });
  m.unlock();
  const g = await later;
  assert.equal(g.ownerDied, false);
  g.release();
  g.release();
  assert.equal(m.locked, false);
  assert.throws(() => m.unlock(), IpcError);
  assert.throws(() => m.markConsistent(), IpcError);
  const again = Mutex.from(m.handle!);
  {
    using _g = await again.acquire();
    assert.equal(m.locked, true);
  }
  assert.equal(m.locked, false);
  assert.throws(() => Mutex.from(new Semaphore(1).handle!), TypeError);
  assert.throws(() => Mutex.in(new SharedArrayBuffer(64), 4), RangeError);
  assert.throws(() => Mutex.in(new SharedArrayBuffer(64), 56), RangeError);
  assert.throws(() => Mutex.in(new ArrayBuffer(64) as unknown as SharedArrayBuffer, 0), TypeError);
  await assert.rejects(m.lock({ timeout: -1 }), RangeError);
});

test("Mutex: a waiter that waits long sets STARVING; newcomers then queue behind it", async () => {
  const m = new Mutex();
  m.lockSync();
  const waiter = m.lock({ timeout: 30_000 });
  await new Promise((r) => setTimeout(r, 50)); // longer than the 5 ms threshold
  // The waiter is asleep; poke it so it notices how long it has waited and sets STARVING.
  const sab = m.handle!.buffer;
  const state = new Int32Array(sab);
  Atomics.notify(state, 0);
  await new Promise((r) => setTimeout(r, 50));
  m.unlock();
  // A newcomer's tryLock fails while the starving waiter has priority, or the waiter already has it.
  assert.equal(m.tryLock(), false);
  await waiter;
  m.unlock();
  assert.equal(m.tryLock(), true);
  m.unlock();
});

test("Condition: wait() returns false at its timeout with the mutex held again; waitFor checks the predicate", async () => {
  const m = new Mutex();
  const c = new Condition();
  await m.lock();
  assert.equal(await c.wait(m, { timeout: 20 }), false);
  assert.equal(m.locked, true);
  let ready = false;
  setTimeout(() => {
    ready = true;
    c.notifyAll();
  }, 20);
  assert.equal(await c.waitFor(m, () => ready, { timeout: 30_000 }), true);
  assert.equal(await c.waitFor(m, () => false, { timeout: 20 }), false);
  const ac = new AbortController();
  const p = c.wait(m, { signal: ac.signal });
  ac.abort();
  await assert.rejects(p, (e: Error) => e.name === "AbortError");
  assert.equal(m.locked, true);
  m.unlock();
  assert.throws(() => c.notify(0), RangeError);
  assert.ok(Condition.from(c.handle!) instanceof Condition);
});

test("Event: manual reset lets everyone through until reset(); auto reset lets one waiter through per set()", async () => {
  const manual = new Event();
  const waits = [manual.wait(), manual.wait()];
  manual.set();
  await Promise.all(waits);
  await manual.wait();
  manual.reset();
  await assert.rejects(manual.wait({ timeout: 20 }), TimeoutError);
  const auto = new Event({ autoReset: true });
  let passed = 0;
  const a = auto.wait().then(() => passed++);
  const b = auto.wait().then(() => passed++);
  auto.set();
  await Promise.race([a, b]);
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(passed, 1);
  assert.equal(auto.isSet, false);
  auto.set();
  await Promise.all([a, b]);
  auto.set();
  auto.set(); // coalesces
  auto.waitSync({ timeout: 1000 });
  assert.throws(() => auto.waitSync({ timeout: 10 }), TimeoutError);
  assert.equal(Event.from(auto.handle!).autoReset, true);
  const sab = new SharedArrayBuffer(64);
  Event.in(sab, 0, { autoReset: true });
  assert.throws(() => Event.in(sab, 0, { autoReset: false }), RangeError);
  assert.equal(Event.in(sab, 0).autoReset, true);
});

test("Semaphore: counts, bounds, guards (property: agrees with a counter model)", async () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5 }),
      fc.array(fc.tuple(fc.constantFrom("try", "release"), fc.integer({ min: 1, max: 3 })), { maxLength: 40 }),
      (initial, ops) => {
        const s = new Semaphore(initial);
        let model = initial;
        for (const [op, n] of ops) {
          if (op === "try") assert.equal(s.tryAcquire(n), model >= n ? ((model -= n), true) : false);
          else {
            s.release(n);
            model += n;
          }
          assert.equal(s.value, model);
        }
      },
    ),
    { numRuns: 100 },
  );
  const s = new Semaphore(0);
  const pending = s.acquire(2, { timeout: 30_000 });
  s.release();
  s.release();
  const g = await pending;
  assert.equal(s.value, 0);
  g.release();
  g.release();
  assert.equal(s.value, 2);
  await assert.rejects(s.acquire(3, { timeout: 20 }), TimeoutError);
  assert.equal(s.value, 2, "a timed-out acquire takes nothing");
  assert.throws(() => s.release(0), RangeError);
  assert.throws(() => new Semaphore(-1), RangeError);
  assert.throws(() => new Semaphore(2 ** 31 - 1).release(1), RangeError);
});

test("Barrier: arrival indexes, a broken barrier rejects everyone until reset()", async () => {
  const b = new Barrier(3);
  const indexes = await Promise.all([b.wait(), b.wait(), b.wait()]);
  assert.deepEqual([...indexes].sort(), [0, 1, 2]);
  assert.equal(b.generation, 1);
  const lonely = b.wait({ timeout: 20 });
  await assert.rejects(lonely, TimeoutError);
  await assert.rejects(b.wait(), (e: IpcError) => e.code === "EBROKEN");
  b.reset();
  const again = await Promise.all([b.wait(), b.wait(), Barrier.from(b.handle!).wait()]);
  assert.equal(again.length, 3);
  assert.throws(() => new Barrier(0), RangeError);
  const sab = new SharedArrayBuffer(64);
  Barrier.in(sab, 16, 4);
  assert.throws(() => Barrier.in(sab, 16, 5), RangeError);
});

test("RwLock: readers share, a writer excludes, a waiting writer holds new readers back", async () => {
  const l = new RwLock();
  const r1 = await l.read();
  const r2 = await l.read();
  assert.deepEqual(l.state, { readers: 2, writer: false });
  assert.equal(l.tryWrite(), false);
  const w = l.write({ timeout: 30_000 });
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(l.tryRead(), false, "writer preference");
  r1.release();
  r2.release();
  const wg = await w;
  assert.deepEqual(l.state, { readers: 0, writer: true });
  await assert.rejects(l.read({ timeout: 20 }), TimeoutError);
  wg.release();
  assert.throws(() => l.unlockWrite(), IpcError);
  assert.throws(() => l.unlockRead(), IpcError);
  assert.ok(RwLock.from(l.handle!).tryRead());
});

test("SpinLock: tryLock, timeout, unlock by a non-holder", async () => {
  const s = new SpinLock();
  assert.equal(s.tryLock(), true);
  assert.throws(() => s.lockSync({ timeout: 5 }), TimeoutError);
  await assert.rejects(s.lock({ timeout: 5 }), TimeoutError);
  s.unlock();
  assert.throws(() => s.unlock(), IpcError);
  await s.lock();
  assert.equal(SpinLock.from(s.handle!).locked, true);
  s.unlock();
});
