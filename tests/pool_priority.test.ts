/**
 * Task priorities in a pool: the queue's order against a model (fast-check, a fake clock), and pools of each
 * runtime's threads and processes running tasks by priority, with aging so that a low-priority task is not held back
 * for ever by a steady stream of urgent ones. No timing is asserted: where aging needs time to pass, the test waits
 * at least that long and checks only the order that follows.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Pool } from "../mod.ts";
import { TaskQueue } from "../pool/task_queue.ts";

const LONG = { timeout: 120_000 };
const WORKER = new URL("./helpers/pool_worker.ts", import.meta.url);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The worker's methods these tests call (tests/helpers/pool_worker.ts). */
type Api = { run(n: number): number; sleep(ms: number): number };

interface T {
  seq: number;
  priority: number;
  queuedAt: number;
  settled: boolean;
  again: boolean;
}

test("pool priority: the queue hands out tasks as the model does (priorities, aging, tasks given back, cancelled ones)", () => {
  const seed = Date.now() % 2 ** 31;
  const op = fc.oneof(
    fc.record({ kind: fc.constant("push" as const), priority: fc.integer({ min: -3, max: 3 }), dt: fc.nat(50) }),
    fc.record({ kind: fc.constant("shift" as const) }),
    fc.record({ kind: fc.constant("again" as const) }),
    fc.record({ kind: fc.constant("settle" as const), pick: fc.nat() }),
  );
  try {
    fc.assert(
      fc.property(fc.constantFrom(10, 100, Infinity), fc.array(op, { maxLength: 200 }), (aging, ops) => {
        const queue = new TaskQueue<T>(aging);
        const model: T[] = [];
        let now = 0;
        let seq = 0;
        const taken: T[] = [];
        const next = (): T | undefined => {
          const live = model.filter((t) => !t.settled);
          const again = live.filter((t) => t.again);
          if (again.length > 0) return again[0];
          const rank = (t: T) => t.priority - t.queuedAt / aging;
          live.sort((a, b) => rank(b) - rank(a) || a.queuedAt - b.queuedAt || a.seq - b.seq);
          return live[0];
        };
        for (const o of ops) {
          if (o.kind === "push") {
            now += o.dt;
            const t = { seq: seq++, priority: o.priority, queuedAt: now, settled: false, again: false };
            model.push(t);
            queue.push(t);
          } else if (o.kind === "shift") {
            const expected = next();
            const got = queue.shift();
            assert.equal(got, expected);
            if (got) {
              model.splice(model.indexOf(got), 1);
              taken.push(got);
            }
          } else if (o.kind === "again" && taken.length > 0) {
            const t = taken.shift()!; // its worker died: first in line
            t.again = true;
            model.push(t);
            queue.pushFirst(t);
          } else if (o.kind === "settle" && model.length > 0) {
            model[o.pick % model.length]!.settled = true; // cancelled while queued
          }
          assert.equal(queue.peek(), next());
          assert.equal(queue.allSettled(), next() === undefined);
        }
        // Everything still queued comes out (cancelled ones may have been dropped on the way already).
        const rest = queue.takeAll().filter((t) => !t.settled);
        assert.deepEqual(new Set(rest), new Set(model.filter((t) => !t.settled)));
        assert.equal(queue.size, 0);
      }),
      { numRuns: 300, seed },
    );
  } catch (e) {
    throw new Error(`the task queue's property failed with seed ${seed}: ${(e as Error).message}`);
  }
});

/** The order in which `tasks` ran on a pool of one worker running one task at a time. */
async function order(
  pool: Pool<Api>,
  tasks: Array<[id: number, priority: number]>,
): Promise<number[]> {
  const ran: number[] = [];
  const gate = new AbortController();
  // The worker is busy with the gate while every task is queued: the order is the queue's alone.
  const held = pool.call("sleep", [60_000], { signal: gate.signal }).catch(
    () => {},
  );
  const all = tasks.map(([id, priority]) => pool.run(id, { priority }).then(() => void ran.push(id)));
  gate.abort();
  await held;
  await Promise.all(all);
  return ran;
}

for (const kind of ["thread", "process"] as const) {
  test(`pool priority (${kind}s): higher first, in queue order within one; bad priorities refused`, LONG, async () => {
    const pool = new Pool<Api>({ worker: WORKER, kind, size: 1, priorityAging: Infinity });
    try {
      await pool.ready();
      const ran = await order(pool, [[1, 0], [2, 5], [3, 1], [4, 5], [5, 0], [6, -2], [7, 1], [8, 5]]);
      assert.deepEqual(ran, [2, 4, 8, 3, 7, 1, 5, 6]);
      for (const bad of [NaN, Infinity, "1" as unknown as number]) {
        await assert.rejects(pool.run(1, { priority: bad }), RangeError);
      }
    } finally {
      await pool.close();
    }
  });
}

test(
  "pool priority: a task that waited long enough runs before more urgent ones queued after (aging)",
  LONG,
  async () => {
    const pool = new Pool<Api>({ worker: WORKER, size: 1, priorityAging: 10 });
    try {
      await pool.ready();
      const ran: string[] = [];
      const gate = new AbortController();
      const held = pool.call("sleep", [60_000], { signal: gate.signal }).catch(
        () => {},
      );
      const low = pool.run(1, { priority: 0 }).then(() => void ran.push("low"));
      await sleep(60); // 60 ms of waiting: worth 6 levels with priorityAging 10
      const high = [1, 2, 3].map((i) => pool.run(i, { priority: 2 }).then(() => void ran.push(`high ${i}`)));
      gate.abort();
      await held;
      await Promise.all([low, ...high]);
      assert.deepEqual(ran, ["low", "high 1", "high 2", "high 3"]);
    } finally {
      await pool.close();
    }
  },
);

test("pool priority: a low-priority task still runs under a steady stream of high-priority ones", LONG, async () => {
  const pool = new Pool<Api>({ worker: WORKER, size: 1, priorityAging: 20 });
  try {
    await pool.ready();
    let lowDone = false;
    const low = pool.run(0, { priority: 0 }).then(() => void (lowDone = true));
    // Two urgent tasks queued at all times, a new one as each finishes, until the low one ran (a cap fails it).
    let highs = 0;
    const stream = async () => {
      while (!lowDone) {
        if (++highs > 1_000_000) throw new Error("the low-priority task never ran");
        await pool.run(highs, { priority: 1 });
      }
    };
    await Promise.all([stream(), stream(), low]);
    assert.ok(lowDone);
  } finally {
    await pool.close();
  }
  assert.throws(() => new Pool({ worker: WORKER, priorityAging: 0 }), RangeError);
  assert.throws(() => new Pool({ worker: WORKER, priorityAging: NaN }), RangeError);
});
