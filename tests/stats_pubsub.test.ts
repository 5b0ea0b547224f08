/**
 * Counters of publish-subscribe (`shm/pubsub.ts`): the publisher and each subscriber count in this process's stats
 * segment (`shm/stats.ts`, kind `channel`): messages and bytes, sleeps, wake-ups of the other side, capacity, and a
 * subscriber's messages lost by lagging (the `missed` of its LaggedErrors); a subscriber of each runtime is read from
 * its own process's segment.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { NotFoundError, runtime, runtimeArgv, shm, stats } from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { spawnWithLines } from "./helpers/child_lines.ts";
import { parsePrometheus } from "./helpers/prometheus.ts";
import { statsObject } from "./helpers/stats_objects.ts";

const LONG = { timeout: 120_000 };
const rt = await runtime();
const CHILD = rt.fromFileUrl(new URL("./helpers/shm_pubsub_child.ts", import.meta.url));
stats.setStats(true);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let names = 0;
const segment = () => `/ipckit-pubsub-stats-${rt.pid}-${names++}`; // not /ipckit-stats-: that is a stats segment

const mine = (name: string, ok: (o: stats.ObjectStats) => boolean) => statsObject(rt.pid, name, ok);
const count = (o: stats.ObjectStats, ...keys: string[]) => keys.map((k) => o.counters[k]);

test(
  "stats pubsub: a thread publisher and its subscribers count messages, bytes, sleeps and wake-ups",
  LONG,
  async () => {
    const pub = await shm.publisher({ capacity: 1024 });
    const a = await shm.subscriber(pub.handle);
    const b = await shm.subscriber(pub.handle);
    // Slots are claimed from 0: the first subscriber has slot 0, the second 1.
    const aName = "thread publisher (subscriber 0)", bName = "thread publisher (subscriber 1)";
    try {
      for (let i = 0; i < 3; i++) await pub.publish(new Uint8Array(10));
      const loan = await pub.loan(7);
      loan.commit(5);
      for (let i = 0; i < 4; i++) await a.receive();
      for (let i = 0; i < 4; i++) {
        using _ = await b.receiveLoan();
      }
      const p = await mine("thread publisher", (o) => o.state === "live" && o.counters.messagesOut === 4);
      assert.deepEqual(count(p, "bytesOut", "messagesIn", "capacity", "lost"), [35, 0, 1024, 0]);
      assert.equal(p.kind, "channel");
      for (const name of [aName, bName]) {
        const s = await mine(name, (o) => o.counters.messagesIn === 4);
        assert.deepEqual([s.kind, ...count(s, "bytesIn", "messagesOut", "capacity", "lost")], [
          "channel",
          35,
          0,
          1024,
          0,
        ]);
      }
      // A subscriber with nothing to read sleeps; the publish that follows wakes it.
      const waiting = a.receive({ timeout: 30_000 });
      await sleep(50);
      await pub.publish(new Uint8Array(1));
      await waiting;
      await mine(aName, (o) => o.counters.sleeps! >= 1);
      await mine("thread publisher", (o) => o.state === "live" && o.counters.wakes! >= 1);
      // A publisher with no room (block) sleeps; the receive that makes room wakes it.
      while (pub.tryPublish(new Uint8Array(100)));
      const publishing = pub.publish(new Uint8Array(100), { timeout: 30_000 });
      await sleep(50);
      while (a.tryReceive());
      while (b.tryReceive());
      await publishing;
      await mine("thread publisher", (o) => o.state === "live" && o.counters.sleeps! >= 1);
      const woke = await Promise.all([aName, bName].map((n) => mine(n, () => true)));
      assert.ok(woke.some((o) => o.counters.wakes! >= 1), JSON.stringify(woke));
    } finally {
      await Promise.all([a.close(), b.close()]);
      await pub.close();
    }
    await mine(aName, (o) => o.state === "closed" && o.counters.messagesIn! >= 5);
    await mine("thread publisher", (o) => o.state === "closed" && o.counters.messagesOut! >= 6);
  },
);

test(
  "stats pubsub: a lagging subscriber counts the messages it missed as lost, in Prometheus too",
  LONG,
  async () => {
    const name = segment();
    const pub = await shm.publisher(name, { capacity: 256, policy: "overwrite" });
    const sub = await shm.subscriber(name);
    const subName = `${name} (subscriber 0)`;
    try {
      // 24-byte records: 10 fit in 256 bytes, so 20 published leave the subscriber 10 behind.
      for (let i = 0; i < 20; i++) await pub.publish(new Uint8Array([i]));
      const lagged = await sub.receive().catch((e) => e);
      assert.ok(lagged instanceof shm.LaggedError, String(lagged));
      const missed = lagged.missed;
      assert.ok(missed >= 10, `missed ${missed}`);
      assert.equal((await sub.receive())[0], missed);
      // A message overwritten while lent is lost too, not received.
      const loan = await sub.receiveLoan();
      for (let i = 20; i < 40; i++) await pub.publish(new Uint8Array([i]));
      const again = (() => {
        try {
          loan.release();
        } catch (e) {
          return e;
        }
      })();
      assert.ok(again instanceof shm.LaggedError, String(again));
      const lost = missed + again.missed;
      const s = await mine(subName, (o) => o.counters.lost === lost);
      assert.deepEqual(count(s, "messagesIn", "bytesIn", "capacity"), [1, 1, 256]);
      const p = await mine(`${name} (publisher)`, (o) => o.counters.messagesOut === 40);
      assert.deepEqual(count(p, "bytesOut", "sleeps", "lost"), [40, 0, 0]);
      const families = parsePrometheus(stats.prometheusText(await stats.listStats()));
      const family = families.get("ipckit_channel_lost_total")!;
      assert.equal(family.type, "counter");
      const sample = family.samples.find((x) => x.labels.pid === String(rt.pid) && x.labels.name === subName);
      assert.equal(sample?.value, lost);
    } finally {
      await sub.close();
      await pub.close();
    }
    await mine(subName, (o) => o.state === "closed");
    await mine(`${name} (publisher)`, (o) => o.state === "closed");
  },
);

for (const other of RUNTIMES) {
  test(`stats pubsub: a ${other} subscriber's counters are in its own process's segment`, LONG, async () => {
    const name = segment();
    const pub = await shm.publisher(name, { capacity: 4096 });
    const child = spawnWithLines(rt, [...runtimeArgv(other, CHILD), "stats", name, "5"], {});
    try {
      const ready = await child.line();
      const m = /^ready (\/ipckit-stats-\S+)$/.exec(ready);
      assert.ok(m, ready);
      for (let i = 0; i < 5; i++) await pub.publish(new Uint8Array(10), { timeout: 30_000 });
      assert.equal(await child.line(), "received");
      const theirs = await stats.readStats(m[1]!);
      assert.equal(theirs.runtime, other);
      const o = theirs.objects.find((x) => x.name === `${name} (subscriber 0)`);
      assert.ok(o, JSON.stringify(theirs.objects));
      assert.deepEqual([o.kind, o.state, ...count(o, "messagesIn", "bytesIn", "capacity", "lost")], [
        "channel",
        "live",
        5,
        50,
        4096,
        0,
      ]);
      const p = await mine(`${name} (publisher)`, (x) => x.counters.messagesOut === 5);
      assert.equal(p.counters.bytesOut, 50);
      child.child.kill("SIGTERM");
      assert.equal((await child.child.exited).code, 0);
      await assert.rejects(stats.readStats(m[1]!), NotFoundError, "its exit removed its stats segment");
    } finally {
      child.child.kill("SIGKILL");
      await child.child.exited;
      await pub.close();
    }
  });
}
