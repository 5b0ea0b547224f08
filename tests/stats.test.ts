/**
 * The stats segments (`shm/stats.ts`, issue 19): a process's counters are read from outside as they change, by a
 * process of any runtime; a segment never outlives its process after `ipckit clean`; a reader given a segment that
 * is not one, of a newer layout, cut short or random bytes says so clearly and lives.
 *
 * The test runner turns stats off for every test (`IPCKIT_STATS=off`: a child killed by a test would leave its
 * segment); these tests turn them on, for this process and for their children.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  type ChildProcess,
  Pool,
  ProtocolError,
  resources,
  rpc,
  runtime,
  runtimeArgv,
  type RuntimeName,
  SharedMemory,
  shm,
  stats,
} from "../mod.ts";
import { main } from "../cli/commands.ts";
import { parseStats, segmentName, STATS_PREFIX } from "../shm/stats.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { parsePrometheus } from "./helpers/prometheus.ts";
import { type LineChild, spawnWithLines } from "./helpers/child_lines.ts";

const LONG = { timeout: 120_000 };
const rt = await runtime();
const PEER = rt.fromFileUrl(new URL("./helpers/stats_peer.ts", import.meta.url));
const POOL_WORKER = new URL("./helpers/pool_worker.ts", import.meta.url);
stats.setStats(true);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `read` until `ok` holds for what it returns (at most 60 s; no timing is asserted). */
async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string): Promise<T> {
  const end = Date.now() + 60_000;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await sleep(20);
  }
}

/** This process's stats, once its segment shows an object named `name` that `ok` accepts. */
async function mine(name: string, ok: (o: stats.ObjectStats) => boolean = () => true): Promise<stats.ObjectStats> {
  const found = await until(
    async () =>
      (await stats.listStats()).flatMap((p) => ("pid" in p && p.pid === rt.pid ? p.objects : []))
        .find((o) => o.name === name && ok(o)),
    (o) => o !== undefined,
    `object "${name}" in this process's stats`,
  );
  return found!;
}

/** A child of `runtime` running tests/helpers/stats_peer.ts; its stdout's lines as they come. */
function peer(on: RuntimeName, ...args: string[]): LineChild {
  return spawnWithLines(rt, [...runtimeArgv(on, PEER), ...args], { IPCKIT_STATS: "on" });
}

const exited = (c: ChildProcess) => c.exited.then(() => {});

test(
  "stats: a shm channel's counters are read from its segment as they change, and say closed after close()",
  LONG,
  async () => {
    const [a, handle] = shm.pair();
    const b = shm.fromHandle(handle);
    try {
      for (let i = 0; i < 10; i++) await a.send(new Uint8Array(i));
      for (let i = 0; i < 10; i++) await b.receive();
      const out = await mine("thread pair, side 0", (o) => o.counters.messagesOut === 10);
      assert.equal(out.kind, "channel");
      assert.equal(out.state, "live");
      assert.deepEqual(
        [out.counters.messagesOut, out.counters.bytesOut, out.counters.messagesIn, out.counters.capacity],
        [10, 45, 0, 1 << 20],
      );
      const back = await mine("thread pair, side 1", (o) => o.counters.messagesIn === 10);
      assert.equal(back.counters.bytesIn, 45);
      // Batches count each message: 64 more, in one sendMany and one receiveMany.
      await a.sendMany(Array.from({ length: 64 }, () => new Uint8Array(2)));
      assert.equal((await b.receiveMany()).length, 64);
      const after = await mine("thread pair, side 1", (o) => o.counters.messagesIn === 74);
      assert.equal(after.counters.bytesIn, 45 + 128);
    } finally {
      await a.close();
      await b.close();
    }
    await mine("thread pair, side 0", (o) => o.state === "closed" && o.counters.messagesOut === 74);
  },
);

test("stats: a pool's counters (submitted, done, workers) under its name", LONG, async () => {
  const pool = new Pool<{ run(n: number): number }>({ worker: POOL_WORKER, size: 2, name: "stats test pool" });
  try {
    await Promise.all(Array.from({ length: 100 }, (_, i) => pool.run(i)));
    const p = await mine("stats test pool", (o) => o.counters.done === 100 && o.counters.workers === 2);
    assert.equal(p.kind, "pool");
    assert.deepEqual([p.counters.submitted, p.counters.failed, p.counters.queued, p.counters.running], [100, 0, 0, 0]);
  } finally {
    await pool.close();
  }
  await mine("stats test pool", (o) => o.state === "closed");
  assert.throws(() => new Pool({ worker: POOL_WORKER, name: "" }), TypeError);
});

test("stats: an RPC connection's counters: calls made, failed and settled, served, failed and done", LONG, async () => {
  const [a, handle] = shm.pair();
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  const server = rpc.serve(a, {
    add: (x: number, y: number) => x + y,
    fail: () => {
      throw new Error("no");
    },
    wait: () => held,
  }, { name: "stats test server" });
  const client = rpc.connect<{ add(x: number, y: number): number; fail(): void; wait(): void }>(
    shm.fromHandle(handle),
    { name: "stats test client" },
  );
  try {
    for (let i = 0; i < 5; i++) assert.equal(await client.api.add(i, 1), i + 1);
    await assert.rejects(client.api.fail());
    const waiting = client.api.wait();
    const c = await mine("stats test client", (o) => o.counters.calls === 7 && o.counters.callsSettled === 6);
    assert.deepEqual([c.kind, c.counters.callsFailed, c.counters.served], ["rpc", 1, 0]);
    const s = await mine("stats test server", (o) => o.counters.served === 7 && o.counters.servedDone === 6);
    assert.equal(s.counters.servedFailed, 1);
    release();
    await waiting;
    await mine("stats test client", (o) => o.counters.callsSettled === 7);
    await mine("stats test server", (o) => o.counters.servedDone === 7);
  } finally {
    await client.close();
    await server.close();
  }
  await mine("stats test client", (o) => o.state === "closed");
});

for (const other of RUNTIMES) {
  test(
    `stats: a ${other} process's counters are read here, and it reads this process's; SIGKILLed, ipckit clean removes its segment`,
    LONG,
    async () => {
      const counting = peer(other, "count", "25");
      try {
        const ready = await counting.line();
        assert.match(ready, /^ready \/ipckit-stats-\d+-[0-9a-f]+-[0-9a-f]+$/);
        const segment = ready.slice("ready ".length);
        const theirs = await stats.readStats(segment);
        assert.equal(theirs.pid, counting.child.pid);
        assert.equal(theirs.runtime, other);
        const out = theirs.objects.find((o) => o.name === "thread pair, side 0")!;
        assert.deepEqual([out.counters.messagesOut, out.counters.bytesOut], [25, 250]);
        // The other way: that runtime reads this process's segment.
        const [a, handle] = shm.pair();
        const b = shm.fromHandle(handle);
        await a.send(new Uint8Array(7));
        await b.receive();
        await mine("thread pair, side 0", (o) => o.counters.bytesOut === 7 && o.state === "live");
        const reader = peer(other, "read", segmentName()!);
        const seen = JSON.parse(await reader.line()) as stats.ProcessStats;
        await exited(reader.child);
        await a.close();
        await b.close();
        assert.equal(seen.pid, rt.pid);
        assert.equal(seen.runtime, rt.name);
        assert.ok(seen.objects.some((o) => o.name === "thread pair, side 0" && o.counters.bytesOut === 7));
        // Killed, it cannot remove its segment; `ipckit clean` does, once it is dead.
        counting.child.kill("SIGKILL");
        await exited(counting.child);
        // (A process of a parallel test file that makes its own segment meanwhile may have swept it first: either
        // way it is gone, and so is its record.)
        const report = await resources.clean();
        assert.equal(await rt.exists(`/dev/shm${segment}`), false, JSON.stringify(report));
        assert.ok(!(await resources.list({ all: true })).some((r) => r.name === segment), "its record is gone too");
      } finally {
        counting.child.kill("SIGKILL");
        await exited(counting.child);
        await resources.clean();
      }
    },
  );
}

test(
  "stats: a process that ends (its event loop runs dry) removes its segment and its record, on every runtime",
  LONG,
  async () => {
    for (const other of RUNTIMES) {
      const ending = peer(other, "exit");
      const made = await ending.line();
      assert.match(made, /^made \/ipckit-stats-/, other);
      assert.deepEqual(await ending.child.exited, { code: 0, signal: null }, other);
      const segment = made.slice("made ".length);
      assert.equal(await rt.exists(`/dev/shm${segment}`), false, `${other}: the segment is gone`);
      assert.ok(!(await resources.list({ all: true })).some((r) => r.name === segment), `${other}: no record left`);
    }
  },
);

/** A hand-made stats segment (this process's own name space: the pid of no process, tag 0), removed after. */
async function withSegment(bytes: Uint8Array, fn: (name: string) => Promise<void>): Promise<void> {
  const name = `${STATS_PREFIX}${rt.pid}-0-${Math.floor(Math.random() * 1e9).toString(16)}`;
  const segment = await SharedMemory.create(name, { size: Math.max(1, bytes.byteLength) });
  try {
    new Uint8Array(segment.buffer).set(bytes);
    await fn(name);
  } finally {
    segment.close();
    await SharedMemory.unlink(name).catch(() => {});
  }
}

/** A valid version-1 header of `used` slots (and room for them), as bytes. */
function header(used: number, over: Partial<Record<"magic" | "version" | "slot", number>> = {}): Uint8Array {
  const bytes = new Uint8Array(64 + used * 256);
  const v = new DataView(bytes.buffer);
  v.setUint32(0, over.magic ?? 0x54534b49, true);
  v.setUint32(4, over.version ?? 1, true);
  v.setUint32(8, 64, true);
  v.setUint32(12, over.slot ?? 256, true);
  v.setUint32(16, 255, true);
  v.setUint32(20, 4242, true);
  v.setUint32(48, used, true);
  return bytes;
}

test(
  "stats: a segment that is no stats segment, of a newer layout or cut short gets a clear error; listStats goes on",
  LONG,
  async () => {
    const cases: Array<[string, Uint8Array, RegExp]> = [
      [
        "not one",
        new TextEncoder().encode("hello, I am a segment of someone else's".padEnd(64)),
        /no ipckit stats segment/,
      ],
      [
        "newer",
        header(0, { version: 2 }),
        /layout is version 2 \(a newer ipckit wrote it\); this ipckit reads version 1/,
      ],
      ["cut short", header(3).subarray(0, 64 + 256), /cut short \(320 bytes for 3 slots\)/],
      ["odd sizes", header(1, { slot: 512 }), /sizes .* are not version 1's/],
      ["tiny", new Uint8Array([1, 2, 3]), /no header/],
    ];
    for (const [what, bytes, message] of cases) {
      await withSegment(bytes, async (name) => {
        await assert.rejects(stats.readStats(name), (e: unknown) => {
          assert.ok(e instanceof ProtocolError, `${what}: ${e}`);
          assert.match((e as Error).message, message, what);
          return true;
        });
        const listed = (await stats.listStats()).find((p) => p.segment === name);
        assert.ok(
          listed !== undefined && "error" in listed && message.test(listed.error),
          `${what} listed as unreadable`,
        );
      });
    }
    // A slot of an unknown kind, or in no state, is left out; the others are read.
    const bytes = header(3);
    const v = new DataView(bytes.buffer);
    v.setUint32(64, 1, true); // live
    v.setUint32(64 + 4, 9, true); // an unknown kind
    v.setUint32(64 + 256, 7, true); // state 7
    v.setUint32(64 + 256 + 4, 1, true);
    v.setUint32(64 + 512, 1, true); // live channel "ok"
    v.setUint32(64 + 512 + 4, 1, true);
    v.setUint32(64 + 512 + 12, 200, true); // a name length past the field: cut to 52 bytes
    bytes.set(new TextEncoder().encode("ok"), 64 + 512 + 16);
    v.setFloat64(64 + 512 + 72, 5, true);
    await withSegment(bytes, async (name) => {
      const read = await stats.readStats(name);
      assert.equal(read.objects.length, 1);
      assert.equal(read.objects[0]!.name.slice(0, 2), "ok");
      assert.equal(read.objects[0]!.counters.messagesOut, 5);
    });
  },
);

test("stats: parseStats of random bytes returns or throws ProtocolError, nothing else (property)", LONG, () => {
  const seed = Date.now() | 0;
  try {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), fc.nat(8), fc.boolean(), (random, used, valid) => {
        const bytes = valid ? header(used) : random;
        if (valid) bytes.set(random.subarray(0, bytes.length - 64), 64);
        try {
          parseStats("/ipckit-stats-random", bytes);
        } catch (e) {
          if (!(e instanceof ProtocolError)) throw e;
        }
      }),
      { numRuns: 300, seed },
    );
  } catch (e) {
    throw new Error(`seed ${seed}: ${(e as Error).message}`, { cause: e });
  }
});

test("ipckit stats (--json too) shows this process's objects; a bad --interval is a usage error", LONG, async () => {
  const [a, handle] = shm.pair();
  const b = shm.fromHandle(handle);
  const logged: string[] = [];
  const log = console.log;
  try {
    await a.send(new Uint8Array(1));
    await b.receive();
    await mine("thread pair, side 0", (o) => o.counters.messagesOut === 1);
    console.log = (...xs: unknown[]) => void logged.push(xs.join(" "));
    assert.equal(await main(["stats", "--json"]), 0);
    assert.equal(await main(["stats"]), 0);
    console.log = log;
    const all = JSON.parse(logged[0]!) as stats.ProcessStats[];
    const me = all.find((p) => p.pid === rt.pid)!;
    assert.ok(me.objects.some((o) => o.name === "thread pair, side 0" && o.counters.messagesOut === 1));
    assert.match(logged[1]!, new RegExp(`pid ${rt.pid} \\(${rt.name}\\)`));
    assert.match(logged[1]!, /channel +thread pair, side 0 +live +messagesOut=1 bytesOut=1/);
    const err: string[] = [];
    const code = await main(["stats", "--interval", "5"], { out: () => {}, err: (t) => void err.push(t) });
    assert.equal(code, 2);
    assert.match(err.join(""), /--interval must be an integer of at least 100/);
  } finally {
    console.log = log;
    await a.close();
    await b.close();
  }
});

test("stats: Prometheus text parses line by line, counts what passed, and escapes any name", LONG, async () => {
  const odd = 'we"ird\\name\nx';
  const [a, handle] = shm.pair();
  const b = shm.fromHandle(handle);
  const pool = new Pool<{ run(n: number): number }>({ worker: POOL_WORKER, size: 1, name: odd });
  try {
    for (let i = 0; i < 3; i++) await a.send(new Uint8Array(4));
    for (let i = 0; i < 3; i++) await b.receive();
    await pool.run(2);
    await mine(odd, (o) => o.counters.done === 1);
    await mine("thread pair, side 0", (o) => o.counters.messagesOut === 3);
    const text = stats.prometheusText(await stats.listStats());
    const families = parsePrometheus(text);
    const mineOnly = (name: string) =>
      families.get(name)!.samples.filter((s) => s.labels.pid === String(rt.pid) && s.labels.state === "live");
    const out = mineOnly("ipckit_channel_messages_total").find((s) =>
      s.labels.name === "thread pair, side 0" && s.labels.direction === "out"
    );
    assert.equal(out?.value, 3);
    assert.equal(families.get("ipckit_channel_messages_total")!.type, "counter");
    assert.equal(families.get("ipckit_pool_workers")!.type, "gauge");
    const done = mineOnly("ipckit_pool_tasks_total").find((s) => s.labels.name === odd && s.labels.outcome === "done");
    assert.equal(done?.value, 1, "the odd name comes back whole");
    assert.equal(families.get("ipckit_stats_unreadable_segments")!.samples.length, 1);
    // The CLI prints the same text.
    const logged: string[] = [];
    const log = console.log;
    console.log = (...xs: unknown[]) => void logged.push(xs.join(" "));
    try {
      assert.equal(await main(["stats", "--prometheus"]), 0);
    } finally {
      console.log = log;
    }
    assert.ok(parsePrometheus(logged.join("\n")).has("ipckit_channel_bytes_total"));
    assert.equal(await main(["stats", "--json", "--prometheus"], { out: () => {}, err: () => {} }), 2);
  } finally {
    await pool.close();
    await a.close();
    await b.close();
  }
});
