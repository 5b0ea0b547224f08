// The async toolkit (async/): each helper on its own, including the ways callers give up.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Backoff, Deadline, delay, Fifo, onAbort, retry, Turns, Turnstile, Waiters, within } from "../async/mod.ts";
import { TimeoutError } from "../errors.ts";

describe("onAbort", () => {
  test("calls once on abort, at once when already aborted, never after stop()", () => {
    let n = 0;
    const c = new AbortController();
    const stop = onAbort(c.signal, () => n++);
    c.abort();
    c.abort();
    assert.equal(n, 1);
    onAbort(c.signal, () => n++);
    assert.equal(n, 2);
    const d = new AbortController();
    onAbort(d.signal, () => n++)();
    d.abort();
    assert.equal(n, 2);
    stop();
    assert.equal(typeof onAbort(undefined, () => n++), "function");
  });
});

describe("delay and Backoff", () => {
  test("delay resolves true after the time, false when aborted before or during", async () => {
    assert.equal(await delay(1), true);
    const c = new AbortController();
    const p = delay(60_000, c.signal);
    c.abort();
    assert.equal(await p, false);
    assert.equal(await delay(60_000, c.signal), false);
  });
  test("within() tells whether a promise settled (either way) before the time ran out", async () => {
    assert.equal(await within(Promise.resolve(1), 60_000), true);
    assert.equal(await within(Promise.reject(new Error("no")), 60_000), true);
    assert.equal(await within(new Promise(() => {}), 1), false);
  });
  test("Backoff doubles up to max, starts from 0 as 0, 1, 2…, and reset() starts again", () => {
    const b = new Backoff({ first: 1, max: 20 });
    assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => b.next()), [1, 2, 4, 8, 16, 20]);
    b.reset();
    assert.equal(b.next(), 1);
    const z = new Backoff({ first: 0, max: 4 });
    assert.deepEqual([1, 2, 3, 4, 5].map(() => z.next()), [0, 1, 2, 4, 4]);
    assert.throws(() => new Backoff({ first: 5, max: 1 }), RangeError);
  });
});

describe("Deadline and retry", () => {
  test("a deadline of undefined never passes; one of 0 has passed", () => {
    assert.equal(Deadline.after(undefined).passed, false);
    assert.equal(Deadline.after(undefined).remaining, Infinity);
    assert.equal(Deadline.after(0).passed, true);
    assert.equal(Deadline.after(0).remaining, 0);
  });
  test("retry tries until success, throws a non-retryable failure at once, and the last one past the wait", async () => {
    let n = 0;
    assert.equal(
      await retry(() => (++n < 3 ? Promise.reject(new Error("not yet")) : "ok"), {
        wait: 60_000,
        retryable: (e) => (e as Error).message === "not yet",
      }),
      "ok",
    );
    assert.equal(n, 3);
    await assert.rejects(
      retry(() => {
        throw new TypeError("bad");
      }, { wait: 60_000, retryable: () => false }),
      TypeError,
    );
    let tries = 0;
    await assert.rejects(
      retry(() => {
        tries++;
        throw new Error("never");
      }, { wait: 0, retryable: () => true }),
      /never/,
    );
    assert.equal(tries, 1);
    await assert.rejects(retry(() => 1, { wait: -1, retryable: () => true }), RangeError);
  });
  test("retry stops with the signal's reason", async () => {
    const c = new AbortController();
    const p = retry(() => {
      throw new Error("not yet");
    }, { wait: 60_000, retryable: () => true, signal: c.signal });
    setTimeout(() => c.abort(new Error("stop")), 5);
    await assert.rejects(p, /stop/);
  });
});

describe("Turns", () => {
  test("runs in call order without overlap; a failure reaches its caller only", async () => {
    const turns = new Turns();
    const log: string[] = [];
    let inside = 0;
    const job = (name: string, fail = false) => async () => {
      assert.equal(inside++, 0);
      await delay(1);
      log.push(name);
      inside--;
      if (fail) throw new Error(name);
      return name;
    };
    const all = [turns.run(job("a")), turns.run(job("b", true)), turns.run(job("c"))];
    assert.equal(turns.pending, 3);
    const settled = await Promise.allSettled(all);
    assert.deepEqual(log, ["a", "b", "c"]);
    assert.deepEqual(settled.map((s) => s.status), ["fulfilled", "rejected", "fulfilled"]);
    await turns.idle();
    assert.equal(turns.pending, 0);
  });
});

describe("Turnstile", () => {
  test("a caller that finds it free goes at once; the others go one at a time in arrival order, also after a failure", async () => {
    const gate = new Turnstile();
    const log: string[] = [];
    let inside = 0;
    const job = async (name: string, fail = false) => {
      const wait = gate.enter();
      try {
        if (wait) await wait;
        assert.equal(inside++, 0, `${name} overlapped another caller`);
        await delay(1);
        log.push(name);
        inside--;
        if (fail) throw new Error(name);
      } finally {
        gate.leave();
      }
    };
    assert.equal(gate.enter(), undefined, "a free turnstile makes no promise");
    gate.leave();
    const idleBefore = gate.idle();
    const all = [job("a"), job("b", true), job("c")];
    assert.equal(gate.inside, 3);
    const idle = gate.idle();
    const settled = await Promise.allSettled(all);
    await idleBefore;
    await idle;
    assert.deepEqual(log, ["a", "b", "c"]);
    assert.deepEqual(settled.map((s) => s.status), ["fulfilled", "rejected", "fulfilled"]);
    assert.equal(gate.inside, 0);
  });
});

describe("Turnstile, abortable", () => {
  test("a caller aborted while it waits for its turn leaves at once; the others keep their order; idle() comes", async () => {
    const gate = new Turnstile();
    assert.equal(gate.enter(), undefined);
    const ac = new AbortController();
    const second = gate.enter(ac.signal)!;
    const third = gate.enter()!;
    const early = new AbortController();
    early.abort(new Error("before"));
    await assert.rejects(gate.enter(early.signal)!, /before/, "an aborted signal rejects at once");
    assert.equal(gate.inside, 3);
    ac.abort(new Error("stop"));
    await assert.rejects(second, /stop/);
    assert.equal(gate.inside, 2, "the aborted caller is out");
    let thirdWent = false;
    void third.then(() => (thirdWent = true));
    gate.leave(); // the first leaves: the third goes (the second is gone)
    await third;
    assert.equal(thirdWent, true);
    const idle = gate.idle();
    gate.leave();
    await idle;
    assert.equal(gate.inside, 0);
  });
});

describe("Fifo", () => {
  test("keeps order through many pushes and shifts, remove() and clear()", () => {
    const q = new Fifo<number>();
    for (let i = 0; i < 5000; i++) q.push(i);
    for (let i = 0; i < 3000; i++) assert.equal(q.shift(), i);
    assert.equal(q.length, 2000);
    assert.equal(q.peek(), 3000);
    assert.equal(q.remove(3001), true);
    assert.equal(q.remove(1), false);
    assert.deepEqual([...q].slice(0, 2), [3000, 3002]);
    assert.equal(q.clear().length, 1999);
    assert.equal(q.shift(), undefined);
    assert.equal(q.length, 0);
  });
});

describe("Waiters", () => {
  test("first come first served; fail() rejects all", async () => {
    const w = new Waiters<number>();
    assert.equal(w.wake(1), false);
    const a = w.wait();
    const b = w.wait({ timeout: 60_000 });
    assert.equal(w.length, 2);
    w.wake(1);
    w.wake(2);
    assert.deepEqual(await Promise.all([a, b]), [1, 2]);
    const c = w.wait();
    w.fail(new Error("gone"));
    await assert.rejects(c, /gone/);
  });
  test("a caller that times out or aborts leaves the queue; the value goes to the next one", async () => {
    const w = new Waiters<number>();
    const ctl = new AbortController();
    const gone = w.wait({ signal: ctl.signal });
    const late = w.wait({ timeout: 1 }, () => new TimeoutError("late"));
    const next = w.wait();
    ctl.abort(new Error("aborted"));
    await assert.rejects(gone, /aborted/);
    await assert.rejects(late, TimeoutError);
    assert.equal(w.length, 1);
    w.wake(7);
    assert.equal(await next, 7);
    await assert.rejects(w.wait({ signal: AbortSignal.abort(new Error("already")) }), /already/);
    await assert.rejects(w.wait({ timeout: -1 }), RangeError);
  });
  test("wakeWith() builds the value only for a waiting caller, and rejects that one caller when building fails", async () => {
    const w = new Waiters<string>();
    let built = 0;
    assert.equal(w.wakeWith(() => String(++built)), false);
    assert.equal(built, 0);
    const a = w.wait();
    const b = w.wait();
    assert.equal(
      w.wakeWith(() => {
        throw new Error("cannot build");
      }),
      true,
    );
    assert.equal(w.wakeWith(() => String(++built)), true);
    await assert.rejects(a, /cannot build/);
    assert.equal(await b, "1");
    assert.equal(w.length, 0);
  });
});
