/**
 * The shm channel's fast paths: the commit word in each record (a consumer sees a message in one cache line),
 * batches (`sendMany`/`receiveMany`, one atomic store per batch) and reads into the caller's buffer
 * (`receiveInto`). Driven by a model (fast-check) through wrap-around and a full ring with payloads made to look
 * like the commit words of the next lap, and by children of every runtime sending batches, one of them SIGKILLed
 * mid-batch.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ClosedError,
  IpcError,
  MessageTooLargeError,
  ProtocolError,
  runtime,
  runtimeArgv,
  type RuntimeName,
  shm,
} from "../mod.ts";
import { Ring, ringSize } from "../shm/ring.ts";
import { shmNames } from "./conformance/fixtures.ts";
import { differs } from "./helpers/shm_batch_data.ts";
import { RingModel } from "./helpers/ring_model.ts";

const SEED = Date.now() ^ 0xb47c;
const RUNTIMES: RuntimeName[] = ["deno", "bun", "node"];
const CHILD = new URL("./helpers/shm_batch_child.ts", import.meta.url);

type Op =
  | { op: "send"; size: number }
  | { op: "sendPart"; size: number; extra: number }
  | { op: "sendMany"; sizes: number[]; bad: { at: number; kind: "large" | "type" } | undefined }
  | { op: "receive" }
  | { op: "receiveWith" }
  | { op: "receiveMany"; max: number }
  | { op: "receiveInto"; room: number }
  | { op: "drain"; max: number };

const ops = (max: number): fc.Arbitrary<Op[]> => {
  const size = fc.oneof(fc.integer({ min: 0, max }), fc.constantFrom(0, 1, 7, 8, 9, max));
  return fc.array(
    fc.oneof(
      fc.record({ op: fc.constant("send" as const), size }),
      fc.record({ op: fc.constant("sendPart" as const), size, extra: fc.integer({ min: 0, max: 40 }) }),
      fc.record({
        op: fc.constant("sendMany" as const),
        sizes: fc.array(size, { maxLength: 12 }),
        // One message that cannot go, somewhere in the batch (maybe past the room): then none goes.
        bad: fc.option(fc.record({ at: fc.nat(12), kind: fc.constantFrom("large" as const, "type" as const) }), {
          nil: undefined,
        }),
      }),
      fc.record({ op: fc.constant("receive" as const) }),
      fc.record({ op: fc.constant("receiveWith" as const) }),
      fc.record({ op: fc.constant("receiveMany" as const), max: fc.integer({ min: 1, max: 10 }) }),
      fc.record({ op: fc.constant("receiveInto" as const), room: fc.integer({ min: 0, max }) }),
      fc.record({ op: fc.constant("drain" as const), max: fc.integer({ min: 1, max: 10 }) }),
    ),
    { maxLength: 150 },
  );
};

test("property: sends, batches, drains and reads into buffers keep order and boundaries through wrap-around and a full ring, whatever stale bytes the ring holds", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(64, 128, 256, 1024).chain((capacity) => fc.tuple(fc.constant(capacity), ops(capacity - 8))),
      async ([capacity, script]) => {
        const [a, handle] = shm.pair({ capacity, spin: 0 });
        const b = shm.fromHandle(handle);
        // The model: what is in the ring, and where the producer writes next.
        const model = new RingModel(capacity);
        const { queue } = model;
        // A payload whose every word where a later lap may put a commit word holds that commit word: only the
        // producer zeroing the next commit word keeps the consumer from taking these bytes for a record.
        const poisoned = (size: number, at: number): Uint8Array => {
          const m = new Uint8Array(size).map((_, j) => (j * 13 + at) & 255);
          const view = new DataView(m.buffer);
          for (let j = 0; j + 4 <= size; j++) {
            const position = at + 8 + j;
            if (position % 8 === 4) view.setInt32(j, (position - 4 + capacity + 1) | 0, true);
          }
          return m;
        };
        const fits = (size: number) => model.fits(size);
        const put = (m: Uint8Array) => model.put(m);
        const took = (m: Uint8Array | undefined) => model.took(m);
        try {
          for (const step of script) {
            if (step.op === "send") {
              const m = poisoned(step.size, model.w);
              const ok = fits(step.size);
              assert.equal(a.trySend(m), ok);
              if (ok) put(m);
            } else if (step.op === "sendPart") {
              // The first `size` bytes of a larger buffer (what RPC's encoder hands over): the rest never goes.
              const m = poisoned(step.size, model.w);
              const larger = new Uint8Array(step.size + step.extra).fill(0xee);
              larger.set(m);
              const ok = fits(step.size);
              assert.equal(a.trySendPart(larger, step.size), ok);
              if (ok) put(m);
            } else if (step.op === "sendMany") {
              const batch: Uint8Array[] = [];
              let at = model.w;
              for (const size of step.sizes) {
                batch.push(poisoned(size, at));
                at += Ring.recordSize(size);
              }
              if (step.bad !== undefined) {
                const wrong = step.bad.kind === "large" ? new Uint8Array(a.maxMessage + 1) : [1, 2, 3];
                batch.splice(Math.min(step.bad.at, batch.length), 0, wrong as Uint8Array);
                assert.throws(() => a.trySendMany(batch), step.bad.kind === "large" ? /exceeds maxMessage/ : TypeError);
                continue; // nothing went: the model stays as it was
              }
              let expected = 0;
              let room = capacity - model.used;
              for (const m of batch) {
                if (Ring.recordSize(m.byteLength) > room) break;
                room -= Ring.recordSize(m.byteLength);
                expected++;
              }
              assert.equal(a.trySendMany(batch), expected);
              for (const m of batch.slice(0, expected)) put(m);
            } else if (step.op === "receive") {
              if (queue.length === 0) assert.equal(b.tryReceive(), undefined);
              else took(b.tryReceive());
            } else if (step.op === "receiveWith") {
              // Read where it lies: the copy made inside `read` is the message (a wrapped one is a copy already).
              const got = b.tryReceiveWith((data, offset, length) => data.slice(offset, offset + length));
              if (queue.length === 0) assert.equal(got, undefined);
              else took(got);
            } else if (step.op === "receiveMany") {
              const got = b.tryReceiveMany(step.max);
              assert.equal(got.length, Math.min(step.max, queue.length));
              for (const m of got) took(m);
            } else if (step.op === "drain") {
              const seen: Uint8Array[] = [];
              const n = b.tryDrain((data, offset, length) => seen.push(data.slice(offset, offset + length)), step.max);
              assert.equal(n, Math.min(step.max, queue.length));
              assert.equal(seen.length, n);
              for (const m of seen) took(m);
            } else {
              const target = new Uint8Array(step.room);
              if (queue.length === 0) assert.equal(b.tryReceiveInto(target), undefined);
              else if (queue[0]!.byteLength > step.room) assert.throws(() => b.tryReceiveInto(target), RangeError);
              else {
                const n = b.tryReceiveInto(target)!;
                took(target.subarray(0, n));
              }
            }
          }
          for (const m of b.tryReceiveMany()) took(m);
          assert.equal(queue.length, 0, "everything sent was received");
        } finally {
          await Promise.all([a.close(), b.close()]);
        }
      },
    ),
    { numRuns: 150, seed: SEED, verbose: true },
  );
});

test("sendMany and receiveMany wait: a batch larger than the ring goes through in parts, in order", async () => {
  const [a, handle] = shm.pair({ capacity: 256 });
  const b = shm.fromHandle(handle);
  try {
    const batch = Array.from({ length: 100 }, (_, i) => new Uint8Array(i % 50).fill(i));
    const sending = a.sendMany(batch);
    const got: Uint8Array[] = [];
    while (got.length < batch.length) got.push(...await b.receiveMany({ max: 7, timeout: 30_000 }));
    await sending;
    assert.deepEqual(got, batch);
    const buffer = new Uint8Array(8);
    await a.send(new Uint8Array([5, 6]));
    assert.equal(await b.receiveInto(buffer, { timeout: 30_000 }), 2);
    assert.deepEqual(buffer.subarray(0, 2), new Uint8Array([5, 6]));
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("a receive or send queued behind another that waits rejects at once when its signal aborts; the one ahead goes on", async () => {
  const [a, handle] = shm.pair({ capacity: 256, spin: 0 });
  const b = shm.fromHandle(handle);
  try {
    const first = b.receive({ timeout: 60_000 });
    const ac = new AbortController();
    const queued = b.receive({ signal: ac.signal });
    ac.abort(new Error("gave up"));
    await assert.rejects(queued, /gave up/);
    assert.equal(a.trySend(new Uint8Array([1])), true);
    assert.deepEqual(await first, new Uint8Array([1]));
    // Sends: the ring full, one send waits for room and the one queued behind it is aborted.
    assert.equal(a.trySend(new Uint8Array(200)), true);
    const waiting = a.send(new Uint8Array(100));
    const sendAc = new AbortController();
    const queuedSend = a.send(new Uint8Array([9]), { signal: sendAc.signal });
    sendAc.abort();
    await assert.rejects(queuedSend, (e: Error) => e.name === "AbortError");
    assert.equal((await b.receive({ timeout: 60_000 })).length, 200);
    await waiting;
    assert.equal((await b.receive({ timeout: 60_000 })).length, 100);
    assert.equal(b.tryReceive(), undefined, "the aborted send sent nothing");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("trySendPart: a length out of range is a RangeError, over maxMessage MessageTooLargeError; nothing is sent", async () => {
  const [a, handle] = shm.pair({ capacity: 256 });
  const b = shm.fromHandle(handle);
  try {
    const data = new Uint8Array(300).fill(7);
    for (const bad of [-1, 301, 1.5, NaN]) assert.throws(() => a.trySendPart(data, bad), RangeError, `length ${bad}`);
    assert.throws(() => a.trySendPart(data, 300), (e: Error) => e.name === "MessageTooLargeError");
    assert.equal(b.tryReceive(), undefined);
    assert.equal(a.trySendPart(data, 0), true);
    assert.equal(a.trySendPart(data.subarray(10), 3), true);
    assert.deepEqual(b.tryReceiveMany(), [new Uint8Array(0), new Uint8Array([7, 7, 7])]);
    await b.close();
    assert.throws(() => a.trySendPart(data, 1), ClosedError);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("receiveWith: what read returns, where the message lies; a read that throws or returns undefined fails that receive, the message counted, the channel on", async () => {
  const [a, handle] = shm.pair({ capacity: 256 });
  const b = shm.fromHandle(handle);
  try {
    const sum = (data: Uint8Array, offset: number, length: number) => {
      let s = 0;
      for (let i = offset; i < offset + length; i++) s += data[i]!;
      return s;
    };
    const pending = b.receiveWith(sum); // waits
    assert.equal(a.trySend(new Uint8Array([1, 2, 3])), true);
    assert.equal(await pending, 6);
    a.trySend(new Uint8Array([9]));
    assert.throws(() =>
      b.tryReceiveWith(() => {
        throw new RangeError("mine");
      }), /mine/);
    a.trySend(new Uint8Array([5]));
    await assert.rejects(b.receiveWith(() => undefined), TypeError);
    a.trySend(new Uint8Array([7, 7]));
    assert.equal(b.tryReceiveWith(sum), 14, "the two failed reads each took their message, the channel goes on");
    assert.equal(b.tryReceiveWith(sum), undefined);
    assert.throws(() => b.tryReceiveWith(42 as never), TypeError);
    // Messages that wrap around the end of the ring come whole too.
    for (let k = 0; k < 40; k++) {
      const m = new Uint8Array(37 + (k % 5)).fill(k);
      assert.equal(a.trySend(m), true);
      assert.equal(b.tryReceiveWith(sum), k * m.length, `message ${k}`);
    }
    await a.close();
    await assert.rejects(b.receiveWith(sum), ClosedError);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("sendMany checks every message before it writes one; bad arguments get clear errors", async () => {
  const [a, handle] = shm.pair({ capacity: 256, maxMessage: 100 });
  const b = shm.fromHandle(handle);
  try {
    await assert.rejects(a.sendMany([new Uint8Array(1), new Uint8Array(101)]), /exceeds maxMessage \(100 bytes\)/);
    await assert.rejects(a.sendMany([new Uint8Array(1), "x" as never]), TypeError);
    await assert.rejects(a.sendMany("x" as never), TypeError);
    assert.throws(() => a.trySendMany([new Uint8Array(200)]), /exceeds maxMessage/);
    assert.deepEqual(b.tryReceiveMany(), [], "nothing was sent");
    // A bad message past the room (the ring holds three of these): still nothing goes, sync or not.
    const fill = () => [new Uint8Array(60), new Uint8Array(60), new Uint8Array(60), new Uint8Array(60)];
    assert.throws(() => a.trySendMany([...fill(), new Uint8Array(101)]), /exceeds maxMessage/);
    assert.throws(() => a.trySendMany([...fill(), new Uint16Array(2) as never]), /message 4 is not a Uint8Array/);
    await assert.rejects(a.sendMany([...fill(), null as never]), /message 4 is not a Uint8Array/);
    assert.deepEqual(b.tryReceiveMany(), [], "nothing was sent");
    // Behind a send that waits for room, a bad batch is refused at once, and the waiting one goes on.
    const waiting = a.sendMany(fill());
    await assert.rejects(a.sendMany([new Uint8Array(1), new Uint8Array(101)]), /exceeds maxMessage/);
    let got = 0;
    while (got < 4) got += (await b.receiveMany()).length;
    await waiting;
    assert.deepEqual(b.tryReceiveMany(), [], "only the good batch went");
    assert.throws(() => b.tryReceiveMany(0), RangeError);
    await assert.rejects(b.receiveMany({ max: 1.5 }), RangeError);
    await assert.rejects(b.receiveInto("x" as never), TypeError);
    await a.send(new Uint8Array(50));
    await assert.rejects(b.receiveInto(new Uint8Array(10)), /50 bytes into a buffer of 10/);
    assert.equal((await b.receive()).byteLength, 50, "the message stayed for a larger buffer");
    await a.close();
    assert.throws(() => a.trySendMany([new Uint8Array(1)]), ClosedError);
    await assert.rejects(b.receiveMany(), ClosedError);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("drain, as a peer could write the ring: a record over the ring's limit mid-batch ends the batch before it, then is a ProtocolError; one over the reader's limit is MessageTooLargeError and stays", () => {
  const buffer = new SharedArrayBuffer(ringSize(256));
  const producer = Ring.init(buffer, 0, 256);
  const consumer = Ring.attach(buffer, 0);
  for (const n of [1, 2, 3, 4]) assert.equal(producer.tryWrite(new Uint8Array(n).fill(n)), true);
  const length = new DataView(buffer, 192 + 32, 4); // the third record's length word (records of 16 bytes here)
  length.setUint32(0, 0xffff_fff0, true);
  const seen: number[] = [];
  const keep = (data: Uint8Array, offset: number, n: number) => void seen.push(n, data[offset]!);
  assert.equal(consumer.drain(keep, Infinity), 2);
  assert.deepEqual(seen, [1, 1, 2, 2]);
  assert.throws(() => consumer.drain(keep, Infinity), ProtocolError);
  length.setUint32(0, 100, true); // within the ring, over the reader's limit
  assert.throws(() => consumer.drain(keep, Infinity, 50), MessageTooLargeError);
  assert.throws(() => consumer.drain(keep, Infinity, 50), MessageTooLargeError, "it stays");
  length.setUint32(0, 3, true);
  assert.equal(consumer.drain(keep, Infinity, 50), 2);
  assert.deepEqual(seen, [1, 1, 2, 2, 3, 3, 4, 4]);
});

test("drain: a handler that throws gets its error back, its message counts as received, the channel goes on", async () => {
  const [a, handle] = shm.pair({ capacity: 1024 });
  const b = shm.fromHandle(handle);
  try {
    assert.equal(a.trySendMany([1, 2, 3].map((n) => new Uint8Array([n]))), 3);
    const seen: number[] = [];
    const boom = new Error("boom");
    assert.throws(() =>
      b.tryDrain((data, offset) => {
        seen.push(data[offset]!);
        if (data[offset] === 2) throw boom;
      }), (e) => e === boom);
    assert.deepEqual(seen, [1, 2]);
    assert.deepEqual(await b.receive(), new Uint8Array([3]), "the rest is still there, in order");
    assert.equal(b.closed, false);
    await a.send(new Uint8Array([4]));
    assert.equal(await b.drain(() => {}, { timeout: 30_000 }), 1);
    assert.throws(() => b.tryDrain("x" as never), TypeError);
    assert.throws(() => b.tryDrain(() => {}, 0), RangeError);
    assert.equal(b.tryDrain(() => {}), 0);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("drain and receiveWith: a receive from inside the handler is refused (it would get the same messages again), and every message comes once, in order", async () => {
  const [a, handle] = shm.pair({ capacity: 1024 });
  const b = shm.fromHandle(handle);
  try {
    assert.equal(a.trySendMany([0, 1, 2, 3, 4, 5].map((n) => new Uint8Array([n]))), 6);
    const seen: number[] = [];
    const refused: unknown[] = [];
    const inner: Promise<unknown>[] = [];
    const n = b.tryDrain((data, offset) => {
      seen.push(data[offset]!);
      if (data[offset] !== 1) return;
      for (const receive of [() => b.tryDrain(() => {}, 2), () => b.tryReceive(), () => b.tryReceiveMany()]) {
        try {
          receive();
        } catch (e) {
          refused.push(e);
        }
      }
      inner.push(b.receive().then(() => "received", (e) => e));
    }, 4);
    assert.equal(n, 4);
    assert.deepEqual(seen, [0, 1, 2, 3]);
    assert.equal(refused.length, 3);
    for (const e of [...refused, ...await Promise.all(inner)]) {
      assert.ok(e instanceof IpcError && /inside a drain handler/.test(e.message), String(e));
    }
    // receiveWith's read is under the same rule.
    const got = b.tryReceiveWith((data, offset) => {
      assert.throws(() => b.tryReceive(), IpcError);
      return data[offset]!;
    });
    assert.equal(got, 4);
    assert.deepEqual(await b.receive(), new Uint8Array([5]), "the rest, once, in order");
    assert.equal(b.tryReceive(), undefined);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

/** A channel with a batch-sending child of `peer`; the child is gone when `fn` returned or threw. */
async function withBatchChild(
  peer: RuntimeName,
  args: { seed: number; count: number; maxSize: number; capacity: number },
  fn: (channel: shm.ShmChannel, kill: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const rt = await runtime();
  const name = `/ipckit-test-${Math.random().toString(36).slice(2, 12)}`;
  shmNames.add(name);
  const abort = new AbortController();
  const creating = shm.create(name, { capacity: args.capacity, signal: abort.signal });
  const argv = [...runtimeArgv(peer, rt.fromFileUrl(CHILD)), name, `${args.seed}`, `${args.count}`, `${args.maxSize}`];
  const child = rt.spawn(argv, { cwd: rt.fromFileUrl(new URL("..", import.meta.url)), stdio: "null" });
  const timer = setTimeout(() => abort.abort(new Error(`the ${peer} child did not open the channel in 60 s`)), 60_000);
  let channel: shm.ShmChannel | undefined;
  try {
    channel = await Promise.race([
      creating,
      child.exited.then((s) => Promise.reject(new Error(`the ${peer} child exited first: ${JSON.stringify(s)}`))),
    ]);
    await fn(channel, async () => {
      child.kill("SIGKILL");
      await child.exited;
    });
    const status = await child.exited;
    if (args.count > 0) assert.equal(status.code, 0, `the ${peer} child failed: ${JSON.stringify(status)}`);
  } finally {
    clearTimeout(timer);
    abort.abort();
    await creating.catch(() => {});
    await channel?.close();
    child.kill("SIGKILL");
    await child.exited;
  }
}

for (const peer of RUNTIMES) {
  test(
    `a ${peer} child's batches arrive whole and in order, read by receiveMany, receiveInto, receive and drain in turn`,
    {
      timeout: 120_000,
    },
    async () => {
      const seed = SEED + peer.length;
      const count = 3000;
      const maxSize = 600;
      await withBatchChild(peer, { seed, count, maxSize, capacity: 4096 }, async (channel) => {
        const buffer = new Uint8Array(maxSize);
        let i = 0;
        const check = (m: Uint8Array) => {
          const wrong = differs(m, seed, i, maxSize);
          assert.equal(wrong, undefined, `seed ${seed}: ${wrong}`);
          i++;
        };
        while (i < count) {
          const how = i % 3;
          if (how === 0) { for (const m of await channel.receiveMany({ max: 25, timeout: 60_000 })) check(m); }
          else if (how === 1) check(buffer.subarray(0, await channel.receiveInto(buffer, { timeout: 60_000 })));
          else check(await channel.receive({ timeout: 60_000 }));
        }
        await assert.rejects(channel.receive({ timeout: 60_000 }), ClosedError);
      });
    },
  );
}

test("a child SIGKILLed mid-batch: what it published arrives whole and in order, then ClosedError; no torn message", {
  timeout: 120_000,
}, async () => {
  const rt = await runtime();
  // One peer per runner, a different one on each (the parents differ): every runtime is killed somewhere.
  const peer = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % RUNTIMES.length]!;
  const seed = SEED ^ 0x4b11;
  const maxSize = 300;
  await withBatchChild(peer, { seed, count: 0, maxSize, capacity: 2048 }, async (channel, kill) => {
    let i = 0;
    const take = (m: Uint8Array) => {
      const wrong = differs(m, seed, i, maxSize);
      assert.equal(wrong, undefined, `seed ${seed}: ${wrong}`);
      i++;
    };
    // Read a while (the child fills the small ring again and again), then kill it while it sends.
    while (i < 2000) for (const m of await channel.receiveMany({ max: 64, timeout: 60_000 })) take(m);
    await kill();
    for (;;) {
      try {
        for (const m of await channel.receiveMany({ timeout: 60_000 })) take(m);
      } catch (e) {
        assert.ok(e instanceof ClosedError, `ended with ${e}`);
        assert.match(e.message, /died|closed/);
        break;
      }
    }
    assert.ok(i >= 2000);
  });
});
