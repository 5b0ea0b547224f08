/**
 * Pool features around the queue: `ready({ room })` (backpressure that can be awaited), `broadcast()` (every ready
 * worker once), and `maxTasksPerWorker` (recycling). Each on Deno, Bun and Node; no timing is asserted: a task that
 * holds the worker is released by the test (an abort), so what is queued meanwhile is known.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, Pool, type PoolEvent, QueueFullError, RemoteError } from "../mod.ts";

const LONG = { timeout: 120_000 };
const WORKER = new URL("./helpers/pool_worker.ts", import.meta.url);

/** The worker's methods these tests call (tests/helpers/pool_worker.ts). */
type Api = {
  run(n: number): number;
  sleep(ms: number): number;
  whoami(): { pid: number; runtime: string };
  fail(message: string): never;
};

/** Lets every queued microtask and a few event loop turns run. */
const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

test(
  "pool ready({ room }): waits while the queue is full, resolves when a task leaves it; bad rooms and close",
  LONG,
  async () => {
    const pool = new Pool<Api>({ worker: WORKER, size: 1, maxQueue: 3 });
    try {
      await pool.ready();
      const gate = new AbortController();
      const held = pool.call("sleep", [60_000], { signal: gate.signal }).catch(() => {});
      const queued = [1, 2, 3].map((n) => pool.run(n));
      await assert.rejects(pool.run(4), QueueFullError);
      let roomFor1 = false, roomFor3 = false;
      const one = pool.ready({ room: 1 }).then(() => void (roomFor1 = true));
      const three = pool.ready({ room: 3 }).then(() => void (roomFor3 = true));
      await settle();
      assert.deepEqual([roomFor1, roomFor3], [false, false], "the queue is full and the worker held");
      gate.abort(); // the worker takes the queued tasks one by one
      await held;
      await one;
      await Promise.all(queued);
      await three;
      assert.equal(pool.stats.queued, 0);
      await pool.ready({ room: 3 }); // room now: at once
      await assert.rejects(pool.ready({ room: 4 }), RangeError, "more than maxQueue could never come");
      await assert.rejects(pool.ready({ room: 0 }), RangeError);
      await assert.rejects(pool.ready({ room: 1.5 }), RangeError);
      // Waiting for room when the pool closes: ClosedError.
      const gate2 = new AbortController();
      const held2 = pool.call("sleep", [60_000], { signal: gate2.signal }).catch(() => {});
      const more = [5, 6, 7].map((n) => pool.run(n).catch((e) => e));
      const waiting = pool.ready({ room: 2 });
      const closing = pool.close();
      await assert.rejects(waiting, ClosedError);
      await assert.rejects(pool.ready({ room: 1 }), ClosedError);
      gate2.abort();
      await held2;
      assert.deepEqual(await Promise.all(more), [25, 36, 49], "close() drains what was queued");
      await closing;
    } finally {
      await pool.close();
    }
  },
);

for (const kind of ["thread", "process"] as const) {
  test(`pool broadcast (${kind}s): every ready worker answers once, a failure stays its own`, LONG, async () => {
    const pool = new Pool<Api>({ worker: WORKER, kind, size: 3 });
    try {
      await pool.ready();
      const answers = await pool.broadcast("whoami", []);
      assert.deepEqual(answers.map((a) => a.slot), [0, 1, 2]);
      assert.equal(new Set(answers.map((a) => a.id)).size, 3, "three workers, one answer each");
      for (const a of answers) {
        assert.ok(a.ok);
        if (kind === "process") assert.equal(a.value.pid, a.id, "the id is the worker's pid");
      }
      const failed = await pool.broadcast("fail", ["no"]);
      assert.ok(failed.every((a) => !a.ok && a.error instanceof RemoteError));
      // Tasks still run after, and broadcast alongside a running task does not wait for it.
      const gate = new AbortController();
      const held = pool.call("sleep", [60_000], { signal: gate.signal }).catch(() => {});
      assert.equal((await pool.broadcast("run", [3])).filter((a) => a.ok && a.value === 9).length, 3);
      gate.abort();
      await held;
      await assert.rejects(pool.broadcast("run", [1], { timeout: -1 }), RangeError);
    } finally {
      await pool.close();
    }
    await assert.rejects(pool.broadcast("run", [1]), ClosedError);
  });
}

test("pool maxTasksPerWorker: a worker that ran its share is replaced; no task is lost", LONG, async () => {
  const events: PoolEvent[] = [];
  const pool = new Pool<Api>({ worker: WORKER, kind: "process", size: 1, maxTasksPerWorker: 3 });
  const log = (async () => {
    for await (const e of pool.events()) events.push(e);
  })();
  try {
    const pids: number[] = [];
    for (let i = 0; i < 7; i++) pids.push((await pool.call("whoami", [])).pid);
    assert.deepEqual(
      [pids[0] === pids[1] && pids[1] === pids[2], pids[3] === pids[4] && pids[4] === pids[5]],
      [true, true],
      String(pids),
    );
    assert.equal(new Set(pids).size, 3, `a new worker after every 3 tasks: ${pids}`);
    // Many at once: each settles once, with its result, across the replacements.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(i)));
    assert.deepEqual(results, Array.from({ length: 20 }, (_, i) => i * i));
    assert.ok(events.filter((e) => e.type === "worker-recycle").length >= 2);
    assert.ok(!events.some((e) => e.type === "task-lost"));
  } finally {
    await pool.close();
    await log;
  }
  assert.throws(() => new Pool({ worker: WORKER, maxTasksPerWorker: 0 }), RangeError);
});

/** Polls `ok` until it holds (at most 60 s; no timing is asserted). */
async function until(ok: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 60_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const kind of ["thread", "process"] as const) {
  test(
    `pool minSize/maxSize (${kind}s): grows while tasks wait, never past maxSize, shrinks back when idle`,
    LONG,
    async () => {
      const events: PoolEvent[] = [];
      const pool = new Pool<Api>({ worker: WORKER, kind, size: 1, maxSize: 3, idleTimeout: 100 });
      const log = (async () => {
        for await (const e of pool.events()) events.push(e);
      })();
      try {
        await pool.ready();
        const gate = new AbortController();
        const held = Array.from(
          { length: 6 },
          () => pool.call("sleep", [60_000], { signal: gate.signal }).catch(() => {}),
        );
        await until(() => pool.stats.running === 3, "three workers running the held tasks");
        assert.equal(pool.stats.workers.length, 3, "maxSize");
        assert.equal(pool.stats.queued, 3);
        assert.equal(events.filter((e) => e.type === "worker-grow").length, 2);
        gate.abort();
        await Promise.all(held);
        await until(() => pool.stats.workers.length === 1, "the pool back to minSize (1)");
        assert.equal(events.filter((e) => e.type === "worker-shrink").length, 2);
        assert.equal(await pool.run(3), 9, "it still runs tasks");
      } finally {
        await pool.close();
        await log;
      }
    },
  );
}

test("pool minSize/maxSize: sizes out of order and elastic NATS pools are refused", () => {
  assert.throws(() => new Pool({ worker: WORKER, size: 2, minSize: 3 }), RangeError);
  assert.throws(() => new Pool({ worker: WORKER, size: 4, maxSize: 3 }), RangeError);
  assert.throws(() => new Pool({ worker: WORKER, size: 1, maxSize: 2, idleTimeout: 0 }), RangeError);
  assert.throws(
    () => new Pool({ transport: "nats", nats: { servers: "127.0.0.1:1" }, maxSize: 4 }),
    /Cannot make a NATS pool elastic/,
  );
});

test("pool stats: wait and run times of the tasks (one in 8 timed), the pool's own probes left out", LONG, async () => {
  const pool = new Pool<Api>({ worker: WORKER, size: 2, heartbeat: 10 });
  try {
    await Promise.all(Array.from({ length: 20 }, (_, i) => pool.run(i)));
    await assert.rejects(pool.call("fail", ["no"]));
    await new Promise((r) => setTimeout(r, 50)); // heartbeat probes run meanwhile: they are not tasks
    const { waitTime, runTime } = pool.stats;
    assert.deepEqual([waitTime.count, waitTime.failed, waitTime.timed], [21, 0, Math.ceil(21 / 8)]);
    assert.deepEqual([runTime.count, runTime.failed], [21, 1], "the failed task ran, and failed");
    assert.equal(runTime.timed, Math.ceil(20 / 8) + 1, "per method: run 3 of 20, fail 1 of 1");
    for (const t of [waitTime, runTime]) assert.ok(t.p50 >= 0 && t.p99 >= t.p50 && t.mean >= 0, JSON.stringify(t));
  } finally {
    await pool.close();
  }
});

for (const kind of ["thread", "process"] as const) {
  test(
    `pool affinity (${kind}s): a key's tasks run on one worker while it lives; its death moves the key`,
    LONG,
    async () => {
      type Who = { pid: number; runtime: string; worker: string };
      const pool = new Pool<Api & { whoami(): Who; die(code: number): void }>({ worker: WORKER, kind, size: 3 });
      try {
        await pool.ready();
        const where = (key: string | number) => pool.call("whoami", [], { affinity: key }).then((w) => w.worker);
        // Many at once, three keys and unkeyed work between them: each key stays on one worker.
        const runs = Array.from({ length: 60 }, (_, i) => (i % 4 === 3 ? pool.run(i) : where(["a", "b", 7][i % 4]!)));
        const seen = await Promise.all(runs);
        for (const key of [0, 1, 2]) {
          const workers = new Set(seen.filter((_, i) => i % 4 === key));
          assert.equal(workers.size, 1, `key ${["a", "b", 7][key]} ran on ${[...workers]}`);
        }
        // Its worker dies: the key moves to another one, and stays there.
        const first = await where("a");
        await pool.call("die", [1], { affinity: "a" }).catch(() => {});
        const after = new Set(await Promise.all(Array.from({ length: 10 }, () => where("a"))));
        assert.equal(after.size, 1);
        assert.ok(!after.has(first), "not the dead worker");
        await assert.rejects(pool.run(1, { affinity: NaN }), TypeError);
        await assert.rejects(pool.run(1, { affinity: {} as unknown as string }), TypeError);
      } finally {
        await pool.close();
      }
    },
  );
}

test("pool affinity: any mix of keys and priorities keeps each key on one worker (property)", LONG, async () => {
  type Who = { pid: number; runtime: string; worker: string };
  const pool = new Pool<Api & { whoami(): Who }>({ worker: WORKER, size: 3, concurrency: 2 });
  const seed = Date.now() % 2 ** 31;
  try {
    await pool.ready();
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.record({ key: fc.option(fc.integer({ min: 0, max: 5 })), priority: fc.integer({ min: 0, max: 2 }) }),
          {
            minLength: 1,
            maxLength: 80,
          },
        ),
        async (tasks) => {
          const ran = await Promise.all(
            tasks.map(({ key, priority }) =>
              pool.call("whoami", [], key === null ? { priority } : { affinity: key, priority }).then((w) => w.worker)
            ),
          );
          const byKey = new Map<number, Set<string>>();
          tasks.forEach(({ key }, i) => key !== null && byKey.set(key, (byKey.get(key) ?? new Set()).add(ran[i]!)));
          return [...byKey.values()].every((workers) => workers.size === 1);
        },
      ),
      { numRuns: 25, seed },
    );
  } catch (e) {
    throw new Error(`the affinity property failed with seed ${seed}: ${(e as Error).message}`);
  } finally {
    await pool.close();
  }
});
