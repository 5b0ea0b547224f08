/** The sync primitives within one thread: API, bounds, errors (between threads and processes: sync_conformance). */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Barrier, Condition, Event, IpcError, Mutex, RwLock, Semaphore, SpinLock, TimeoutError } from "../mod.ts";

// Between threads and processes (stress, timeouts and aborts, dying holders): tests/sync_conformance.test.ts.

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
