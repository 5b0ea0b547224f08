/**
 * `Event`, the thread signal: three worker threads block until the main thread says go. A manual-reset event lets
 * all of them through with one `set()`; then an auto-reset event works as a turnstile: each `set()` lets exactly one
 * worker through. This one file is the main thread and the workers.
 *
 *   node --import tsx examples/event.ts      (or: npx deno run -A / npx bun examples/event.ts)
 *
 * @module
 */
import { Event, runtime, type SyncHandle } from "../mod.ts";

const WORKERS = 3;
const rt = await runtime();
const parent = rt.parentPort();

if (parent !== null) {
  parent.onMessage((message) => {
    const { go, turnstile, id } = message as { go: SyncHandle; turnstile: SyncHandle; id: number };
    parent.postMessage(`worker ${id} waiting`);
    Event.from(go).waitSync({ timeout: 10_000 }); // blocks this thread only
    parent.postMessage(`worker ${id} started`);
    Event.from(turnstile).waitSync({ timeout: 10_000 }); // one pass per set()
    parent.postMessage(`worker ${id} passed the turnstile`);
  });
} else {
  const go = new Event(); // manual reset
  const turnstile = new Event({ autoReset: true });
  const messages: string[] = [];
  const waiters: Array<() => void> = [];
  /** Resolves once `n` messages matching `what` have arrived. */
  const until = (what: string, n: number) =>
    new Promise<void>((resolve) => {
      const check = () => messages.filter((m) => m.endsWith(what)).length >= n && (resolve(), true);
      if (!check()) waiters.push(() => void check());
    });
  const workers = Array.from({ length: WORKERS }, (_, id) => {
    const w = rt.worker(new URL(import.meta.url));
    w.onMessage((m) => {
      messages.push(m as string);
      for (const wake of waiters) wake();
    });
    w.postMessage({ go: go.handle, turnstile: turnstile.handle, id });
    return w;
  });
  try {
    await until("waiting", WORKERS);
    go.set(); // once
    await until("started", WORKERS);
    console.log(`all ${WORKERS} workers started on one set()`);
    const passed = () => messages.filter((m) => m.endsWith("turnstile")).length;
    for (let i = 1; i <= WORKERS; i++) {
      turnstile.set();
      await until("passed the turnstile", i);
      await new Promise((r) => setTimeout(r, 20)); // time enough for a second worker to slip through, if it could
      if (passed() !== i) throw new Error(`Cannot trust the turnstile: ${passed()} through after ${i} set()`);
    }
    console.log(`auto reset: each set() let exactly one worker through (${passed()} of ${WORKERS})`);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
