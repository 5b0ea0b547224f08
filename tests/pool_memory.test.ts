/**
 * Recycling by memory (`maxMemory`) and thread engine limits (`resourceLimits`), on Deno, Bun and Node: a worker that
 * really leaks is replaced while its queued tasks go to the new one; a thread past its heap limit ends, is replaced,
 * and its task settles once. No timing is asserted: the leaking loop runs until the pool says it recycled.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Pool, type PoolEvent, UnsupportedError, WorkerDiedError } from "../mod.ts";
import { runtimeName } from "../runtimes/detect.ts";
import { WORKER_LIMITS_UNSUPPORTED } from "../runtimes/runtime.ts";

const LONG = { timeout: 180_000 };
const WORKER = new URL("./helpers/pool_limits_worker.ts", import.meta.url);
const MiB = 2 ** 20;

type Usage = { rss: number; heapUsed: number };
type Api = {
  run(n: number): number;
  leak(mb: number): Usage & { kept: number };
  memory(): Usage;
  oom(): never;
};

/** Collects a pool's events until it closes. */
function record(pool: Pool<Api>): { events: PoolEvent[]; done: Promise<void> } {
  const events: PoolEvent[] = [];
  const done = (async () => {
    for await (const e of pool.events()) events.push(e);
  })();
  return { events, done };
}

for (const kind of ["thread", "process"] as const) {
  test(
    `pool maxMemory (${kind}s): a worker that leaks is replaced; its queued tasks run on the next, none lost`,
    LONG,
    async () => {
      // A thread's heap starts near 10 MiB, a process's rss near 50-150 MiB (by runtime); each leak keeps more.
      const maxMemory = kind === "thread" ? 48 * MiB : 320 * MiB;
      const step = kind === "thread" ? 2 : 8;
      const pool = new Pool<Api>({ worker: WORKER, kind, size: 1, maxMemory });
      const log = record(pool);
      let rounds = 0, tasks = 0;
      try {
        const recycled = () => log.events.filter((e) => e.type === "worker-recycle");
        let sawFresh = false;
        while (recycled().length === 0 || !sawFresh) {
          assert.ok(
            ++rounds <= 400,
            `after ${rounds - 1} rounds of leaking: ${recycled().length} recycles, a fresh worker seen: ${sawFresh}`,
          );
          // Ten tasks at once: while the worker is replaced, some of them wait in the queue.
          const batch = Array.from({ length: 10 }, (_, i) => i % 2 ? pool.run(i) : pool.call("leak", [step]));
          const out = await Promise.all(batch);
          tasks += out.length;
          for (let i = 1; i < 10; i += 2) assert.equal(out[i], i * i);
          // A new worker starts from nothing: its `kept` count restarts.
          if (recycled().length > 0 && (out[0] as { kept: number }).kept === step) sawFresh = true;
        }
        const [event] = recycled();
        assert.ok(event?.type === "worker-recycle");
        assert.equal(event.reason, "memory");
        assert.ok(event.memory! > maxMemory, `recycled at ${event.memory} bytes, past ${maxMemory}`);
        const worker = pool.stats.workers[0]!;
        assert.ok(worker.memory !== undefined && worker.memory > 0, "the pool shows the memory it saw");
        assert.equal(pool.stats.done, tasks, "every task settled with its result");
        assert.equal(pool.stats.failed, 0);
        assert.equal(pool.stats.restarts, 0, "a recycle is no restart");
      } finally {
        await pool.close(); // waits for the replaced worker too
      }
      await log.done;
      const exits = log.events.filter((e) => e.type === "worker-exit");
      assert.ok(exits.length >= 2 && exits.every((e) => e.type === "worker-exit" && e.expected));
    },
  );
}

test("pool maxMemory and resourceLimits: bad values are refused with clear errors", () => {
  for (const bad of [0, -1, 1.5, NaN, Infinity]) {
    assert.throws(() => new Pool({ worker: WORKER, maxMemory: bad }), RangeError);
  }
  assert.throws(
    () => new Pool({ worker: WORKER, kind: "process", resourceLimits: { maxOldGenerationSizeMb: 64 } }),
    /Cannot use resourceLimits with worker processes/,
  );
  assert.throws(
    () => new Pool({ worker: WORKER, resourceLimits: { maxHeap: 64 } as never }),
    /Cannot use resourceLimits.maxHeap: the limits are/,
  );
  assert.throws(() => new Pool({ worker: WORKER, resourceLimits: { maxOldGenerationSizeMb: 0 } }), RangeError);
  const why = WORKER_LIMITS_UNSUPPORTED[runtimeName()];
  if (why !== undefined) {
    assert.throws(
      () => new Pool({ worker: WORKER, resourceLimits: { maxOldGenerationSizeMb: 64 } }),
      (e: unknown) => e instanceof UnsupportedError && e.message.includes(why),
    );
  }
});

test(
  "pool resourceLimits (threads): a thread past its heap limit is replaced; its task settles once",
  { ...LONG, skip: WORKER_LIMITS_UNSUPPORTED[runtimeName()] ?? false },
  async () => {
    const pool = new Pool<Api>({
      worker: WORKER,
      size: 1,
      retries: 1,
      resourceLimits: { maxOldGenerationSizeMb: 32 },
    });
    const log = record(pool);
    try {
      const lost = await pool.call("oom", []).then(() => undefined, (e) => e);
      assert.ok(lost instanceof WorkerDiedError, String(lost));
      assert.match(lost.message, /ERR_WORKER_OUT_OF_MEMORY/);
      assert.equal(lost.attempts, 1);
      // Marked idempotent: re-run once (retries: 1) on a new thread, which dies the same way; then it fails, once.
      const again = await pool.call("oom", [], { idempotent: true }).then(() => undefined, (e) => e);
      assert.ok(again instanceof WorkerDiedError, String(again));
      assert.equal(again.attempts, 2);
      assert.equal(await pool.run(7), 49, "the replacement runs the next task");
      assert.equal(pool.stats.failed, 2);
      assert.equal(pool.stats.restarts, 3);
    } finally {
      await pool.close();
    }
    await log.done;
    const died = log.events.filter((e) => e.type === "worker-exit" && !e.expected);
    assert.equal(died.length, 3);
    for (const e of died) assert.ok(e.type === "worker-exit" && /ERR_WORKER_OUT_OF_MEMORY/.test(e.error ?? ""));
  },
);
