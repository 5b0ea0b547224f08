/**
 * Publish-subscribe over shared memory (`shm/pubsub.ts`): a model test of joins, leaves, publishes, reads, loans,
 * lagging and overwrite against a simple in-memory model; the API's edges; subscribers and publishers in child
 * processes of every runtime; faults (a subscriber SIGKILLed while the publisher waits for it, a publisher SIGKILLed
 * mid-message, dead and reused pids in the slot table); and hand-made corrupt segments.
 *
 * It also joins the Channel conformance suite (`shm_pubsub`): a duplex test adapter of two segments, one per
 * direction (tests/conformance/fixtures_shm_pubsub.ts), in process and against a child of every runtime.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ClosedError,
  IpcError,
  liveness,
  MessageTooLargeError,
  NotFoundError,
  ProtocolError,
  resources,
  runtime,
  runtimeArgv,
  type RuntimeName,
  SharedMemory,
  shm,
  TimeoutError,
} from "../mod.ts";
import { recordSize } from "../shm/pubsub_layout.ts";
import { conformance } from "./conformance/registry.ts";
import { spawnWithLines } from "./helpers/child_lines.ts";
import { spawnUnreaped, untilZombie } from "./helpers/pids.ts";
import { indexOf, message } from "./helpers/shm_pubsub_data.ts";

const SEED = Date.now() ^ 0x9b5;
const RUNTIMES: RuntimeName[] = ["deno", "bun", "node"];
const CHILD = new URL("./helpers/shm_pubsub_child.ts", import.meta.url);
// Every await before the first test is registered: a test() call made while a test runs would become its subtest.
const rt = await runtime();
await conformance("shm_pubsub");
const names = new Set<string>();
let counter = 0;

function uniqueName(): string {
  const name = `/ipckit-ps-${rt.pid}-${counter++}-${Math.random().toString(36).slice(2, 8)}`;
  names.add(name);
  return name;
}

const fill = (seq: number, size: number) => new Uint8Array(size).map((_, j) => (seq * 13 + j * 7) & 255);

/** What a publish-subscribe ring must do, in a few lines: records by sequence number, byte accounting as the ring's. */
class Model {
  sizes: number[] = [];
  tail = 0;
  used = 0;
  subs = new Map<number, number>();
  constructor(readonly capacity: number, readonly policy: shm.Policy, readonly history: number) {}
  get head(): number {
    return this.sizes.length;
  }
  /** Frees room for `bytes`; false when a subscriber at the tail stops it (block). */
  room(bytes: number): boolean {
    while (this.used + bytes > this.capacity) {
      if (this.policy === "block" && [...this.subs.values()].includes(this.tail)) return false;
      this.used -= recordSize(this.sizes[this.tail]!);
      this.tail++;
    }
    return true;
  }
  add(size: number): void {
    this.sizes.push(size);
    this.used += recordSize(size);
  }
  join(id: number, h: number): void {
    this.subs.set(id, Math.max(this.tail, this.head - Math.min(h, this.history)));
  }
  /** The lag a read at `id` meets now (0: none); the subscriber moves to the tail. */
  lag(id: number): number {
    const pos = this.subs.get(id)!;
    if (pos >= this.tail) return 0;
    this.subs.set(id, this.tail);
    return this.tail - pos;
  }
}

type Op =
  | { op: "pub"; size: number }
  | { op: "loanPub"; size: number; keep: number }
  | { op: "join"; history: number }
  | { op: "leave"; k: number }
  | { op: "read"; k: number }
  | { op: "hold"; k: number; pubs: number[] };

const ops = (max: number): fc.Arbitrary<Op[]> => {
  const size = fc.oneof(fc.integer({ min: 0, max }), fc.constantFrom(0, 1, 8, 9, max));
  const k = fc.nat(7);
  return fc.array(
    fc.oneof(
      { weight: 4, arbitrary: fc.record({ op: fc.constant("pub" as const), size }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant("loanPub" as const), size, keep: fc.nat(max) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant("join" as const), history: fc.nat(6) }) },
      { weight: 1, arbitrary: fc.record({ op: fc.constant("leave" as const), k }) },
      { weight: 4, arbitrary: fc.record({ op: fc.constant("read" as const), k }) },
      {
        weight: 1,
        arbitrary: fc.record({ op: fc.constant("hold" as const), k, pubs: fc.array(size, { maxLength: 4 }) }),
      },
    ),
    { maxLength: 120, size: "max" },
  );
};

for (const policy of ["block", "overwrite"] as const) {
  test(`property (${policy}): every subscriber gets every message after it joined, history, lag counts and loans as a model says`, async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(64, 128, 256, 512).chain((c) => fc.tuple(fc.constant(c), fc.nat(4), ops(c - 16))),
        async ([capacity, history, script]) => {
          const pub = await shm.publisher({ capacity, history, policy, maxSubscribers: 3 });
          const model = new Model(capacity, policy, history);
          const subs = new Map<number, shm.Subscriber>();
          let nextId = 0;
          const publishOne = (size: number) => {
            const seq = model.head;
            const fits = model.room(recordSize(size));
            assert.equal(pub.tryPublish(fill(seq, size)), fits, `publish of ${size} bytes`);
            if (fits) model.add(size);
          };
          const expectRead = (id: number, got: () => Uint8Array | undefined) => {
            const missed = policy === "overwrite" ? model.lag(id) : 0;
            if (missed > 0) {
              assert.throws(got, (e) => e instanceof shm.LaggedError && e.missed === missed, `lag of ${missed}`);
              return expectRead(id, got);
            }
            const pos = model.subs.get(id)!;
            const m = got();
            if (pos === model.head) return assert.equal(m, undefined);
            assert.deepEqual(m, fill(pos, model.sizes[pos]!), `message ${pos}`);
            model.subs.set(id, pos + 1);
          };
          try {
            for (const step of script) {
              const ids = [...subs.keys()];
              const pick = (k: number) => ids[k % ids.length]!;
              if (step.op === "pub") publishOne(step.size);
              else if (step.op === "loanPub") {
                const seq = model.head;
                const loan = pub.tryLoan(step.size);
                assert.equal(loan !== undefined, model.room(recordSize(step.size)));
                if (loan === undefined) continue;
                const keep = Math.min(step.keep, step.size);
                loan.bytes.fill(0xee);
                loan.bytes.set(fill(seq, keep));
                loan.commit(keep);
                model.add(keep);
              } else if (step.op === "join") {
                if (subs.size === 3) {
                  await assert.rejects(shm.subscriber(pub.handle), IpcError);
                  continue;
                }
                const id = nextId++;
                subs.set(id, await shm.subscriber(pub.handle, { history: step.history, spin: 0 }));
                model.join(id, step.history);
              } else if (ids.length === 0) continue;
              else if (step.op === "leave") {
                const id = pick(step.k);
                await subs.get(id)!.close();
                subs.delete(id);
                model.subs.delete(id);
              } else if (step.op === "read") {
                const id = pick(step.k);
                expectRead(id, () => subs.get(id)!.tryReceive());
              } else {
                const id = pick(step.k);
                const sub = subs.get(id)!;
                const missed = policy === "overwrite" ? model.lag(id) : 0;
                if (missed > 0) {
                  assert.throws(() => sub.tryReceiveLoan(), shm.LaggedError);
                  continue;
                }
                const pos = model.subs.get(id)!;
                const loan = sub.tryReceiveLoan();
                if (pos === model.head) {
                  assert.equal(loan, undefined);
                  continue;
                }
                assert.deepEqual(loan!.bytes, fill(pos, model.sizes[pos]!));
                assert.throws(() => sub.tryReceive(), IpcError, "a receive while a loan is out");
                for (const size of step.pubs) publishOne(size);
                if (model.tail > pos) {
                  assert.throws(
                    () => loan!.release(),
                    (e) => e instanceof shm.LaggedError && e.missed === model.tail - pos,
                  );
                  model.subs.set(id, model.tail);
                } else {
                  loan!.release();
                  model.subs.set(id, pos + 1);
                }
              }
            }
            // Everyone drains what is still theirs; then the end.
            await pub.close();
            for (const [id, sub] of subs) {
              for (;;) {
                if (policy === "overwrite" && model.lag(id) > 0) {
                  assert.throws(() => sub.tryReceive(), shm.LaggedError);
                  continue;
                }
                const pos = model.subs.get(id)!;
                if (pos === model.head) break;
                assert.deepEqual(sub.tryReceive(), fill(pos, model.sizes[pos]!));
                model.subs.set(id, pos + 1);
              }
              assert.throws(() => sub.tryReceive(), ClosedError);
            }
          } finally {
            await pub.close();
            for (const sub of subs.values()) await sub.close();
          }
        },
      ),
      { numRuns: 120, seed: SEED, verbose: true },
    );
  });
}

test("publisher() and subscriber() check their arguments: RangeError, TypeError, MessageTooLargeError, ClosedError", async () => {
  for (
    const bad of [{ capacity: 0 }, { history: -1 }, { history: 1.5 }, { maxSubscribers: 0 }, { maxSubscribers: 2000 }]
  ) {
    await assert.rejects(shm.publisher(bad), RangeError, JSON.stringify(bad));
  }
  await assert.rejects(shm.publisher({ policy: "drop" as never }), RangeError);
  await assert.rejects(shm.publisher("no-slash"), TypeError);
  await assert.rejects(shm.subscriber({ buffer: new ArrayBuffer(8) } as never), TypeError);
  await assert.rejects(shm.subscriber(uniqueName()), NotFoundError);
  const pub = await shm.publisher({ capacity: 64 });
  const sub = await shm.subscriber(pub.handle);
  assert.equal(pub.maxMessage, 48);
  assert.throws(() => pub.tryPublish(new Uint8Array(49)), MessageTooLargeError);
  await assert.rejects(pub.publish("text" as never), TypeError);
  assert.throws(() => pub.tryLoan(-1), RangeError);
  await assert.rejects(sub.receive({ timeout: -1 }), RangeError);
  await assert.rejects(sub.receive({ timeout: 20 }), TimeoutError);
  const aborted = AbortSignal.abort(new Error("stop"));
  await assert.rejects(sub.receive({ signal: aborted }), /stop/);
  await pub.close();
  await pub.close(); // idempotent
  assert.throws(() => pub.tryPublish(new Uint8Array(1)), ClosedError);
  await assert.rejects(sub.receive(), ClosedError);
  await sub.close();
  await sub.close();
  assert.throws(() => sub.tryReceive(), ClosedError);
});

test("block: publish() waits for the slowest subscriber, rejects with TimeoutError after its timeout, and goes on once it reads or leaves", async () => {
  await using pub = await shm.publisher({ capacity: 256 });
  const fast = await shm.subscriber(pub.handle, { spin: 0 });
  const slow = await shm.subscriber(pub.handle, { spin: 0 });
  assert.equal(pub.subscriberCount, 2);
  let n = 0;
  while (pub.tryPublish(new Uint8Array(24).fill(n))) n++;
  assert.equal(n, 6, "six records of 40 bytes fill 256");
  for (let i = 0; i < n; i++) assert.equal((await fast.receive())[0], i);
  await assert.rejects(pub.publish(new Uint8Array(24), { timeout: 50 }), TimeoutError);
  const waiting = pub.publish(new Uint8Array(24).fill(n));
  assert.equal((await slow.receive())[0], 0);
  await waiting;
  assert.equal((await fast.receive())[0], n);
  const more = pub.publish(new Uint8Array(200));
  await slow.close(); // leaving makes room
  await more;
  assert.equal(pub.subscriberCount, 1);
  await fast.close();
});

test("an already aborted signal: publish() and loan() publish nothing, receive() and receiveLoan() take nothing", async () => {
  const pub = await shm.publisher({ capacity: 4096 });
  const sub = await shm.subscriber(pub.handle!);
  try {
    const signal = AbortSignal.abort(new Error("stop"));
    await assert.rejects(pub.publish(new Uint8Array([1]), { signal }), /stop/);
    await assert.rejects(pub.loan(8, { signal }), /stop/);
    assert.equal(sub.tryReceive(), undefined, "nothing was published");
    await pub.publish(new Uint8Array([2]));
    await assert.rejects(sub.receive({ signal }), /stop/);
    await assert.rejects(sub.receiveLoan({ signal }), /stop/);
    assert.deepEqual([...(await sub.receive())], [2], "nothing was taken");
  } finally {
    await sub.close();
    await pub.close();
  }
});

test("close() while a receive() or a publish() waits in this process rejects it with ClosedError", async () => {
  const pub = await shm.publisher({ capacity: 128 });
  const sub = await shm.subscriber(pub.handle, { spin: 0 });
  const receiving = sub.receive();
  await new Promise((r) => setTimeout(r, 20));
  await sub.close();
  await assert.rejects(receiving, ClosedError);
  const blocker = await shm.subscriber(pub.handle, { spin: 0 });
  while (pub.tryPublish(new Uint8Array(40)));
  const publishing = pub.publish(new Uint8Array(40));
  await new Promise((r) => setTimeout(r, 20));
  await pub.close();
  await assert.rejects(publishing, ClosedError);
  await blocker.close();
});

test("a received loan is the message in place; release() throws LaggedError when the publisher overwrote it meanwhile", async () => {
  await using pub = await shm.publisher({ capacity: 128, policy: "overwrite" });
  await using sub = await shm.subscriber(pub.handle);
  pub.tryPublish(new Uint8Array([1, 2, 3]));
  const loan = await sub.receiveLoan();
  assert.deepEqual(loan.bytes, new Uint8Array([1, 2, 3]));
  for (let i = 0; i < 10; i++) pub.tryPublish(new Uint8Array(20).fill(i));
  assert.throws(() => loan.release(), (e) => e instanceof shm.LaggedError && e.missed > 0);
  loan.release(); // idempotent
  assert.ok((await sub.receive()).length === 20, "goes on from the oldest message still there");
});

test("a Worker thread subscribes with the in-process publisher's handle", async () => {
  await using pub = await shm.publisher({ capacity: 1024 });
  const worker = rt.worker(new URL("./helpers/shm_pubsub_worker.ts", import.meta.url));
  try {
    let ready!: () => void;
    let done!: (got: number[]) => void;
    const isReady = new Promise<void>((r) => (ready = r));
    const finished = new Promise<number[]>((r) => (done = r));
    worker.onMessage((m) => (m === "ready" ? ready() : done(m as number[])));
    worker.postMessage(pub.handle);
    await isReady;
    for (let i = 0; i < 200; i++) await pub.publish(new Uint8Array(30).fill(i & 255));
    await pub.close();
    const got = await finished;
    assert.deepEqual(got, Array.from({ length: 200 }, (_, i) => i & 255));
  } finally {
    await worker.terminate();
  }
});

/** Starts a child in role `args[0]` and waits for its "ready". */
async function start(peer: RuntimeName, args: string[], env: Record<string, string> = {}) {
  const lc = spawnWithLines(rt, [...runtimeArgv(peer, rt.fromFileUrl(CHILD)), ...args], env);
  const first = await lc.line();
  assert.equal(first, "ready", `the ${peer} child says: ${first}`);
  return lc;
}

test(
  "subscribers of every runtime get every message after they joined (and the history they asked for), one leaving midway, through wrap-around",
  {
    timeout: 180_000,
  },
  async () => {
    const name = uniqueName();
    const max = 300;
    const total = 3000;
    const pub = await shm.publisher(name, { capacity: 4096, history: 3 });
    const children: Awaited<ReturnType<typeof start>>[] = [];
    try {
      for (let i = 0; i < 5; i++) await pub.publish(message(i, max));
      for (const peer of RUNTIMES) children.push(await start(peer, ["sub", name, "3", "-1", `${max}`]));
      children.push(await start("node", ["sub", name, "0", "500", `${max}`]));
      for (let i = 5; i < total; i++) await pub.publish(message(i, max), { timeout: 60_000 });
      await pub.close();
      const results = await Promise.all(children.map((c) => c.line()));
      for (const [k, line] of results.entries()) {
        const r = JSON.parse(line);
        if (k < 3) assert.deepEqual(r, { first: 2, count: total - 2, end: "closed" }, `${RUNTIMES[k]}: ${line}`);
        else assert.deepEqual(r, { first: 5, count: 500, end: "left" }, line);
      }
      for (const c of children) assert.equal((await c.child.exited).code, 0);
    } finally {
      await pub.close();
      for (const c of children) c.child.kill("SIGKILL");
    }
  },
);

for (const [i, peer] of RUNTIMES.entries()) {
  const other = RUNTIMES[(i + 1) % 3]!;
  test(
    `a ${peer} publisher reaches this process and a ${other} subscriber (overwrite policy, no loss when they keep up)`,
    {
      timeout: 120_000,
    },
    async () => {
      const name = uniqueName();
      const max = 200;
      const count = 1000;
      const pubChild = await start(peer, ["pub", name, "block", `${count}`, "2", `${max}`]);
      let subChild: Awaited<ReturnType<typeof start>> | undefined;
      try {
        const sub = await shm.subscriber(name, { wait: 30_000 });
        subChild = await start(other, ["sub", name, "0", "-1", `${max}`]);
        const got: number[] = [];
        for await (const m of sub) got.push(indexOf(m, max));
        await sub.close();
        assert.deepEqual(got, Array.from({ length: count }, (_, k) => k));
        assert.deepEqual(JSON.parse(await subChild.line()), { first: 0, count, end: "closed" });
        assert.equal(await pubChild.line(), "done");
        assert.equal((await pubChild.child.exited).code, 0);
      } finally {
        pubChild.child.kill("SIGKILL");
        subChild?.child.kill("SIGKILL");
      }
    },
  );
}

test("overwrite: slow subscribers of every runtime get exact messages or a LaggedError whose count matches the gap", {
  timeout: 180_000,
}, async () => {
  const name = uniqueName();
  const max = 1000;
  const total = 20_000;
  const pub = await shm.publisher(name, { capacity: 8192, policy: "overwrite" });
  const children: Awaited<ReturnType<typeof start>>[] = [];
  try {
    for (const peer of RUNTIMES) children.push(await start(peer, ["lag", name, `${max}`]));
    for (let i = 0; i < total; i++) assert.equal(pub.tryPublish(message(i, max)), true);
    await pub.close();
    for (const [k, c] of children.entries()) {
      const r = JSON.parse(await c.line());
      assert.equal(r.end, "closed", `${RUNTIMES[k]}: ${JSON.stringify(r)}`);
      assert.equal(r.last, total - 1, JSON.stringify(r));
      assert.equal(r.count + r.missed, total, `every message was received or counted as missed: ${JSON.stringify(r)}`);
      assert.equal((await c.child.exited).code, 0);
    }
  } finally {
    await pub.close();
    for (const c of children) c.child.kill("SIGKILL");
  }
});

for (const peer of RUNTIMES) {
  test(`block: a ${peer} subscriber SIGKILLed while lagging is dropped, and the waiting publisher goes on`, {
    timeout: 60_000,
  }, async () => {
    const name = uniqueName();
    await using pub = await shm.publisher(name, { capacity: 1024 });
    const stall = await start(peer, ["stall", name]);
    try {
      assert.equal(pub.subscriberCount, 1);
      while (pub.tryPublish(new Uint8Array(100)));
      const waiting = pub.publish(new Uint8Array(100), { timeout: 30_000 });
      stall.child.kill("SIGKILL");
      await stall.child.exited;
      await waiting;
      assert.equal(pub.subscriberCount, 0);
    } finally {
      stall.child.kill("SIGKILL");
    }
  });

  test(
    `a ${peer} publisher SIGKILLed mid-message: a subscriber gets every complete message, then ClosedError; ipckit clean removes the segment`,
    {
      timeout: 60_000,
    },
    async () => {
      const name = uniqueName();
      const registry = await rt.makeTempDir("ipckit-ps-registry-");
      const pubChild = await start(peer, ["die", name, "20", "500"], { IPCKIT_REGISTRY: registry });
      try {
        const sub = await shm.subscriber(name, { history: 100 });
        pubChild.child.kill("SIGKILL");
        await pubChild.child.exited;
        const got: number[] = [];
        const end = await (async () => {
          for (;;) got.push(indexOf(await sub.receive({ timeout: 30_000 }), 500));
        })().catch((e) => e);
        await sub.close();
        assert.deepEqual(got, Array.from({ length: 20 }, (_, k) => k));
        assert.ok(end instanceof ClosedError, String(end));
        assert.match(end.message, /publisher \(pid \d+\) died/);
        const report = await resources.clean({ dir: registry });
        assert.deepEqual(report.removed.map((r) => r.name), [name]);
        await assert.rejects(SharedMemory.open(name), NotFoundError);
      } finally {
        pubChild.child.kill("SIGKILL");
        await rt.removeDir(registry).catch(() => {});
      }
    },
  );
}

/** Slot `i`'s Int32 fields in a publisher's buffer: state, id, tag, read position, sequence, sleeping, generation. */
const slot = (pub: shm.Publisher, i: number) => new Int32Array(pub.handle.buffer, 256 + 64 * i, 16);

test("a slot of a reused pid or of a zombie does not hold the publisher back", { timeout: 60_000 }, async () => {
  const me = await liveness.identify();
  const zombie = await spawnUnreaped(["sleep", "600"]);
  try {
    const z = await liveness.identify(zombie.pid);
    zombie.kill();
    await untilZombie(zombie.pid);
    for (const owner of [{ id: me.id, tag: me.tag + 1 }, z]) {
      await using pub = await shm.publisher({ capacity: 256 });
      const s = slot(pub, 0);
      s[1] = owner.id;
      s[2] = owner.tag;
      s[3] = 0; // at the tail: it stops the publisher until found dead
      Atomics.store(s, 0, 2);
      Atomics.store(new Int32Array(pub.handle.buffer), 10, 1); // slot limit
      while (pub.tryPublish(new Uint8Array(50)));
      await pub.publish(new Uint8Array(50), { timeout: 20_000 });
      assert.equal(pub.subscriberCount, 0);
    }
  } finally {
    await zombie.cleanup();
  }
});

test(
  "corrupt segments are a clear error, never a read outside the mapping or a hang",
  { timeout: 60_000 },
  async () => {
    const header = (pub: shm.Publisher) => new Int32Array(pub.handle.buffer, 0, 64);
    // Another layout version, no magic, a bad capacity: refused when subscribing.
    for (
      const [index, value, pattern] of [[1, 2, /version 2, expected 1/], [0, 0, /holds no pub-sub/], [
        2,
        100,
        /capacity/,
      ]] as const
    ) {
      await using pub = await shm.publisher({ capacity: 256 });
      header(pub)[index] = value;
      await assert.rejects(shm.subscriber(pub.handle), (e) => e instanceof ProtocolError && pattern.test(e.message));
    }
    // A record's length or sequence number: the subscriber reading it says so.
    for (const [word, value] of [[0, 1 << 20], [0, -5], [2, 77]] as const) {
      await using pub = await shm.publisher({ capacity: 256 });
      await using sub = await shm.subscriber(pub.handle);
      pub.tryPublish(new Uint8Array(10));
      const dataAt = pub.handle.buffer.byteLength - 256;
      new Int32Array(pub.handle.buffer, dataAt, 4)[word] = value;
      await assert.rejects(sub.receive({ timeout: 1000 }), ProtocolError);
    }
    // The publisher's own records, read back when it reclaims them.
    {
      await using pub = await shm.publisher({ capacity: 256 });
      pub.tryPublish(new Uint8Array(100));
      new Int32Array(pub.handle.buffer, pub.handle.buffer.byteLength - 256, 4)[0] = 9999;
      assert.throws(() => {
        for (let i = 0; i < 10; i++) pub.tryPublish(new Uint8Array(100));
      }, ProtocolError);
    }
    // Slots full of garbage, a huge slot limit, a corrupt index: publishing and joining go on or fail clearly.
    {
      await using pub = await shm.publisher({ capacity: 256, history: 2, maxSubscribers: 4 });
      for (let i = 0; i < 4; i++) {
        const s = slot(pub, i);
        s.set([2, 0, 0, 0x12345678, 5, 1, 9]);
      }
      new Int32Array(pub.handle.buffer)[10] = 1 << 30;
      for (let i = 0; i < 20; i++) assert.equal(pub.tryPublish(new Uint8Array(30)), true);
      assert.equal(pub.subscriberCount, 0, "slots without a live owner are freed");
      const index = new Int32Array(pub.handle.buffer, 256 + 64 * 4, 4);
      index.fill(0x7fff_fff8);
      const sub = await shm.subscriber(pub.handle, { history: 2 }).catch((e) => e);
      if (sub instanceof shm.Subscriber) await sub.close();
      else assert.ok(sub instanceof ProtocolError, String(sub));
    }
    // A tail moved far ahead under an overwrite subscriber: no message, no hang.
    {
      await using pub = await shm.publisher({ capacity: 256, policy: "overwrite" });
      await using sub = await shm.subscriber(pub.handle);
      header(pub)[32] = 0x4000_0000;
      await assert.rejects(
        sub.receive({ timeout: 300 }),
        (e) => e instanceof TimeoutError || e instanceof ProtocolError,
      );
    }
  },
);

// Last, and it removes what a failed test left: not an `after()` hook, which Deno's node:test skips in a file with a
// skipped test (the conformance cases switched off by capability flags are).
test("nothing is left in /dev/shm", { timeout: 10_000 }, async () => {
  const left: string[] = [];
  for (const name of names) {
    try {
      (await SharedMemory.open(name)).close();
      left.push(name);
      await SharedMemory.unlink(name).catch(() => {});
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }
  assert.deepEqual(left, []);
});
