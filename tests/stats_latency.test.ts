/**
 * Latency slots in the stats segment (shm/stats_latency.ts): RPC methods called and served, a pool's waits and its
 * methods' run times; their buckets, quantiles, Prometheus histograms, and a hand-made slot read back. Counts are
 * exact; times are only checked against what a handler's own sleep guarantees (a lower bound), never an upper one.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Pool, rpc, runtime, shm, stats } from "../mod.ts";
import { main } from "../cli/commands.ts";
import { rows, shownNow } from "../cli/top.ts";
import { parseStats } from "../shm/stats.ts";
import { bucketOf } from "../shm/stats_latency.ts";
import { parsePrometheus } from "./helpers/prometheus.ts";

const LONG = { timeout: 120_000 };
const rt = await runtime();
const POOL_WORKER = new URL("./helpers/pool_worker.ts", import.meta.url);
stats.setStats(true);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
/** How many of `count` operations are timed: the first, then one in SAMPLE_EVERY. */
const timed = (count: number) => Math.ceil(count / stats.SAMPLE_EVERY);

/** This process's objects, once `ok` accepts them (at most 60 s; no timing is asserted). */
async function mineWhen(ok: (objects: stats.ObjectStats[]) => boolean): Promise<stats.ObjectStats[]> {
  const end = Date.now() + 60_000;
  for (;;) {
    const objects = (await stats.listStats()).flatMap((p) => ("pid" in p && p.pid === rt.pid ? p.objects : []));
    if (ok(objects)) return objects;
    if (Date.now() > end) throw new Error(`timed out: ${JSON.stringify(objects.map((o) => [o.name, o.counters]))}`);
    await sleep(20);
  }
}

const named = (objects: stats.ObjectStats[], name: string) => objects.find((o) => o.name === name);

test(
  "stats latency: RPC methods called and served are counted exactly, one in 8 timed, failures apart",
  LONG,
  async () => {
    const [a, handle] = shm.pair();
    const server = rpc.serve(a, {
      add: (x: number, y: number) => x + y,
      nap: (ms: number) => sleep(ms).then(() => ms),
      fail: () => {
        throw new Error("no");
      },
    }, { name: "lat server" });
    const client = rpc.connect<{ add(x: number, y: number): number; nap(ms: number): number; fail(): void }>(
      shm.fromHandle(handle),
      { name: "lat client" },
    );
    try {
      for (let i = 0; i < 100; i++) await client.api.add(i, 1);
      for (let i = 0; i < 9; i++) await client.api.nap(40);
      for (let i = 0; i < 3; i++) await assert.rejects(client.api.fail());
      const objects = await mineWhen((os) => named(os, "lat server · serve fail")?.counters.failed === 3);
      for (const [name, count, failed] of [["call add", 100, 0], ["call nap", 9, 0], ["call fail", 3, 3]] as const) {
        for (const side of [`lat client · ${name}`, `lat server · ${name.replace("call", "serve")}`]) {
          const o = named(objects, side);
          assert.ok(o, `a slot named ${side}`);
          assert.equal(o.kind, "latency");
          assert.deepEqual([o.counters.count, o.counters.failed], [count, failed], side);
          assert.equal(o.buckets!.length, stats.LATENCY_BUCKETS);
          assert.equal(sum(o.buckets!), timed(count), `${side}: the first and one in 8 timed`);
          assert.ok(o.counters.sumUs! > 0, `${side}: time summed`);
        }
      }
      // A handler that sleeps 40 ms takes at least 32 768 us: nothing timed lands below that bucket.
      for (const side of ["lat client · call nap", "lat server · serve nap"]) {
        const b = named(objects, side)!.buckets!;
        assert.equal(sum(b.slice(0, bucketOf(32_768))), 0, `${side}: ${b}`);
        assert.ok(stats.quantile(b, 0.5) >= 32_768, side);
      }
    } finally {
      await client.close();
      await server.close();
    }
    const after = await mineWhen((os) => named(os, "lat client · call add")?.state === "closed");
    assert.equal(named(after, "lat server · serve add")?.state, "closed");
  },
);

test(
  "stats latency: connections of one name share their slots; past 32 methods they count as (other)",
  LONG,
  async () => {
    const handlers: Record<string, () => number> = {};
    for (let i = 0; i < 40; i++) handlers[`m${i}`] = () => i;
    const pairs = [shm.pair(), shm.pair()];
    const servers = pairs.map(([a]) => rpc.serve(a, handlers, { name: "lat shared" }));
    const clients = pairs.map(([, h]) => rpc.connect(shm.fromHandle(h), { name: "lat many" }));
    try {
      for (const c of clients) for (let i = 0; i < 40; i++) assert.equal(await c.call(`m${i}`), i);
      const objects = await mineWhen((os) => named(os, "lat shared · serve (other)")?.counters.count === 16);
      const served = objects.filter((o) => o.kind === "latency" && o.name.startsWith("lat shared · serve "));
      assert.equal(served.length, 33, "32 methods and (other)");
      assert.equal(named(objects, "lat shared · serve m0")?.counters.count, 2, "both connections count in one slot");
      assert.equal(named(objects, "lat many · call (other)")?.counters.count, 16);
    } finally {
      for (const c of clients) await c.close();
      for (const s of servers) await s.close();
    }
  },
);

test("stats latency: a pool's wait, and its methods' run times under the pool's name", LONG, async () => {
  const pool = new Pool<
    { run(n: number): number; sleep(ms: number): number; whoami(): unknown; die(code: number): void }
  >({
    worker: POOL_WORKER,
    kind: "process", // the slot's id is then its worker's pid
    size: 1,
    name: "lat pool",
  });
  try {
    // One worker, five 40 ms tasks at once: the last waits for the four before it.
    await Promise.all(Array.from({ length: 5 }, () => pool.call("sleep", [40])));
    await Promise.all(Array.from({ length: 50 }, (_, i) => pool.run(i)));
    const objects = await mineWhen((os) => named(os, "lat pool · wait")?.counters.count === 55);
    const wait = named(objects, "lat pool · wait")!;
    assert.equal(wait.counters.failed, 0);
    assert.equal(sum(wait.buckets!), timed(55));
    const run = named(objects, "lat pool · call sleep")!;
    assert.equal(run.counters.count, 5);
    assert.equal(sum(run.buckets!.slice(0, bucketOf(32_768))), 0, "each ran 40 ms or more");
    assert.equal(named(objects, "lat pool · call run")?.counters.count, 50);
    // The worker slot: ready, its pid, what it ran; killed, it is restarted and the slot says so.
    const worker = named(objects, "lat pool worker 0")!;
    assert.equal(worker.kind, "worker");
    const pid = (await pool.call("whoami", [])) as { pid: number };
    assert.deepEqual(
      [worker.counters.slot, worker.counters.state, worker.counters.running, worker.counters.done],
      [0, 2, 0, 55],
    );
    assert.equal(worker.counters.id, pid.pid);
    await pool.call("die", [1], { idempotent: false }).catch(() => {});
    const again = await mineWhen((os) => {
      const w = named(os, "lat pool worker 0");
      return w?.counters.restarts === 1 && w.counters.state === 2;
    });
    assert.notEqual(named(again, "lat pool worker 0")!.counters.id, pid.pid, "a new worker");
  } finally {
    await pool.close();
  }
  const closed = await mineWhen((os) => named(os, "lat pool · wait")?.state === "closed");
  assert.equal(named(closed, "lat pool worker 0")?.state, "closed");
});

test("stats latency: Prometheus histograms are cumulative, end in +Inf and count what was timed", LONG, async () => {
  const [a, handle] = shm.pair();
  const server = rpc.serve(a, { echo: (x: unknown) => x }, { name: "prom lat" });
  const client = rpc.connect(shm.fromHandle(handle), { name: "prom lat client" });
  try {
    for (let i = 0; i < 20; i++) await client.call("echo", i);
    await mineWhen((os) => named(os, "prom lat · serve echo")?.counters.count === 20);
    const text = stats.prometheusText(await stats.listStats());
    const families = parsePrometheus(text);
    const histogram = families.get("ipckit_latency_seconds");
    assert.equal(histogram?.type, "histogram");
    const mine = histogram!.samples.filter((s) => s.labels.name === "prom lat · serve echo");
    const buckets = mine.filter((s) => s.name === "ipckit_latency_seconds_bucket");
    assert.equal(buckets.length, stats.LATENCY_BUCKETS);
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, "cumulative");
    assert.equal(buckets.at(-1)!.labels.le, "+Inf");
    assert.equal(buckets.at(-1)!.value, timed(20));
    assert.equal(mine.find((s) => s.name === "ipckit_latency_seconds_count")?.value, timed(20));
    assert.ok(mine.find((s) => s.name === "ipckit_latency_seconds_sum")!.value > 0);
    const ops = families.get("ipckit_operations_total")!.samples.filter((s) =>
      s.labels.name === "prom lat · serve echo"
    );
    assert.deepEqual(ops.map((s) => [s.labels.outcome, s.value]), [["begun", 20], ["failed", 0]]);
    // The table shows p50 and p99 of the slot.
    const lines: string[] = [];
    const log = console.log;
    console.log = (...xs: unknown[]) => void lines.push(xs.join(" "));
    try {
      assert.equal(await main(["stats"]), 0);
    } finally {
      console.log = log;
    }
    const row = lines.join("\n").split("\n").find((l) => l.includes("prom lat · serve echo"));
    assert.match(row ?? "", /count=20 p50=\S+us p99=\S+/);
  } finally {
    await client.close();
    await server.close();
  }
});

test("stats latency: a hand-made latency slot reads back; buckets and quantiles by hand", () => {
  const bytes = new Uint8Array(64 + 256);
  const view = new DataView(bytes.buffer);
  const words = [0x54534b49, 1, 64, 256, 1, 4242];
  words.forEach((w, i) => view.setUint32(i * 4, w, true));
  view.setUint32(48, 1, true); // slots used
  view.setUint32(64, 1, true); // live
  view.setUint32(68, 4, true); // kind 4: latency
  view.setUint32(72, 1, true); // generation
  const name = new TextEncoder().encode("x · call y");
  view.setUint32(76, name.length, true);
  bytes.set(name, 80);
  const counters = [12, 1, 123.5, 0, 3, 0, 0, 0, 7];
  counters.forEach((v, k) => view.setFloat64(64 + 72 + k * 8, v, true));
  view.setFloat64(64 + 72 + 22 * 8, 2, true); // the last bucket
  const o = parseStats("/hand-made", bytes).objects[0]!;
  assert.equal(o.kind, "latency");
  assert.deepEqual(o.counters, { count: 12, failed: 1, sumUs: 123.5 });
  assert.deepEqual(o.buckets!.slice(0, 6), [0, 3, 0, 0, 0, 7]);
  assert.equal(o.buckets![19], 2);
  // bucket 1 is [2, 4) us, bucket 5 [32, 64), the last [524288, Infinity)
  assert.equal(stats.quantile(o.buckets!, 0), 2);
  assert.equal(stats.quantile(o.buckets!, 0.25), 4); // the 3rd of 12: the top of bucket 1
  assert.equal(stats.quantile(o.buckets!, 6.5 / 12), 32 + 32 * 3.5 / 7); // halfway into bucket 5
  assert.equal(stats.quantile(o.buckets!, 1), 2 ** 19);
  assert.ok(Number.isNaN(stats.quantile(new Array(stats.LATENCY_BUCKETS).fill(0), 0.5)));
  assert.deepEqual([bucketOf(0), bucketOf(1.9), bucketOf(2), bucketOf(3.99), bucketOf(4), bucketOf(1e12)], [
    0,
    0,
    1,
    1,
    2,
    19,
  ]);
  assert.equal(bucketOf(NaN), 0);
});

test("stats latency: quantile grows with q and stays inside the buckets that hold counts (property)", LONG, () => {
  const seed = Date.now() % 2 ** 31;
  try {
    fc.assert(
      fc.property(
        fc.array(fc.nat(1000), { minLength: stats.LATENCY_BUCKETS, maxLength: stats.LATENCY_BUCKETS }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        (buckets, q1, q2) => {
          const total = sum(buckets);
          const [lo, hi] = q1 <= q2 ? [q1, q2] : [q2, q1];
          const a = stats.quantile(buckets, lo), b = stats.quantile(buckets, hi);
          if (total === 0) return Number.isNaN(a) && Number.isNaN(b);
          const first = buckets.findIndex((n) => n > 0);
          const last = buckets.findLastIndex((n) => n > 0);
          // The last bucket is open: its quantiles are its lower bound.
          const top = stats.bucketCeilingUs(last) === Infinity
            ? stats.bucketFloorUs(last)
            : stats.bucketCeilingUs(last);
          return a <= b && a >= stats.bucketFloorUs(first) && b <= top;
        },
      ),
      { numRuns: 300, seed },
    );
  } catch (e) {
    throw new Error(`quantile property failed with seed ${seed}: ${(e as Error).message}`);
  }
});

test("ipckit top's rows: a latency slot's p50 and p99 over the last interval, locks and semaphores shortly", () => {
  const zero = () => new Array(stats.LATENCY_BUCKETS).fill(0);
  const early = zero(), late = zero();
  early[1] = 100; // 100 calls of 2-4 us before
  late[1] = 100;
  late[10] = 50; // then 50 of 1-2 ms
  const process = (objects: stats.ObjectStats[]): stats.ProcessStats => ({
    segment: "/ipckit-stats-1-0-0",
    pid: 1,
    runtime: "node",
    since: 0,
    objects,
  });
  const lat = (buckets: number[], count: number): stats.ObjectStats => ({
    kind: "latency",
    name: "x · call y",
    state: "live",
    counters: { count, failed: 0, sumUs: 0 },
    buckets,
  });
  const first = rows([process([lat(early, 800)])], new Map(), 0);
  assert.match(first.rows[0]!.now, /^p50 3\.0us p99 4\.0us count 800 failed 0$/);
  const second = rows([process([lat(late, 1200)])], first.sample, 2);
  assert.equal(second.rows[0]!.rate, 200, "operations begun per second");
  assert.match(second.rows[0]!.now, /^p50 1\.5ms p99 2\.0ms /, "only the last interval's calls");
  const lock: stats.ObjectStats = {
    kind: "lock",
    name: "l",
    state: "live",
    counters: {
      acquired: 5,
      contended: 1,
      ownerDied: 0,
      gaveUp: 0,
      waiting: 1,
      holder: 77,
      heldSince: Date.now() - 2000,
      longestHoldUs: 1500,
    },
  };
  assert.match(shownNow(lock, undefined), /^held here by 77 for \d\.\ds waiting 1 .* longest 1\.5ms$/);
  const sem: stats.ObjectStats = {
    kind: "semaphore",
    name: "s",
    state: "live",
    counters: { acquired: 3, contended: 0, gaveUp: 0, released: 2, waiting: 0, value: 1 },
  };
  assert.equal(shownNow(sem, undefined), "value 1 waiting 0 acquired 3 released 2 gave up 0");
});

test("ipckit top's rows: a shm channel's two ends in two processes give the bytes queued for each", () => {
  const end = (bytesOut: number, bytesIn: number): stats.ObjectStats => ({
    kind: "channel",
    name: "/ipckit-pair",
    state: "live",
    counters: { messagesOut: 1, bytesOut, messagesIn: 1, bytesIn, sleeps: 0, wakes: 0, capacity: 1024, errors: 0 },
  });
  const proc = (pid: number, objects: stats.ObjectStats[]): stats.ProcessStats => ({
    segment: `/ipckit-stats-${pid}-0-0`,
    pid,
    runtime: "node",
    since: 0,
    objects,
  });
  const two = rows([proc(1, [end(100, 10)]), proc(2, [end(10, 60)])], new Map(), 0).rows;
  assert.deepEqual(two.map((r) => r.queued), [0, 40], "side 2 has 40 of side 1's 100 bytes still to read");
  assert.match(two[1]!.now, / queued 40 B$/);
  // A read of one segment just before a message that the other already counts: never below 0.
  assert.deepEqual(rows([proc(1, [end(5, 0)]), proc(2, [end(0, 9)])], new Map(), 0).rows.map((r) => r.queued), [0, 0]);
  // Not two ends in two processes: nothing to pair.
  assert.equal(rows([proc(1, [end(100, 10)])], new Map(), 0).rows[0]!.queued, undefined);
  const three = rows([proc(1, [end(1, 1)]), proc(2, [end(1, 1)]), proc(3, [end(1, 1)])], new Map(), 0).rows;
  assert.ok(three.every((r) => r.queued === undefined));
  // A collector that skipped dead producers' records (or a subscriber that lagged) says how many, once there are.
  const collector = (lost: number): stats.ObjectStats => ({
    ...end(0, 5),
    name: "/logs (collector)",
    counters: { ...end(0, 5).counters, lost },
  });
  assert.match(rows([proc(1, [collector(3)])], new Map(), 0).rows[0]!.now, / lost 3$/);
  assert.doesNotMatch(rows([proc(1, [collector(0)])], new Map(), 0).rows[0]!.now, /lost/);
});
