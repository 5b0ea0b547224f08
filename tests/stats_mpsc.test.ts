/**
 * Counters of the many-producer channel (`shm/mpsc.ts`): the collector and each producer count in this process's
 * stats segment (`shm/stats.ts`, kind `channel`): messages and bytes, sleeps, wake-ups of the other side, and the
 * collector's records lost to dead producers; a producer of each runtime is read from its own process's segment.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { NotFoundError, runtime, runtimeArgv, SharedMemory, shm, stats } from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { spawnWithLines } from "./helpers/child_lines.ts";
import { parsePrometheus } from "./helpers/prometheus.ts";
import { statsObject } from "./helpers/stats_objects.ts";

const LONG = { timeout: 120_000 };
const rt = await runtime();
const CHILD = rt.fromFileUrl(new URL("./helpers/shm_mpsc_child.ts", import.meta.url));
stats.setStats(true);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let names = 0;
const segment = () => `/ipckit-mpsc-stats-${rt.pid}-${names++}`; // not /ipckit-stats-: that is a stats segment

const mine = (name: string, ok: (o: stats.ObjectStats) => boolean) => statsObject(rt.pid, name, ok);

test("stats mpsc: a thread collector and its producers count messages, bytes, sleeps and wake-ups", LONG, async () => {
  const collector = shm.threadCollector({ capacity: 1024 });
  const a = shm.producerFromHandle(collector.handle!);
  const b = shm.producerFromHandle(collector.handle!);
  const aName = `thread collector (producer ${a.slot})`, bName = `thread collector (producer ${b.slot})`;
  try {
    for (let i = 0; i < 3; i++) await a.send(new Uint8Array(10));
    const loan = await b.loan(7);
    loan.commit(5);
    for (let i = 0; i < 2; i++) await collector.receive();
    for (let i = 0; i < 2; i++) {
      using _ = await collector.receiveLoan();
    }
    const c = await mine("thread collector", (o) => o.state === "live" && o.counters.messagesIn === 4);
    assert.deepEqual(
      [c.kind, c.counters.bytesIn, c.counters.messagesOut, c.counters.capacity, c.counters.lost],
      ["channel", 35, 0, 1024, 0],
    );
    const sa = await mine(aName, (o) => o.counters.messagesOut === 3);
    assert.deepEqual([sa.kind, sa.counters.bytesOut, sa.counters.messagesIn, sa.counters.capacity], [
      "channel",
      30,
      0,
      1024,
    ]);
    assert.equal((await mine(bName, (o) => o.counters.messagesOut === 1)).counters.bytesOut, 5);
    // A collector with nothing to take sleeps; the send that follows wakes it.
    const waiting = collector.receive({ timeout: 30_000 });
    await sleep(50);
    await a.send(new Uint8Array(1));
    await waiting;
    await mine("thread collector", (o) => o.state === "live" && o.counters.sleeps! >= 1);
    await mine(aName, (o) => o.counters.wakes! >= 1);
    // A producer with no room sleeps; the receive that makes room wakes it.
    while (b.trySend(new Uint8Array(100)));
    const sending = b.send(new Uint8Array(100), { timeout: 30_000 });
    await sleep(50);
    while (collector.tryReceive());
    await sending;
    await mine(bName, (o) => o.counters.sleeps! >= 1);
    await mine("thread collector", (o) => o.state === "live" && o.counters.wakes! >= 1);
  } finally {
    await Promise.all([a.close(), b.close(), collector.close()]);
  }
  await mine(aName, (o) => o.state === "closed" && o.counters.messagesOut === 4);
  await mine("thread collector", (o) => o.state === "closed" && o.counters.messagesIn! >= 5);
});

test(
  "stats mpsc: a named collector counts the record of a dead producer as lost, in Prometheus too",
  LONG,
  async () => {
    const name = segment();
    const collector = await shm.collector(name, { capacity: 1024 });
    const view = await SharedMemory.open(name);
    const p = await shm.producer(name);
    try {
      await p.send(new Uint8Array([1]));
      // A producer in slot 40, of a process that is gone, reserved 100 bytes and died (the layout: shm/mpsc_layout.ts).
      const dead = rt.spawn(["true"], { stdio: "null" });
      await dead.exited;
      const words = new Int32Array(view.buffer);
      const s = 192 / 4 + 40 * 8, t = words[16]!;
      words[s + 1] = dead.pid;
      Atomics.store(words, s, 2);
      words[s + 5] = 100;
      words[s + 4] = t + 1;
      words[16] = t + ((16 + 100 + 7) & ~7);
      await p.send(new Uint8Array([2, 2]));
      assert.deepEqual((await collector.receive({ timeout: 30_000 })).data, new Uint8Array([1]));
      assert.deepEqual((await collector.receive({ timeout: 30_000 })).data, new Uint8Array([2, 2]));
      const c = await mine(`${name} (collector)`, (o) => o.counters.lost === 1);
      assert.deepEqual([c.counters.messagesIn, c.counters.bytesIn], [2, 3]);
      await mine(`${name} (producer ${p.slot})`, (o) => o.counters.messagesOut === 2 && o.counters.bytesOut === 3);
      const families = parsePrometheus(stats.prometheusText(await stats.listStats()));
      const lost = families.get("ipckit_channel_lost_total")!;
      assert.equal(lost.type, "counter");
      const sample = lost.samples.find((x) =>
        x.labels.pid === String(rt.pid) && x.labels.name === `${name} (collector)`
      );
      assert.equal(sample?.value, 1);
    } finally {
      view.close();
      await p.close();
      await collector.close();
    }
    await mine(`${name} (collector)`, (o) => o.state === "closed");
  },
);

for (const other of RUNTIMES) {
  test(`stats mpsc: a ${other} producer's counters are in its own process's segment`, LONG, async () => {
    const name = segment();
    const collector = await shm.collector(name, { capacity: 4096 });
    const child = spawnWithLines(rt, [...runtimeArgv(other, CHILD), "stats", name, "5"], {});
    try {
      const ready = await child.line();
      const m = /^ready (\d+) (\/ipckit-stats-\S+)$/.exec(ready);
      assert.ok(m, ready);
      const theirs = await stats.readStats(m[2]!);
      assert.equal(theirs.runtime, other);
      const o = theirs.objects.find((x) => x.name === `${name} (producer ${m[1]})`);
      assert.ok(o, JSON.stringify(theirs.objects));
      assert.deepEqual([o.kind, o.state, o.counters.messagesOut, o.counters.bytesOut, o.counters.capacity], [
        "channel",
        "live",
        5,
        50,
        4096,
      ]);
      for (let i = 0; i < 5; i++) assert.equal((await collector.receive({ timeout: 30_000 })).pid, child.child.pid);
      const c = await mine(`${name} (collector)`, (x) => x.counters.messagesIn === 5);
      assert.equal(c.counters.bytesIn, 50);
      child.child.kill("SIGTERM");
      assert.equal((await child.child.exited).code, 0);
      await assert.rejects(stats.readStats(m[2]!), NotFoundError, "its exit removed its stats segment");
    } finally {
      child.child.kill("SIGKILL");
      await child.child.exited;
      await collector.close();
    }
  });
}
