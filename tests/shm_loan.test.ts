/**
 * Loans of the shared-memory channel (`shm/loan.ts`): bytes lent in the ring to fill (`tryLoan`/`loan`, `commit`,
 * `abandon`) and received messages lent where they lie (`tryReceiveLoan`/`receiveLoan`, `release`). A model test
 * mixes them with copying sends and receives through wrap-around and a full ring; the rest drives misuse, waiting,
 * close and a child of each runtime that answers with loans only.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, IpcError, MessageTooLargeError, runtime, runtimeArgv, type RuntimeName, shm } from "../mod.ts";
import { RingModel } from "./helpers/ring_model.ts";
import { shmNames } from "./conformance/fixtures.ts";
import { differs, message } from "./helpers/shm_batch_data.ts";

const SEED = Date.now() ^ 0x10a2;
const RUNTIMES: RuntimeName[] = ["deno", "bun", "node"];
const CHILD = new URL("./helpers/shm_loan_child.ts", import.meta.url);

type Op =
  | { op: "send"; size: number }
  | { op: "loan"; size: number; keep: number; abandon: boolean }
  | { op: "receive" }
  | { op: "receiveLoan" };

const ops = (max: number): fc.Arbitrary<Op[]> => {
  const size = fc.oneof(fc.integer({ min: 0, max }), fc.constantFrom(0, 1, 7, 8, 9, max));
  return fc.array(
    fc.oneof(
      fc.record({ op: fc.constant("send" as const), size }),
      fc.record({
        op: fc.constant("loan" as const),
        size,
        keep: fc.integer({ min: 0, max: 1000 }),
        abandon: fc.boolean(),
      }),
      fc.record({ op: fc.constant("receive" as const) }),
      fc.record({ op: fc.constant("receiveLoan" as const) }),
    ),
    { maxLength: 150 },
  );
};

test("property: loans and copies keep order and boundaries through wrap-around and a full ring; an open loan refuses other sends or receives", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(64, 128, 256, 1024).chain((capacity) => fc.tuple(fc.constant(capacity), ops(capacity - 8))),
      async ([capacity, script]) => {
        const [a, handle] = shm.pair({ capacity, spin: 0 });
        const b = shm.fromHandle(handle);
        const model = new RingModel(capacity);
        const { queue } = model;
        let k = 0;
        const fill = (size: number) => new Uint8Array(size).map((_, j) => (k * 29 + j * 11) & 255);
        const fits = (size: number) => model.fits(size);
        const put = (m: Uint8Array) => model.put(m);
        const took = (m: Uint8Array | undefined) => model.took(m);
        try {
          for (const step of script) {
            k++;
            if (step.op === "send") {
              const m = fill(step.size);
              const ok = fits(step.size);
              assert.equal(a.trySend(m), ok);
              if (ok) put(m);
            } else if (step.op === "loan") {
              const loan = a.tryLoan(step.size);
              assert.equal(
                loan !== undefined,
                fits(step.size),
                `a loan of ${step.size} with ${capacity - model.used} free`,
              );
              if (loan === undefined) continue;
              assert.equal(loan.bytes.length, step.size);
              assert.throws(() => a.trySend(new Uint8Array(1)), IpcError, "a send while the loan is out");
              assert.throws(() => a.tryLoan(0), IpcError, "a second loan");
              const m = fill(Math.min(step.keep, step.size));
              loan.bytes.fill(0xee); // bytes past what is committed never go
              loan.bytes.set(m);
              if (step.abandon) loan.abandon();
              else {
                loan.commit(m.length);
                put(m);
              }
              assert.equal(loan.open, false);
              assert.throws(() => loan.commit(), IpcError, "a loan commits once");
            } else if (step.op === "receive") {
              if (queue.length === 0) assert.equal(b.tryReceive(), undefined);
              else took(b.tryReceive());
            } else {
              const lent = b.tryReceiveLoan();
              if (queue.length === 0) {
                assert.equal(lent, undefined);
                continue;
              }
              assert.ok(lent !== undefined);
              assert.throws(() => b.tryReceive(), IpcError, "a receive while a received loan is out");
              const copy = lent.bytes.slice();
              lent.release();
              lent.release(); // idempotent
              took(copy);
            }
          }
          for (let m = b.tryReceive(); m !== undefined; m = b.tryReceive()) took(m);
          assert.equal(queue.length, 0, "everything committed was received");
        } finally {
          await Promise.all([a.close(), b.close()]);
        }
      },
    ),
    { numRuns: 150, seed: SEED, verbose: true },
  );
});

test("loans: bad lengths are RangeError or MessageTooLargeError; `using` abandons an uncommitted loan and releases a received one", async () => {
  const [a, handle] = shm.pair({ capacity: 1024, maxMessage: 100 });
  const b = shm.fromHandle(handle);
  try {
    for (const bad of [-1, 1.5, NaN, "8" as never]) assert.throws(() => a.tryLoan(bad), RangeError, `${bad}`);
    assert.throws(() => a.tryLoan(101), MessageTooLargeError);
    await assert.rejects(a.loan(101), MessageTooLargeError);
    const loan = a.tryLoan(10)!;
    assert.throws(() => loan.commit(11), RangeError);
    assert.throws(() => loan.commit(-1), RangeError);
    loan.abandon();
    loan.abandon();
    assert.equal(b.tryReceive(), undefined, "an abandoned loan sends nothing");
    {
      using unsent = a.tryLoan(5)!;
      unsent.bytes.fill(1);
    } // abandoned here, not committed
    assert.equal(b.tryReceive(), undefined);
    {
      using sent = a.tryLoan(3)!;
      sent.bytes.set([1, 2, 3]);
      sent.commit();
    }
    assert.equal(a.trySend(new Uint8Array([4])), true, "sends go on once the loan ended");
    {
      using got = b.tryReceiveLoan()!;
      assert.deepEqual(got.bytes, new Uint8Array([1, 2, 3]));
    }
    assert.deepEqual(b.tryReceive(), new Uint8Array([4]), "receives go on once the loan was released");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("loan() waits for room and receiveLoan() for a message; a signal aborts the wait; close ends open loans", async () => {
  const [a, handle] = shm.pair({ capacity: 256 });
  const b = shm.fromHandle(handle);
  try {
    assert.equal(a.trySend(new Uint8Array(200)), true);
    assert.equal(a.tryLoan(100), undefined, "no room now");
    const ac = new AbortController();
    const aborted = a.loan(100, { signal: ac.signal });
    ac.abort(new Error("no more"));
    await assert.rejects(aborted, /no more/);
    const waiting = a.loan(100);
    const receiving = b.receiveLoan({ timeout: 30_000 });
    const first = await receiving;
    assert.equal(first.bytes.length, 200);
    first.release(); // the room the waiting loan needs
    const loan = await waiting;
    loan.bytes.fill(9);
    loan.commit(50);
    const second = await b.receiveLoan({ timeout: 30_000 });
    assert.deepEqual(second.bytes, new Uint8Array(50).fill(9));
    // Close with a loan out each way: the send loan's commit says the channel closed; releasing is harmless.
    const open = a.tryLoan(10)!;
    await a.close();
    assert.throws(() => open.commit(), ClosedError);
    await b.close();
    second.release();
    assert.equal(second.open, false);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

for (const peer of RUNTIMES) {
  test(`a ${peer} child answers with loans only: 400 messages lent both ways, wrapping the ring, arrive whole`, {
    timeout: 120_000,
  }, async () => {
    const rt = await runtime();
    const name = `/ipckit-test-${Math.random().toString(36).slice(2, 12)}`;
    shmNames.add(name);
    const seed = SEED + peer.length;
    const maxSize = 3000;
    const abort = new AbortController();
    const creating = shm.create(name, { capacity: 8192, signal: abort.signal });
    const argv = [...runtimeArgv(peer, rt.fromFileUrl(CHILD)), name, `${seed}`, `${maxSize}`];
    const child = rt.spawn(argv, { cwd: rt.fromFileUrl(new URL("..", import.meta.url)), stdio: "null" });
    const timer = setTimeout(
      () => abort.abort(new Error(`the ${peer} child did not open the channel in 60 s`)),
      60_000,
    );
    let channel: shm.ShmChannel | undefined;
    try {
      channel = await Promise.race([
        creating,
        child.exited.then((s) => Promise.reject(new Error(`the ${peer} child exited first: ${JSON.stringify(s)}`))),
      ]);
      for (let i = 0; i < 400; i++) {
        const m = message(seed, i, maxSize);
        const loan = await channel.loan(m.length);
        loan.bytes.set(m);
        loan.commit();
        using answer: shm.ReceiveLoan = await channel.receiveLoan({ timeout: 60_000 });
        assert.equal(differs(answer.bytes, seed + 1, i, maxSize), undefined, `seed ${seed}`);
      }
      await channel.close();
      const status = await child.exited;
      assert.equal(status.code, 0, `the ${peer} child failed: ${JSON.stringify(status)}`);
    } finally {
      clearTimeout(timer);
      abort.abort();
      await creating.catch(() => {});
      await channel?.close();
      child.kill("SIGKILL");
      await child.exited;
    }
  });
}
