/**
 * Observed locks and semaphores in the stats segment (sync/lock_stats.ts): what this process counts of its own use,
 * a holder in another process of each runtime read from that process's segment, and an owner-died takeover counted
 * after it is SIGKILLed. Hold times are checked only against a lower bound the test itself guarantees.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type ChildProcess,
  Mutex,
  resources,
  runtime,
  runtimeArgv,
  Semaphore,
  SharedMemory,
  stats,
  TimeoutError,
} from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { parsePrometheus } from "./helpers/prometheus.ts";

const LONG = { timeout: 120_000 };
const rt = await runtime();
const HOLDER = rt.fromFileUrl(new URL("./helpers/lock_holder.ts", import.meta.url));
stats.setStats(true);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** This process's object named `name`, once `ok` accepts it (at most 60 s; no timing is asserted). */
async function mine(name: string, ok: (o: stats.ObjectStats) => boolean): Promise<stats.ObjectStats> {
  const end = Date.now() + 60_000;
  for (;;) {
    const o = (await stats.listStats()).flatMap((p) => ("pid" in p && p.pid === rt.pid ? p.objects : []))
      .find((x) => x.name === name);
    if (o && ok(o)) return o;
    if (Date.now() > end) throw new Error(`timed out waiting for "${name}": last ${JSON.stringify(o)}`);
    await sleep(20);
  }
}

test(
  "stats sync: an observed mutex counts acquisitions, waits, waits given up, its holder and longest hold",
  LONG,
  async () => {
    const m = new Mutex().observe("sync test mutex");
    for (let i = 0; i < 10; i++) {
      await m.lock();
      m.unlock();
    }
    await m.lock();
    const held = await mine("sync test mutex", (o) => o.counters.acquired === 11);
    assert.equal(held.kind, "lock");
    assert.ok(held.counters.holder !== 0, "a thread of this process holds it");
    assert.ok(held.counters.heldSince! > 0);
    // One waiter gives up, one waits until the unlock.
    await assert.rejects(m.lock({ timeout: 30 }), TimeoutError);
    const waiter = m.lock();
    await mine("sync test mutex", (o) => o.counters.waiting === 1 && o.counters.gaveUp === 1);
    await sleep(40); // held 40 ms at least by now
    m.unlock();
    await waiter;
    m.unlock();
    const after = await mine("sync test mutex", (o) => o.counters.acquired === 12 && o.counters.holder === 0);
    assert.deepEqual([after.counters.contended, after.counters.waiting, after.counters.heldSince], [2, 0, 0]);
    assert.ok(after.counters.longestHoldUs! >= 40_000, `longest hold ${after.counters.longestHoldUs} us`);
    assert.throws(() => new Mutex().observe(""), TypeError);
  },
);

test("stats sync: an observed semaphore counts acquisitions, waits, releases and its count", LONG, async () => {
  const s = new Semaphore(2).observe("sync test semaphore");
  const a = await s.acquire();
  const b = s.acquireSync();
  assert.equal(s.tryAcquire(), false);
  await assert.rejects(s.acquire(1, { timeout: 30 }), TimeoutError);
  const controller = new AbortController();
  const aborted = s.acquire(1, { signal: controller.signal });
  const waiting = s.acquire(1);
  await mine("sync test semaphore", (o) => o.counters.waiting === 2);
  controller.abort();
  await assert.rejects(aborted);
  a.release();
  (await waiting).release();
  b.release();
  const o = await mine("sync test semaphore", (x) => x.counters.released === 3);
  assert.equal(o.kind, "semaphore");
  assert.deepEqual(
    [o.counters.acquired, o.counters.contended, o.counters.gaveUp, o.counters.waiting, o.counters.value],
    [3, 3, 2, 0, 2],
  );
  const families = parsePrometheus(stats.prometheusText(await stats.listStats()));
  const value = families.get("ipckit_semaphore_value")!.samples.find((x) => x.labels.name === "sync test semaphore");
  assert.equal(value?.value, 2);
  assert.equal(families.get("ipckit_lock_holder_thread")?.type, "gauge");
});

for (const other of RUNTIMES) {
  test(
    `stats sync: a ${other} process holding a mutex shows as its holder; SIGKILLed, the takeover is counted here`,
    LONG,
    async () => {
      const name = `/ipckit-test-lockstats-${rt.pid}-${other}`;
      const memory = await SharedMemory.create(name, { size: 4096 });
      let child: ChildProcess | undefined;
      try {
        child = rt.spawn([...runtimeArgv(other, HOLDER), name], { stdio: "pipe", env: { IPCKIT_STATS: "on" } });
        const line = await firstLine(child);
        assert.match(line, /^held \/ipckit-stats-/);
        const theirs = await stats.readStats(line.slice("held ".length));
        const lock = theirs.objects.find((o) => o.name === "held lock")!;
        assert.equal(theirs.runtime, other);
        assert.equal(lock.counters.holder, child.pid, "the holder is the child's main thread: its pid");
        assert.equal(lock.counters.acquired, 1);
        assert.ok(lock.counters.heldSince! > 0);
        child.kill("SIGKILL");
        await child.exited;
        const here = Mutex.in(memory, 0).observe(`taken over from ${other}`);
        assert.equal(await here.lock({ timeout: 30_000 }), true, "the owner died");
        here.markConsistent();
        here.unlock();
        const o = await mine(`taken over from ${other}`, (x) => x.counters.ownerDied === 1);
        assert.deepEqual([o.counters.acquired, o.counters.holder], [1, 0]);
      } finally {
        child?.kill("SIGKILL");
        await child?.exited;
        memory.close();
        await SharedMemory.unlink(name).catch(() => {});
        await resources.clean(); // the killed child's stats segment
      }
    },
  );
}

/** The first line a child prints. */
async function firstLine(child: ChildProcess): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  return await new Promise<string>((resolve) => {
    child.stdio!.start({
      data: (d) => {
        text += decoder.decode(d, { stream: true });
        const i = text.indexOf("\n");
        if (i >= 0) resolve(text.slice(0, i));
      },
      end: () => resolve(`(no line: ${JSON.stringify(text)})`),
    });
  });
}
