import { test } from "node:test";
import assert from "node:assert/strict";
import { NotFoundError, pipe, runtime, runtimeArgv, signals, TimeoutError } from "../mod.ts";
import type { ChildProcess, SignalName } from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";

// Never let a signal reach this process (the test runner) without a handler: most default actions end it.
const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("../", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/signals_child.ts", import.meta.url));
const text = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function reap(child: ChildProcess): Promise<void> {
  child.kill("SIGKILL");
  await child.exited.catch(() => {});
}

/** Runs `fn` with no-op handlers installed for `names`, so a late or stray signal cannot kill the runner. */
async function guarded(names: SignalName[], fn: () => Promise<void>): Promise<void> {
  const handles = await Promise.all(names.map((n) => signals.on(n, () => {})));
  try {
    await fn();
  } finally {
    for (const h of handles) h[Symbol.dispose]();
  }
}

test("signals.send() validates the pid and the signal name", async () => {
  await assert.rejects(signals.send(0, "SIGUSR2"), RangeError);
  await assert.rejects(signals.send(-1, "SIGUSR2"), RangeError);
  await assert.rejects(signals.send(1.5, "SIGUSR2"), RangeError);
  await assert.rejects(signals.send("1" as unknown as number, "SIGUSR2"), TypeError);
  await assert.rejects(signals.send(rt.pid, "SIGUSR1" as SignalName), /SIGUSR1.*inspector/);
  await assert.rejects(signals.send(rt.pid, "SIGUSR1" as SignalName), RangeError);
  await assert.rejects(signals.send(rt.pid, "SIGNOPE" as SignalName), RangeError);
  await assert.rejects(signals.send(rt.pid, 10 as unknown as SignalName), TypeError);
  await assert.rejects(signals.on("SIGKILL", () => {}), RangeError);
  await assert.rejects(signals.on("SIGUSR1" as SignalName, () => {}), RangeError);
  await assert.rejects(signals.on("SIGUSR2", "x" as unknown as () => void), TypeError);
  await assert.rejects(signals.wait("SIGSTOP"), RangeError);
  await assert.rejects(signals.wait("SIGUSR2", { timeout: -1 }), RangeError);
});

test("signals.send() to a process that does not exist rejects with NotFoundError", async () => {
  const gone = rt.spawn(["true"], { stdio: "null" });
  await gone.exited;
  await assert.rejects(signals.send(gone.pid, "SIGUSR2"), NotFoundError);
});

test("signals.on(): several handlers run in registration order; disposing one keeps the others", async () => {
  const order: string[] = [];
  const a = await signals.on("SIGUSR2", () => order.push("a"));
  const fn = (s: SignalName) => void order.push(`b:${s}`);
  const b1 = await signals.on("SIGUSR2", fn);
  const b2 = await signals.on("SIGUSR2", fn); // the same function twice: two registrations
  const c = await signals.on("SIGUSR2", () => order.push("c"));
  try {
    const got = signals.wait("SIGUSR2", { timeout: 10_000 });
    await signals.send(rt.pid, "SIGUSR2");
    await got;
    assert.deepEqual(order, ["a", "b:SIGUSR2", "b:SIGUSR2", "c"]);
    order.length = 0;
    b1[Symbol.dispose]();
    b1[Symbol.dispose](); // idempotent
    const again = signals.wait("SIGUSR2", { timeout: 10_000 });
    await signals.send(rt.pid, "SIGUSR2");
    await again;
    assert.deepEqual(order, ["a", "b:SIGUSR2", "c"]);
  } finally {
    for (const h of [a, b1, b2, c]) h[Symbol.dispose]();
  }
});

test("signals.wait() rejects with TimeoutError after timeout and with the abort reason when aborted", async () => {
  await guarded(["SIGUSR2"], async () => {
    const t0 = Date.now();
    await assert.rejects(signals.wait("SIGUSR2", { timeout: 50 }), TimeoutError);
    assert.ok(Date.now() - t0 >= 45);
    const ac = new AbortController();
    const pending = signals.wait("SIGUSR2", { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(pending, (e: Error) => e.name === "AbortError");
    await assert.rejects(
      signals.wait("SIGUSR2", { signal: AbortSignal.abort() }),
      (e: Error) => e.name === "AbortError",
    );
    const reason = new Error("stop");
    await assert.rejects(signals.wait("SIGUSR2", { signal: AbortSignal.abort(reason) }), (e) => e === reason);
  });
});

test("signals coalesce but never drop the last one: 20 quick sends run the handler 1 to 20 times", async () => {
  let n = 0;
  using _h = await signals.on("SIGUSR2", () => void n++);
  const first = signals.wait("SIGUSR2", { timeout: 10_000 });
  for (let i = 0; i < 20; i++) await signals.send(rt.pid, "SIGUSR2");
  await first;
  await sleep(100); // let any further deliveries run
  assert.ok(n >= 1 && n <= 20, `ran ${n} times`);
});

for (const peer of RUNTIMES) {
  test(`a ${peer} child sends SIGUSR2 and SIGHUP to this ${rt.name} process, whose signals.wait() resolves`, {
    timeout: 120_000,
  }, async () => {
    await guarded(["SIGUSR2", "SIGHUP"], async () => {
      const usr2 = signals.wait("SIGUSR2", { timeout: 60_000 });
      const hup = signals.wait("SIGHUP", { timeout: 60_000 });
      await sleep(10); // both waits have their handlers installed
      const child = rt.spawn([...runtimeArgv(peer, CHILD), "send", String(rt.pid), "SIGUSR2", "SIGHUP"], {
        cwd: ROOT,
        stdio: "null",
      });
      try {
        assert.deepEqual(await Promise.all([usr2, hup]), ["SIGUSR2", "SIGHUP"]);
        assert.deepEqual(await child.exited, { code: 0, signal: null });
      } finally {
        await reap(child);
      }
    });
  });

  test(`this process signals a ${peer} child; its signals.on() handlers run in order and report back`, {
    timeout: 120_000,
  }, async () => {
    const { channel, child } = await pipe.spawn([...runtimeArgv(peer, CHILD), "handle"], { cwd: ROOT });
    try {
      assert.equal(text.decode(await channel.receive({ timeout: 60_000 })), "ready");
      await signals.send(child.pid, "SIGUSR2");
      assert.equal(text.decode(await channel.receive({ timeout: 30_000 })), "SIGUSR2 1,2");
      await signals.send(child.pid, "SIGHUP");
      assert.equal(text.decode(await channel.receive({ timeout: 30_000 })), "SIGHUP");
      assert.deepEqual(await child.exited, { code: 0, signal: null });
    } finally {
      await channel.close();
      await reap(child);
    }
  });

  test(`a ${peer} child whose handler was disposed and whose wait() timed out dies of SIGUSR2`, {
    timeout: 120_000,
  }, async () => {
    const { channel, child } = await pipe.spawn([...runtimeArgv(peer, CHILD), "dispose"], { cwd: ROOT });
    try {
      assert.equal(text.decode(await channel.receive({ timeout: 60_000 })), "ready");
      await signals.send(child.pid, "SIGUSR2");
      assert.equal((await child.exited).signal, "SIGUSR2");
    } finally {
      await channel.close();
      await reap(child);
    }
  });
}

test("a Python peer's os.kill(pid, SIGUSR2) resolves signals.wait()", { timeout: 60_000 }, async () => {
  await guarded(["SIGUSR2"], async () => {
    const got = signals.wait("SIGUSR2", { timeout: 30_000 });
    await sleep(10);
    const py = rt.spawn(
      ["python3", "-c", "import os, signal, sys; os.kill(int(sys.argv[1]), signal.SIGUSR2)", String(rt.pid)],
      { stdio: "null" },
    );
    try {
      assert.equal(await got, "SIGUSR2");
      assert.equal((await py.exited).code, 0);
    } finally {
      await reap(py);
    }
  });
});
