import { test } from "node:test";
import process from "node:process";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ClosedError,
  Pool,
  pool as poolApi,
  type PoolEvent,
  type PoolOptions,
  QueueFullError,
  RemoteError,
  TimeoutError,
  UnsupportedError,
  WorkerDiedError,
} from "../mod.ts";
import { runtime, runtimeName } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import type { ChildProcess } from "../runtimes/runtime.ts";

const LONG = { timeout: 300_000 };
const WORKER = new URL("./helpers/pool_worker.ts", import.meta.url);
const BROKEN = new URL("./helpers/pool_broken_worker.ts", import.meta.url);
const MASTER = new URL("./helpers/pool_master.ts", import.meta.url);

type Handlers = {
  run(n: number): number;
  whoami(): { pid: number; runtime: string };
  sleep(ms: number): number;
  spin(ms: number): number;
  freeze(): string;
  die(code?: number): never;
  fail(message: string): never;
};

const seed = Date.now() ^ 0x9001;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Collects a pool's events until it closes. */
function record(pool: Pool<Handlers>): PoolEvent[] {
  const seen: PoolEvent[] = [];
  void (async () => {
    for await (const e of pool.events()) seen.push(e);
  })();
  return seen;
}

/** Runs `fn` with a pool of WORKER (signals off unless asked), closes it whatever happens, returns its events. */
async function withPool(
  options: Partial<PoolOptions>,
  fn: (pool: Pool<Handlers>) => Promise<void>,
): Promise<PoolEvent[]> {
  const pool = new Pool<Handlers>({ worker: WORKER, signals: false, ...options });
  const events = record(pool);
  try {
    await fn(pool);
  } finally {
    await pool.close();
  }
  return events;
}

test("pool: threads run tasks, calls and an ordered map; errors arrive as RemoteError", LONG, async () => {
  await withPool({ kind: "thread", size: 2 }, async (pool) => {
    assert.equal(await pool.run(7), 49);
    assert.equal((await pool.call("whoami", [])).runtime, (await runtime()).name);
    const results: number[] = [];
    for await (const r of pool.map(Array.from({ length: 200 }, (_, i) => i), { concurrency: 7 })) results.push(r);
    assert.deepEqual(results, Array.from({ length: 200 }, (_, i) => i * i));
    await assert.rejects(pool.call("fail", ["nope"]), (e) => e instanceof RemoteError && e.remoteName === "RangeError");
    await assert.rejects(pool.call("missing" as never, [] as never), RemoteError);
    assert.equal(pool.stats.done, 202);
    assert.equal(pool.stats.failed, 2);
  });
});

test("pool: a process pool of Deno, Bun and Node workers computes the right results", LONG, async () => {
  await withPool({ kind: "process", runtime: ["deno", "bun", "node"], size: 3, concurrency: 2 }, async (pool) => {
    await pool.ready();
    assert.ok(pool.stats.workers.every((w) => w.state === "ready" && typeof w.id === "number"));
    const results = await Promise.all(Array.from({ length: 600 }, (_, i) => pool.run(i)));
    assert.deepEqual(results, Array.from({ length: 600 }, (_, i) => i * i));
    const runtimes = new Set<string>();
    await until("a task on each runtime", async () => {
      const w = await Promise.all(Array.from({ length: 6 }, () => pool.call("whoami", [])));
      for (const x of w) runtimes.add(x.runtime);
      return runtimes.size === 3;
    });
    assert.deepEqual([...runtimes].sort(), ["bun", "deno", "node"]);
    assert.deepEqual(pool.stats.workers.map((w) => w.runtime), ["deno", "bun", "node"]);
  });
});

for (const transport of ["shm", "pipe"] as const) {
  test(
    `pool: worker processes on ${
      transport === "shm" ? "shared memory (the default)" : "pipes"
    }: results, a SIGKILLed worker, nothing left in /dev/shm`,
    LONG,
    async () => {
      const rt = await runtime();
      const pool = new Pool<Handlers>({
        worker: WORKER,
        kind: "process",
        runtime: ["deno", "bun", "node"],
        size: 3,
        concurrency: 4,
        transport,
        restartDelay: 10,
        signals: false,
      });
      try {
        await pool.ready();
        assert.deepEqual(
          await Promise.all(Array.from({ length: 300 }, (_, i) => pool.run(i))),
          Array.from({ length: 300 }, (_, i) => i * i),
        );
        const victim = pool.stats.workers[2]!.id!;
        const tasks = Array.from({ length: 60 }, (_, i) => pool.run(i, { idempotent: true }));
        rt.kill(victim, "SIGKILL");
        assert.deepEqual(await Promise.all(tasks), Array.from({ length: 60 }, (_, i) => i * i));
        // Its death is seen at once: its end of the doorbell (shm) or of the pipes closes.
        await until("the worker to be replaced", () => {
          const w = pool.stats.workers[2];
          return w?.state === "ready" && w.id !== victim;
        });
        assert.ok(pool.stats.restarts >= 1);
      } finally {
        await pool.close();
      }
      // This pool's segments only (`/ipckit-pool-<master pid>-<n>`): other test files run pools at the same time.
      const mine = `ipckit-pool-${rt.pid}-`;
      const left = (await import("node:fs")).readdirSync("/dev/shm").filter((f) => f.startsWith(mine));
      assert.deepEqual(left, []);
    },
  );
}

test("pool: random SIGKILLs of workers during 10 000 tasks: each settles exactly once, none is lost (property)", {
  timeout: 600_000,
}, async () => {
  const rt = await runtime();
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.record({ at: fc.integer({ min: 100, max: 9_500 }), slot: fc.nat(2) }), {
        minLength: 1,
        maxLength: 4,
      }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      async (kills, idempotentShare) => {
        const pool = new Pool<Handlers>({
          worker: WORKER,
          kind: "process",
          runtime: ["deno", "bun", "node"],
          size: 3,
          concurrency: 4,
          restartDelay: 10,
          maxRestarts: 50,
          signals: false,
        });
        try {
          const N = 10_000;
          const settled = new Uint8Array(N);
          let finished = 0;
          const pending = [...kills].sort((a, b) => a.at - b.at);
          const outcomes = await Promise.all(Array.from({ length: N }, (_, i) => {
            const idempotent = i / N < idempotentShare;
            return pool.run(i, { idempotent }).then(
              (v) => ({ i, ok: true as const, v, idempotent }),
              (e) => ({ i, ok: false as const, e, idempotent }),
            ).finally(() => {
              settled[i]!++;
              finished++;
              while (pending.length > 0 && finished >= pending[0]!.at) {
                const k = pending.shift()!;
                const pid = pool.stats.workers[k.slot]?.id;
                if (pid !== undefined) rt.kill(pid, "SIGKILL");
              }
            });
          }));
          assert.ok(settled.every((n) => n === 1), "every task settled exactly once");
          for (const o of outcomes) {
            if (o.ok) assert.equal(o.v, o.i * o.i);
            else assert.ok(o.e instanceof WorkerDiedError, `task ${o.i}: ${o.e}`);
          }
          const stats = pool.stats;
          assert.equal(stats.done + stats.failed, N);
          assert.equal(stats.queued, 0);
          assert.equal(stats.running, 0);
        } finally {
          await pool.close();
        }
      },
    ),
    { numRuns: 2, seed, verbose: true },
  );
});

test(
  "pool: a crashing thread is replaced; its task is lost, or re-run when idempotent, until retries run out",
  LONG,
  async () => {
    const pool = new Pool<Handlers>({
      worker: WORKER,
      kind: "thread",
      size: 1,
      retries: 2,
      restartDelay: 10,
      signals: false,
    });
    const events = record(pool);
    try {
      await assert.rejects(pool.call("die", []), (e) => e instanceof WorkerDiedError && e.attempts === 1);
      await assert.rejects(
        pool.call("die", [], { idempotent: true }),
        (e) => e instanceof WorkerDiedError && e.attempts === 3,
      );
      assert.equal(await pool.run(5), 25); // the replacement works
      assert.equal(pool.stats.retried, 2);
      assert.ok(pool.stats.restarts >= 4);
    } finally {
      await pool.close();
    }
    assert.ok(events.some((e) => e.type === "task-retry"));
    assert.ok(events.some((e) => e.type === "task-lost"));
    assert.equal(events.at(-1)?.type, "closed");
  },
);

test("pool: a task past taskTimeout rejects with TimeoutError and its hung worker is replaced", LONG, async () => {
  await withPool({ kind: "process", size: 1, taskTimeout: 1000, restartDelay: 10 }, async (pool) => {
    const before = (await pool.call("whoami", [])).pid;
    await assert.rejects(pool.call("spin", [600_000]), TimeoutError);
    await until("the hung worker to be gone", () => !alive(before));
    const after = (await pool.call("whoami", [])).pid;
    assert.notEqual(after, before);
  });
});

test("pool: the heartbeat finds an idle worker that hangs, and replaces it", LONG, async () => {
  const events = await withPool(
    { kind: "process", size: 1, heartbeat: 200, taskTimeout: 1000, restartDelay: 10 },
    async (pool) => {
      await pool.ready();
      const before = pool.stats.workers[0]!.id!;
      assert.equal(await pool.call("freeze", []), "frozen soon");
      await until("the hung worker's replacement", () => {
        const w = pool.stats.workers[0];
        return w?.state === "ready" && w.id !== before;
      });
      assert.equal(await pool.run(6), 36);
      assert.ok(!alive(before));
    },
  );
  assert.ok(events.some((e) => e.type === "worker-hung"));
});

test("pool: reload() replaces every worker one at a time while tasks keep running", LONG, async () => {
  let reloaded: Pool<Handlers> | undefined;
  await withPool({ kind: "thread", size: 2 }, async (pool) => {
    reloaded = pool;
    await pool.ready();
    const before = pool.stats.workers.map((w) => w.id);
    const during = Array.from({ length: 200 }, (_, i) => pool.run(i));
    await pool.reload();
    assert.deepEqual(await Promise.all(during), Array.from({ length: 200 }, (_, i) => i * i));
    const after = pool.stats.workers.map((w) => w.id);
    for (const id of after) assert.ok(id !== undefined && !before.includes(id), `worker ${id} is new`);
    assert.equal(pool.stats.restarts, 0, "a reload is not a restart");
    assert.equal(await pool.run(4), 16);
  });
  assert.deepEqual(reloaded!.stats.workers.map((w) => w.state), ["dead", "dead"]);
});

test("pool: a deadline and a signal reach the handler; a queued task that is aborted never runs", LONG, async () => {
  await withPool({ kind: "thread", size: 1 }, async (pool) => {
    await assert.rejects(pool.call("sleep", [60_000], { timeout: 100 }), TimeoutError);
    const ac = new AbortController();
    const running = pool.call("sleep", [60_000], { signal: ac.signal });
    const queued = new AbortController();
    const waiting = pool.call("sleep", [1], { signal: queued.signal });
    queued.abort(new Error("not needed"));
    await assert.rejects(waiting, /not needed/);
    ac.abort();
    await assert.rejects(running, (e) => (e as Error).name === "AbortError");
    assert.equal(await pool.run(3), 9);
    await assert.rejects(pool.run(1, { signal: AbortSignal.abort() }), (e) => (e as Error).name === "AbortError");
  });
});

test("pool: past maxQueue, run() rejects with QueueFullError and queues nothing", LONG, async () => {
  await withPool({ kind: "thread", size: 1, maxQueue: 3 }, async (pool) => {
    await pool.run(1); // the worker is up: one task runs, three wait
    const accepted = [pool.call("sleep", [200]), pool.run(2), pool.run(3), pool.run(4)];
    await assert.rejects(pool.run(5), QueueFullError);
    assert.deepEqual(await Promise.all(accepted), [200, 4, 9, 16]);
    assert.equal(pool.stats.queued, 0);
  });
});

test("pool: workers that cannot start make a crash loop that fails the pool instead of spinning", LONG, async () => {
  const events = await withPool(
    { worker: BROKEN, kind: "process", size: 2, restartDelay: 10, maxRestarts: 3 },
    async (pool) => {
      await assert.rejects(pool.run(1), (e) => e instanceof WorkerDiedError && /keeps dying/.test(e.message));
      await assert.rejects(pool.run(2), WorkerDiedError); // failed for good
      await assert.rejects(pool.ready(), WorkerDiedError);
      assert.deepEqual(pool.stats.workers.map((w) => w.state), ["gave up", "gave up"]);
    },
  );
  assert.equal(events.filter((e) => e.type === "crash-loop").length, 2);
});

test(
  "pool: close() drains what is queued and running; terminate() rejects it; both stop every worker",
  LONG,
  async () => {
    const pool = new Pool<Handlers>({ worker: WORKER, kind: "process", size: 2, concurrency: 2, signals: false });
    await until("both workers", () => pool.stats.workers.every((w) => w.state === "ready"));
    const pids = pool.stats.workers.map((w) => w.id!);
    const work = Array.from({ length: 8 }, () => pool.call("sleep", [100]));
    const closed = pool.close();
    await assert.rejects(pool.run(1), ClosedError);
    assert.deepEqual(await Promise.all(work), Array(8).fill(100));
    await closed;
    for (const pid of pids) await until(`worker ${pid} to exit`, () => !alive(pid));

    const other = new Pool<Handlers>({ worker: WORKER, kind: "thread", size: 1, signals: false });
    await other.run(1);
    const cut = [other.call("sleep", [60_000]), other.call("sleep", [60_000])].map((p) =>
      p.then(() => "ran", (e) => e)
    );
    await other.terminate();
    for (const outcome of await Promise.all(cut)) assert.ok(outcome instanceof ClosedError, String(outcome));
  },
);

test("pool: options are checked, and worker() outside a pool says so", async () => {
  assert.throws(() => new Pool({ worker: WORKER, size: 0 }), RangeError);
  assert.throws(() => new Pool({ worker: WORKER, kind: "fiber" as never }), TypeError);
  assert.throws(() => new Pool({ worker: "relative.ts" }), TypeError);
  assert.throws(() => new Pool({ worker: ["node", "w.js"], kind: "thread" }), TypeError);
  assert.throws(() => new Pool({ worker: WORKER, kind: "thread", transport: "pipe" }), TypeError);
  assert.throws(() => new Pool({ worker: WORKER, kind: "process", transport: "carrier pigeon" as never }), TypeError);
  const other = (await runtime()).name === "deno" ? "bun" : "deno";
  assert.throws(() => new Pool({ worker: WORKER, kind: "thread", runtime: other }), RangeError);
  await assert.rejects(poolApi.worker(() => 1), UnsupportedError);
  await assert.rejects(poolApi.worker({}), TypeError);
});

// ---- the master process: signals and orphans ----

async function startMaster(mode: string, on: "deno" | "bun" | "node") {
  const rt = await runtime();
  const child = rt.spawn([...runtimeArgv(on, rt.fromFileUrl(MASTER)), mode], {
    stdio: "null",
    stderr: "pipe",
  });
  const lines: string[] = [];
  let buffered = "";
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of child.stderr!) {
      buffered += decoder.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        lines.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
    }
  })();
  const line = async (match: (l: string) => boolean, what: string) => {
    await until(what, () => lines.some(match), 120_000);
    return lines.find(match)!;
  };
  const first = JSON.parse(await line((l) => l.startsWith('{"pids"'), "the master's workers")) as { pids: number[] };
  return { child, lines, line, pids: first.pids };
}

async function reap(child: ChildProcess, pids: number[]) {
  child.kill("SIGKILL");
  await child.exited;
  for (const pid of pids) if (alive(pid)) process.kill(pid, "SIGKILL");
}

// The master is a child process of its own runtime: each runner starts one of its own runtime, so the run covers the
// three (one runner would otherwise start the same three masters as the others).
{
  const master = runtimeName();
  test(`pool: a SIGKILLed ${master} master leaves no worker process behind`, LONG, async () => {
    const m = await startMaster("idle", master);
    try {
      assert.equal(m.pids.length, 3);
      assert.ok(m.pids.every(alive));
      m.child.kill("SIGKILL");
      await m.child.exited;
      await until("every worker to die with its master", () => m.pids.every((p) => !alive(p)), 30_000);
    } finally {
      await reap(m.child, m.pids);
    }
  });
}

test("pool: SIGTERM on the master drains the running tasks, then the master exits with 143", LONG, async () => {
  const rt = await runtime();
  const m = await startMaster("drain", rt.name);
  try {
    await m.line((l) => l === "started", "the tasks to start");
    m.child.kill("SIGTERM");
    const status = await m.child.exited;
    // Deno's node:child_process reports the last signal kill() sent as the exit signal, whatever the exit code. The six
    // `done` lines are what shows the drain: without it, SIGTERM ends the master before its 600 ms tasks finish.
    const exit143 = status.code === 143 || (rt.name === "deno" && status.signal === "SIGTERM");
    assert.ok(exit143, JSON.stringify(status) + "\n" + m.lines.join("\n"));
    assert.equal(m.lines.filter((l) => l.startsWith("done ")).length, 6, m.lines.join("\n"));
    await until("the workers to exit", () => m.pids.every((p) => !alive(p)), 30_000);
  } finally {
    await reap(m.child, m.pids);
  }
});

test("pool: SIGHUP on the master replaces every worker, one at a time, and tasks go on", LONG, async () => {
  const rt = await runtime();
  const m = await startMaster("reload", rt.name);
  try {
    m.child.kill("SIGHUP");
    const line = await m.line((l) => l.startsWith('{"reloaded"'), "the reload");
    const { reloaded, result } = JSON.parse(line) as { reloaded: number[]; result: number };
    assert.equal(result, 144);
    assert.equal(reloaded.length, 3);
    for (const pid of reloaded) assert.ok(!m.pids.includes(pid), `worker ${pid} was replaced`);
    const status = await m.child.exited;
    // Deno's node:child_process reports the last signal kill() sent as the exit signal, whatever the exit code.
    const clean = status.code === 0 || (rt.name === "deno" && status.signal === "SIGHUP");
    assert.ok(clean, JSON.stringify(status) + "\n" + m.lines.join("\n"));
    await until("the old workers to exit", () => m.pids.every((p) => !alive(p)), 30_000);
  } finally {
    await reap(m.child, m.pids);
  }
});
