/**
 * Transfer lists (`run(task, { transfer })`), on Deno, Bun and Node: a thread gets the very buffers (the sender's are
 * detached), 64 MiB included; a process gets a copy and the sender's are detached all the same; a worker that dies
 * with a transferred task settles it once, and a transfer still queued survives the death; misuse is refused and
 * leaves the caller's buffers alone.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, MessageTooLargeError, Pool, WorkerDiedError } from "../mod.ts";

const LONG = { timeout: 180_000 };
const WORKER = new URL("./helpers/pool_limits_worker.ts", import.meta.url);

type Seen = { type: string; byteLength: number; sum: number };
type Api = {
  run(n: number): number;
  bytes(...args: unknown[]): Seen[];
  shared(o: { buffer: ArrayBuffer; view: Float64Array }): { same: boolean; first: number; length: number };
  hold(b: ArrayBuffer, ms: number): number;
  die(b: unknown): never;
  made(n: number, start: number): Uint8Array;
  madeLater(n: number, ms: number): { out: Uint8Array; n: number };
  detachedHere(): boolean | undefined;
  badMove(how: string): Uint8Array;
  moveAndDie(n: number): never;
};

/** A buffer of `n` bytes with a pattern, and what the worker's `seen()` makes of it. */
function filled(n: number, seed = 1): { buffer: ArrayBuffer; sum: number } {
  const bytes = new Uint8Array(n);
  for (let i = 0; i < n; i += 4096) bytes[i] = (i / 4096 + seed) % 251;
  if (n > 0) bytes[n - 1] = seed % 251;
  let sum = 0;
  for (let i = 0; i < n; i += 4096) sum = (sum + bytes[i]!) % 1_000_000_007;
  if (n > 0) sum = (sum + bytes[n - 1]!) % 1_000_000_007;
  return { buffer: bytes.buffer, sum };
}

test(
  "pool transfer (threads): the sender's buffer is detached, the worker gets the same bytes, 64 MiB too",
  LONG,
  async () => {
    const pool = new Pool<Api>({ worker: WORKER, size: 1 });
    try {
      const { buffer, sum } = filled(1 << 20);
      const answer = pool.call("bytes", [buffer], { transfer: [buffer] });
      assert.equal(buffer.byteLength, 0, "detached as run() returns");
      assert.deepEqual(await answer, [{ type: "ArrayBuffer", byteLength: 1 << 20, sum }]);
      // A buffer and a view on it, moved together: one memory in the worker.
      const ab = new ArrayBuffer(64);
      const view = new Float64Array(ab);
      view[0] = 3.5;
      assert.deepEqual(await pool.call("shared", [{ buffer: ab, view }], { transfer: [ab] }), {
        same: true,
        first: 3.5,
        length: 8,
      });
      assert.equal(view.length, 0, "the sender's view is detached with its buffer");
      // 64 MiB: past the 1 MiB ring, so it can only have gone by the side path.
      const big = filled(64 << 20, 7);
      const seen = await pool.call("bytes", [big.buffer], { transfer: [big.buffer] });
      assert.equal(big.buffer.byteLength, 0);
      assert.deepEqual(seen, [{ type: "ArrayBuffer", byteLength: 64 << 20, sum: big.sum }]);
    } finally {
      await pool.close();
    }
  },
);

test("pool transfer (threads): any mix of moved and copied buffers arrives whole (fast-check)", LONG, async () => {
  const pool = new Pool<Api>({ worker: WORKER, size: 2, concurrency: 2 });
  try {
    await pool.ready();
    const property = fc.asyncProperty(
      fc.array(fc.record({ size: fc.integer({ min: 0, max: 200_000 }), move: fc.boolean() }), {
        minLength: 1,
        maxLength: 12,
      }),
      async (items) => {
        const made = items.map((it, i) => ({ ...it, ...filled(it.size, i + 1) }));
        const answers = made.map((m) =>
          pool.call("bytes", [m.buffer], m.move ? { transfer: [m.buffer] } : {}).then((s) => s[0]!)
        );
        for (const m of made) assert.equal(m.buffer.byteLength, m.move ? 0 : m.size);
        const seen = await Promise.all(answers);
        seen.forEach((s, i) => {
          assert.equal(s.byteLength, made[i]!.size);
          assert.equal(s.sum, made[i]!.sum);
          // Moved, it stays an ArrayBuffer; copied over the ring, an ArrayBuffer arrives as bytes (a Uint8Array).
          assert.equal(s.type, made[i]!.move ? "ArrayBuffer" : "Uint8Array");
        });
      },
    );
    const seed = Date.now() | 0;
    const result = await fc.check(property, { numRuns: 20, seed });
    if (result.failed) assert.fail(`fast-check failed (seed ${seed}): ${fc.defaultReportMessage(result)}`);
    assert.equal(pool.stats.failed, 0);
  } finally {
    await pool.close();
  }
});

test("pool transfer (processes): the bytes are copied, the sender's buffer detached all the same", LONG, async () => {
  const pool = new Pool<Api>({ worker: WORKER, kind: "process", size: 1 });
  try {
    const { buffer, sum } = filled(256 << 10);
    const answer = pool.call("bytes", [buffer], { transfer: [buffer] });
    assert.equal(buffer.byteLength, 0);
    assert.deepEqual(await answer, [{ type: "Uint8Array", byteLength: 256 << 10, sum }]);
    // Past the channel's largest message: the task fails with MessageTooLargeError, the pool goes on.
    const big = filled(2 << 20);
    await assert.rejects(pool.call("bytes", [big.buffer], { transfer: [big.buffer] }), MessageTooLargeError);
    assert.equal(await pool.run(5), 25);
  } finally {
    await pool.close();
  }
});

test(
  "pool transfer (threads): a worker that dies holding a moved buffer settles its task once; a queued one survives",
  LONG,
  async () => {
    const pool = new Pool<Api>({ worker: WORKER, size: 1, concurrency: 2, restartDelay: 10 });
    try {
      await pool.ready();
      let settled = 0;
      const count = <T>(p: Promise<T>) => p.finally(() => void settled++);
      const held = filled(1 << 20);
      // Idempotent or not, a task whose buffers went to a dead worker is not run again (they went with it).
      const holding = count(pool.call("hold", [held.buffer, 120_000], { transfer: [held.buffer], idempotent: true }));
      const dying = filled(4096, 3);
      const dies = count(pool.call("die", [dying.buffer], { transfer: [dying.buffer] }));
      // Queued behind the two (concurrency 2): not sent yet when the worker dies, so it runs on the next one.
      const later = filled(300_000, 5);
      const queued = count(pool.call("bytes", [later.buffer], { transfer: [later.buffer] }));
      for (const p of [holding, dies]) {
        const e = await p.then(() => undefined, (e) => e);
        assert.ok(e instanceof WorkerDiedError, String(e));
        assert.equal(e.attempts, 1);
      }
      assert.deepEqual(await queued, [{ type: "ArrayBuffer", byteLength: 300_000, sum: later.sum }]);
      assert.equal(settled, 3);
      assert.equal(pool.stats.retried, 0);
      assert.equal(pool.stats.done + pool.stats.failed, 3);
    } finally {
      await pool.terminate();
    }
  },
);

test("pool transfer: misuse is refused with clear errors, and the caller's buffers stay whole", LONG, async () => {
  const pool = new Pool<Api>({ worker: WORKER, size: 1 });
  try {
    const ab = new ArrayBuffer(16);
    const refused = async (transfer: unknown, pattern: RegExp) => {
      await assert.rejects(pool.call("bytes", [ab], { transfer: transfer as ArrayBuffer[] }), (e: unknown) => {
        assert.ok(e instanceof TypeError, String(e));
        assert.match(e.message, pattern);
        return true;
      });
      assert.equal(ab.byteLength, 16, "a refused task leaves the buffer alone");
    };
    await refused(ab, /it must be an array of ArrayBuffers/);
    await refused([ab, new SharedArrayBuffer(8)], /a SharedArrayBuffer: it is shared, not moved/);
    await refused([new Uint8Array(ab)], /a Uint8Array: transfer takes ArrayBuffers \(give its \.buffer/);
    await refused([ab, ab], /the same ArrayBuffer twice \(items 0 and 1\)/);
    await refused([{}], /transfer takes ArrayBuffers only/);
    await refused([ab, "bytes"], /transfer takes ArrayBuffers only/);
    const gone = new ArrayBuffer(8);
    await pool.call("bytes", [gone], { transfer: [gone] });
    await refused([gone], /detached \(moved already\)/);
    // Arguments a structured clone refuses: refused too (Deno detaches the listed buffers first, so a fresh one).
    const other = new ArrayBuffer(8);
    await assert.rejects(pool.call("bytes", [() => {}], { transfer: [other] }), /its arguments cannot be cloned/);
    await assert.rejects(async () => {
      for await (const _ of pool.map([1], { transfer: [ab] } as never)) { /* refused before any */ }
    }, /Cannot map with transfer/);
    assert.equal(ab.byteLength, 16);
    await pool.close();
    await assert.rejects(pool.call("bytes", [ab], { transfer: [ab] }), ClosedError);
    assert.equal(ab.byteLength, 16, "a closed pool takes nothing");
  } finally {
    await pool.close();
  }
});

for (const kind of ["thread", "process"] as const) {
  test(`pool.move (${kind}s): a handler's result moved back whole, sync or async, big or small`, LONG, async () => {
    const pool = new Pool<Api>({ worker: WORKER, kind, size: 1, concurrency: 4 });
    try {
      const n = kind === "thread" ? 64 << 20 : 512 << 10; // a process's result goes over its 1 MiB channel
      const big = await pool.call("made", [n, 3]);
      assert.equal(big.constructor, Uint8Array);
      assert.equal(big.byteLength, n);
      assert.deepEqual([big[0], big[1], big[n - 1]], [3, 4, (3 + n - 1) & 255]);
      // In a thread the worker's array went with the result (detached there); a process copied it (still there).
      assert.equal(await pool.call("detachedHere", []), kind === "thread");
      // Many at once, some async, with their answers and their moved values arriving in any order.
      const one = (i: number): Promise<number> =>
        i % 3 === 0
          ? pool.call("madeLater", [i + 1, i % 7]).then((r) => r.out.byteLength + r.n)
          : pool.call("made", [i + 1, i]).then((r) => r.byteLength + r[0]!);
      const out = await Promise.all(Array.from({ length: 40 }, (_, i) => one(i)));
      assert.deepEqual(out, Array.from({ length: 40 }, (_, i) => i % 3 === 0 ? 2 * (i + 1) : i + 1 + (i & 255)));
      // A wrong transfer list: the call fails with what is wrong, the worker goes on.
      const misuse: [string, RegExp][] = [["typed", /not an ArrayBuffer/], ["twice", /listed twice/], [
        "none",
        /must be an array/,
      ]];
      // In a process the value is copied: the list is not looked at.
      if (kind === "thread") {
        for (const [how, words] of misuse) await assert.rejects(pool.call("badMove", [how]), words);
      }
      assert.equal(await pool.run(4), 16);
    } finally {
      await pool.close();
    }
  });
}

test("pool.move (threads): a thread that dies before its moved result came settles the task once", LONG, async () => {
  const pool = new Pool<Api>({ worker: WORKER, size: 1, restartDelay: 10 });
  try {
    await pool.ready();
    const e = await pool.call("moveAndDie", [1024]).then(() => undefined, (e) => e);
    assert.ok(e instanceof WorkerDiedError, String(e));
    // A broadcast of a moved result answers with the value, from every worker (the replacement, once it is up).
    await pool.ready();
    const answers = await pool.broadcast("made", [16, 9]);
    assert.equal(answers.length, 1);
    assert.ok(answers[0]!.ok && answers[0]!.value.byteLength === 16 && answers[0]!.value[0] === 9, String(answers));
    assert.equal(pool.stats.done + pool.stats.failed, 1);
  } finally {
    await pool.terminate();
  }
});
