import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, nats, Pool, TimeoutError, WorkerDiedError } from "../mod.ts";
import type { ChildProcess, RuntimeName } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { natsServerForFile } from "./helpers/nats_server.ts";
import { HEARTBEAT, killAll, prng, spawnWorker } from "./helpers/nats_workers.ts";

const server = natsServerForFile();

const LONG = { timeout: 300_000 };
const subject = () => `ipckit.test.pool.${Math.random().toString(36).slice(2, 10)}`;
type Handlers = {
  run(n: number): number;
  whoami(): { pid: number; runtime: string };
  sleep(ms: number): number;
  spin(ms: number): number;
};

test("Pool over NATS: workers of every runtime join, take tasks, and exit 0 when the pool closes", LONG, async () => {
  const s = subject();
  const workers = await Promise.all(RUNTIMES.map((r) => spawnWorker(r, server.url, s)));
  try {
    const p = new Pool<Handlers>({
      transport: "nats",
      nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT },
      size: 3,
    });
    await p.ready();
    const stats = p.stats.workers;
    assert.deepEqual(stats.map((w) => w.runtime).sort(), ["bun", "deno", "node"]);
    assert.ok(stats.every((w) => w.state === "ready" && typeof w.host === "string" && w.kind === "process"));
    assert.deepEqual(new Set(stats.map((w) => w.id)), new Set(workers.map((w) => w.pid)));
    const out = await Promise.all(Array.from({ length: 300 }, (_, i) => p.run(i)));
    assert.deepEqual(out, Array.from({ length: 300 }, (_, i) => i * i));
    // One task at a time per worker (concurrency 1): 30 at once keep all three busy.
    const who = new Set(
      (await Promise.all(Array.from({ length: 30 }, () => p.call("whoami", [])))).map((w) => w.runtime),
    );
    assert.equal(who.size, 3, `tasks reached ${[...who]}`);
    await assert.rejects(p.call("sleep", [60_000], { timeout: 100 }), TimeoutError); // a deadline crosses NATS
    await p.close();
    const exits = await Promise.all(workers.map((w) => w.exited));
    assert.deepEqual(exits, workers.map(() => ({ code: 0, signal: null })));
  } finally {
    await killAll(workers);
  }
});

test(
  "Pool over NATS: 10 000 tasks while workers of three runtimes are SIGKILLed at random settle exactly once",
  LONG,
  async () => {
    const seed = (Date.now() ^ 0x5eed) >>> 0;
    const random = prng(seed);
    const s = subject();
    const live = new Map<number, ChildProcess>();
    const all: ChildProcess[] = [];
    const killed = new Set<number>();
    // A worker that leaves by itself (declared dead by a missed heartbeat, say) is not replaced by the killer: with
    // all gone the tasks would wait for ever. Fail at once, saying so, instead.
    let left!: (e: Error) => void;
    const leftAlone = new Promise<never>((_, reject) => (left = reject));
    leftAlone.catch(() => {});
    const start = async (r: RuntimeName) => {
      const c = await spawnWorker(r, server.url, s);
      live.set(c.pid, c);
      all.push(c);
      void c.exited.then((status) => {
        live.delete(c.pid);
        if (!killed.has(c.pid) && finished < total) {
          left(new Error(`seed ${seed}: ${r} worker ${c.pid} left by itself (${JSON.stringify(status)})`));
        }
      });
    };
    const total = 10_000;
    let finished = 0;
    let stopped = false;
    try {
      for (const r of [...RUNTIMES, ...RUNTIMES]) await start(r);
      await using p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT },
        size: 6,
        concurrency: 4,
        retries: 20,
        signals: false,
      });
      await p.ready();
      const settled = new Array<number>(total).fill(0);
      const outcome: Array<{ ok: boolean; value: unknown }> = new Array(total);
      let kills = 0;
      const tasks = Array.from({ length: total }, (_, i) => {
        const idempotent = i % 3 !== 0;
        return p.run(i, { idempotent }).then(
          (value) => ({ ok: true, value }),
          (value) => ({ ok: false, value }),
        ).then((r) => {
          settled[i]!++;
          outcome[i] = r;
          finished++;
        });
      });
      // The killer: every 600-1400 finished tasks, SIGKILL a random worker and start one of the same runtime.
      let nextKill = 600 + Math.floor(random() * 800);
      const killer = (async () => {
        while (finished < total && !stopped) {
          await new Promise((r) => setTimeout(r, 5));
          if (finished >= nextKill && live.size > 0 && kills < 8) {
            const victims = [...live.values()];
            const victim = victims[Math.floor(random() * victims.length)]!;
            const r = p.stats.workers.find((w) => w.id === victim.pid)?.runtime ?? "node";
            killed.add(victim.pid);
            victim.kill("SIGKILL");
            kills++;
            nextKill = finished + 600 + Math.floor(random() * 800);
            await start(r);
          }
        }
      })();
      await Promise.race([Promise.all(tasks), leftAlone]);
      await killer;
      assert.ok(settled.every((n) => n === 1), `seed ${seed}: a task settled ${Math.max(...settled)} times`);
      let failed = 0;
      for (let i = 0; i < total; i++) {
        const r = outcome[i]!;
        if (r.ok) {
          assert.equal(r.value, i * i, `seed ${seed}: task ${i}`);
          continue;
        }
        failed++;
        assert.ok(i % 3 === 0, `seed ${seed}: idempotent task ${i} failed: ${r.value}`);
        assert.ok(r.value instanceof WorkerDiedError, `seed ${seed}: task ${i}: ${r.value}`);
      }
      const stats = p.stats;
      assert.equal(stats.done + stats.failed, total, `seed ${seed}`);
      assert.equal(stats.failed, failed);
      assert.ok(kills >= 3, `seed ${seed}: only ${kills} kills`);
      console.log(`# seed ${seed}: ${kills} kills, ${stats.retried} retried, ${failed} lost (not idempotent)`);
    } finally {
      stopped = true;
      await killAll(all);
    }
  },
);

test(
  "Pool over NATS: a worker that hangs past taskTimeout is dropped, and one whose master vanishes exits",
  LONG,
  async () => {
    const s = subject();
    const hung = await spawnWorker("node", server.url, s);
    try {
      const p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT },
        taskTimeout: 500,
        signals: false,
      });
      await p.ready();
      await assert.rejects(p.call("spin", [3000]), TimeoutError);
      for (let i = 0; i < 600 && p.stats.workers.length > 0; i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(p.stats.workers.length, 0, "the hung worker's slot is gone");
      assert.deepEqual(await hung.exited, { code: 0, signal: null }); // it saw its channel end once it woke up
      await p.close();
    } finally {
      await killAll([hung]);
    }
    // A master that vanishes without a word (its NATS connection cut): the worker's heartbeats go unanswered.
    const s2 = subject();
    const orphan = await spawnWorker("bun", server.url, s2);
    try {
      const link = await nats.open({ servers: server.url, options: { reconnect: false } });
      const p = new Pool<Handlers>({
        transport: "nats",
        nats: { link, subject: s2, heartbeat: HEARTBEAT },
        signals: false,
      });
      await p.ready();
      await link.connection.close(); // no END reaches the worker
      assert.deepEqual(await orphan.exited, { code: 0, signal: null });
      await p.terminate();
    } finally {
      await killAll([orphan]);
    }
  },
);

test(
  "Pool over NATS: tasks wait for a worker to join; bad options throw; an unreachable server fails the pool",
  LONG,
  async () => {
    const s = subject();
    const p = new Pool<Handlers>({ transport: "nats", nats: { servers: server.url, subject: s }, signals: false });
    const early = p.run(12); // queued: no worker yet
    const late = await spawnWorker("deno", server.url, s);
    try {
      assert.equal(await early, 144);
      await p.close();
      assert.deepEqual(await late.exited, { code: 0, signal: null });
    } finally {
      await killAll([late]);
    }
    assert.throws(() => new Pool({ transport: "nats" }), TypeError);
    assert.throws(() => new Pool({ transport: "nats", kind: "thread", nats: {} }), TypeError);
    assert.throws(() => new Pool({ transport: "nats", nats: { subject: "bad subject" } }), TypeError);
    assert.throws(() => new Pool({ transport: "nats", nats: { heartbeat: 1 } }), RangeError);
    assert.throws(() => new Pool({ worker: new URL(import.meta.url), nats: {} }), TypeError);
    const nowhere = new Pool({ transport: "nats", nats: { servers: "127.0.0.1:1", timeout: 2000 }, signals: false });
    await assert.rejects(
      nowhere.run(1),
      (e: Error) => e instanceof WorkerDiedError && /Cannot take workers from NATS/.test(e.message),
    );
    await assert.rejects(nowhere.ready(), WorkerDiedError);
    await nowhere.close();
    await assert.rejects(nowhere.run(1), ClosedError);
  },
);

test(
  "ipckit worker: usage errors and a module without handlers exit 2; no pool to join exits 1; no secret printed",
  LONG,
  async () => {
    const rt = await runtime();
    const cli = rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url));
    const run = async (...args: string[]) => {
      const c = rt.spawn([...runtimeArgv(rt.name, cli), "worker", ...args], { stdio: "null", stderr: "pipe" });
      let err = "";
      for await (const chunk of c.stderr!) err += new TextDecoder().decode(chunk);
      return { ...(await c.exited), err };
    };
    const missing = await run("--module", "x.ts");
    assert.equal(missing.code, 2);
    assert.match(missing.err, /--nats URL is required/);
    const empty = await run(
      "--nats",
      server.url,
      "--module",
      rt.fromFileUrl(new URL("./helpers/nats_tls.ts", import.meta.url)),
    );
    assert.equal(empty.code, 2);
    assert.match(empty.err, /neither calls pool\.worker\(handlers\) nor exports handlers/);
    const lonely = await run(
      "--nats",
      server.url,
      "--wait",
      "300",
      "--subject",
      subject(),
      "--module",
      rt.fromFileUrl(new URL("./helpers/pool_worker.ts", import.meta.url)),
    );
    assert.equal(lonely.code, 1);
    assert.match(lonely.err, /Cannot join the pool on .*nothing listens there/);
    const secret = await run("--nats", `nats://u:hush-hush@127.0.0.1:1`, "--module", "x.ts");
    assert.equal(secret.code, 1);
    assert.doesNotMatch(secret.err, /hush-hush/);
  },
);

test(
  "Pool over NATS: reload() drains and closes each remote worker in turn; new ones joining take over",
  LONG,
  async () => {
    const s = subject();
    const old = await Promise.all((["node", "bun"] as RuntimeName[]).map((r) => spawnWorker(r, server.url, s)));
    const fresh: ChildProcess[] = [];
    try {
      await using p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT },
        size: 2,
        signals: false,
      });
      await p.ready();
      const running = Array.from({ length: 6 }, () => p.call("sleep", [200]));
      // The supervisor's part: as the old workers exit, start new ones (here: at once, they wait to join).
      for (const w of old) void w.exited.then(async () => fresh.push(await spawnWorker("deno", server.url, s)));
      await p.reload();
      assert.deepEqual(await Promise.all(running), [200, 200, 200, 200, 200, 200]); // drained, not lost
      assert.deepEqual(await Promise.all(old.map((w) => w.exited)), [{ code: 0, signal: null }, {
        code: 0,
        signal: null,
      }]);
      assert.equal((await p.call("whoami", [])).runtime, "deno"); // a new worker took over
    } finally {
      await killAll([...old, ...fresh]);
    }
  },
);

test(
  "Pool over NATS: priorities, broadcast and the wait/run times apply to remote workers of every runtime",
  LONG,
  async () => {
    const s = subject();
    const workers = await Promise.all(RUNTIMES.map((r) => spawnWorker(r, server.url, s)));
    try {
      await using p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT },
        size: 3,
        signals: false,
      });
      await p.ready();
      // Broadcast: every live remote worker answers once, each its own process.
      const answers = await p.broadcast("whoami", []);
      assert.equal(answers.length, 3);
      assert.ok(answers.every((a) => a.ok), JSON.stringify(answers));
      assert.deepEqual(answers.map((a) => a.ok && a.value.runtime).sort(), ["bun", "deno", "node"]);
      assert.deepEqual(new Set(answers.map((a) => a.id)), new Set(p.stats.workers.map((w) => w.id)));
      // Priorities: two workers busy for long, one for a short while; what waits then goes through that one worker,
      // one task at a time, so the order the tasks end in is the order the queue handed them out in.
      const busy = [p.call("sleep", [400]), p.call("sleep", [5000]), p.call("sleep", [5000])];
      for (let i = 0; i < 200 && p.stats.running < 3; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(p.stats.running, 3, "the three workers are busy");
      const order: string[] = [];
      const queued = [
        ...Array.from({ length: 4 }, (_, i) => p.run(i, { priority: 0 }).then(() => order.push(`low${i}`))),
        ...Array.from({ length: 3 }, (_, i) => p.run(i, { priority: 5 }).then(() => order.push(`high${i}`))),
      ];
      assert.equal(p.stats.queued, 7);
      await Promise.all(queued);
      assert.deepEqual(order, ["high0", "high1", "high2", "low0", "low1", "low2", "low3"]);
      await Promise.all(busy);
      // The wait and run times count what ran: 3 + 7 tasks waited in the queue (a broadcast does not); the run
      // times count every call the workers ran, the broadcast's three too.
      const { waitTime, runTime } = p.stats;
      assert.equal(waitTime.count, 10);
      assert.equal(runTime.count, 13);
      assert.ok(runTime.p99 >= runTime.p50 && waitTime.p99 >= waitTime.p50, JSON.stringify({ waitTime, runTime }));
    } finally {
      await killAll(workers);
    }
  },
);
