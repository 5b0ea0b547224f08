/**
 * The sync conformance suite, written once and instantiated over {@linkcode SYNC_PRIMITIVES}, one entry per primitive
 * (tests/sync_conformance.test.ts calls it). Every primitive is exercised
 *
 * - in worker threads of the runtime the suite runs on (the runner runs it on Deno, Bun and Node), on a
 *   SharedArrayBuffer: the stress scenarios of tests/helpers/sync_scenarios.ts, checked by shared invariant counters;
 * - in processes of the three runtimes sharing one segment (a Deno, a Bun and a Node child): the same scenarios,
 *   on one runner of the run (they do not depend on the parent; see tests/helpers/runners.ts);
 * - against a child process of another runtime that holds it (tests/helpers/sync_child.ts `hold`): a wait here times
 *   out, is aborted, passes once the holder releases, and sees what the primitive promises when the holder is
 *   SIGKILLed (a robust Mutex is taken over; everything else keeps waiting until its timeout, no hang).
 *
 * Nothing here measures time: waits have generous timeouts, and the short ones (a timeout that must fire) only
 * check that they fire. Adding a primitive is one entry in the list (and its scenario or holder in
 * sync_scenarios.ts).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import {
  Barrier,
  Condition,
  Event,
  Mutex,
  RwLock,
  Semaphore,
  SharedMemory,
  SpinLock,
  TimeoutError,
  type WaitOptions,
} from "../../mod.ts";
import type { ChildProcess, RuntimeName } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";
import { RUNTIMES, type WorkerHandle } from "../../runtimes/runtime.ts";
import { takesSharedChecks } from "../helpers/runners.ts";
import { stopChild } from "./fixtures.ts";
import {
  CONSUMED,
  COUNTER,
  DATA,
  GO,
  type HoldKind,
  type Kind,
  type Params,
  PRODUCED,
  READY,
  SIZE,
  VIOLATIONS,
} from "../helpers/sync_scenarios.ts";

const LONG = { timeout: 240_000 };
const CHILD = new URL("../helpers/sync_child.ts", import.meta.url);
const WORKER = new URL("../helpers/sync_worker.ts", import.meta.url);
const ROOT = new URL("../../", import.meta.url);
const shmName = () => `/ipckit-test-sync-${Math.random().toString(36).slice(2, 12)}`;

/** The data words a scenario left, from byte 128 (see sync_scenarios.ts). */
type Data = Int32Array;

/** A stress scenario and what its shared words must say afterwards. */
export interface Stress {
  kind: Kind;
  /** What the test proves, in its name. */
  says: string;
  /** In worker threads: how many, and the scenario's parameters. */
  threads: { parties: number; params: Params };
  /** In a Deno, a Bun and a Node process (three parties). */
  processes: Params;
  /** Sets the primitive up before the parties start (a count, a set Event). */
  init?(memory: SharedMemory | SharedArrayBuffer, params: Params): void;
  check(d: Data, parties: number, params: Params): void;
}

/** How a waiter here meets a child process that holds the primitive (tests/helpers/sync_child.ts `hold`). */
export interface Held {
  kind: HoldKind;
  /** Sets the primitive up before the holder starts. */
  prepare?(shm: SharedMemory): void;
  /** One wait of this process, undone at once when it passes; resolves true when it passed, false when it timed
   * out without rejecting (a Condition). */
  wait(shm: SharedMemory, options: WaitOptions): Promise<boolean>;
  /** Repairs what a wait that gave up left (a broken Barrier). */
  afterGiveUp?(shm: SharedMemory): void;
  /** Checks what a waiter sees when the holder dies; `kill` SIGKILLs it and resolves once it is gone. */
  orphaned(shm: SharedMemory, kill: () => Promise<void>): Promise<void>;
  /** Child runtimes to hold it (default: one, rotating through RUNTIMES by the entry's place in the list). */
  holders?: readonly RuntimeName[];
}

/** One primitive of the suite. */
export interface SyncSubject {
  name: string;
  stress: Stress[];
  held: Held;
}

/** What a waiter of a non-robust primitive sees when the holder dies: its timeout, not a hang. */
function waitsOut(wait: Held["wait"]): Held["orphaned"] {
  return async (shm, kill) => {
    const waiting = wait(shm, { timeout: 300 });
    await kill();
    await assert.rejects(waiting, TimeoutError);
  };
}

const noViolation = (d: Data) => assert.equal(d[VIOLATIONS], 0);

const mutexWait: Held["wait"] = async (shm, options) => {
  const m = Mutex.in(shm, 0);
  await m.lock(options);
  m.unlock();
  return true;
};

const spinWait: Held["wait"] = async (shm, options) => {
  const s = SpinLock.in(shm, 0);
  await s.lock(options);
  s.unlock();
  return true;
};

const readWait: Held["wait"] = async (shm, options) => {
  (await RwLock.in(shm, 0).read(options)).release();
  return true;
};

const permitWait: Held["wait"] = async (shm, options) => {
  (await Semaphore.in(shm, 0).acquire(1, options)).release();
  return true;
};

const eventWait: Held["wait"] = async (shm, options) => {
  await Event.in(shm, 0).wait(options);
  return true;
};

const barrierWait: Held["wait"] = async (shm, options) => {
  await Barrier.in(shm, 0, 2).wait(options);
  return true;
};

// Locks and starts waiting before it returns (nothing awaited before c.wait() read the sequence), so that a notify
// the test asks for right after the call cannot come first.
const conditionWait: Held["wait"] = async (shm, options) => {
  const m = Mutex.in(shm, 0);
  assert.equal(m.tryLock(), true, "the holder does not hold the mutex between notifies");
  try {
    return await Condition.in(shm, 64).wait(m, options);
  } finally {
    m.unlock();
  }
};

/** Every primitive, with its scenarios and how it is held. */
export const SYNC_PRIMITIVES: SyncSubject[] = [
  {
    name: "Mutex",
    stress: ["mutex", "mutex-async"].map((kind) => ({
      kind: kind as Kind,
      says: "unprotected increments under the lock are all counted",
      threads: { parties: 4, params: { m: 2000, n: 4 } },
      processes: { m: 2000, n: 3 },
      check: (d, parties, p) => assert.equal(d[COUNTER], parties * p.m),
    })),
    held: {
      kind: "mutex",
      wait: mutexWait,
      holders: RUNTIMES,
      // Robust: a waiter takes the lock over, is told the owner died, and so is every locker until markConsistent().
      async orphaned(shm, kill) {
        const mutex = Mutex.in(shm, 0);
        assert.equal(mutex.tryLock(), false);
        const waiting = mutex.lock({ timeout: 60_000 });
        await kill();
        assert.equal(await waiting, true, "the owner died");
        assert.equal(mutex.ownerDied, true);
        mutex.unlock();
        assert.equal(await mutex.lock(), true, "still inconsistent until markConsistent()");
        mutex.markConsistent();
        mutex.unlock();
        assert.equal(await mutex.lock(), false);
        mutex.unlock();
      },
    },
  },
  {
    name: "SpinLock",
    stress: [{
      kind: "spinlock",
      says: "unprotected increments under the lock are all counted",
      threads: { parties: 4, params: { m: 2000, n: 4 } },
      processes: { m: 2000, n: 3 },
      check: (d, parties, p) => assert.equal(d[COUNTER], parties * p.m),
    }],
    held: { kind: "spinlock", wait: spinWait, orphaned: waitsOut(spinWait) },
  },
  {
    name: "RwLock",
    stress: [{
      kind: "rwlock",
      says: "writers are never beside a reader or another writer",
      threads: { parties: 4, params: { m: 2000, n: 4 } },
      processes: { m: 1000, n: 3 },
      check: (d, parties, p) => {
        noViolation(d);
        // Party k writes on iterations i with (i + k) % 4 === 0.
        let writes = 0;
        for (let k = 0; k < parties; k++) for (let i = 0; i < p.m; i++) if ((i + k) % 4 === 0) writes++;
        assert.equal(d[COUNTER], writes);
      },
    }],
    held: { kind: "rwlock", wait: readWait, orphaned: waitsOut(readWait) },
  },
  {
    name: "Semaphore",
    stress: [{
      kind: "semaphore",
      says: "never more holders inside than permits",
      threads: { parties: 4, params: { m: 2000, n: 2 } },
      processes: { m: 1000, n: 1 },
      init: (memory, p) => void Semaphore.in(memory, 0, { initial: p.n }),
      check: noViolation,
    }],
    held: {
      kind: "semaphore",
      prepare: (shm) => void Semaphore.in(shm, 0, { initial: 1 }),
      wait: permitWait,
      orphaned: waitsOut(permitWait),
    },
  },
  {
    name: "Event",
    stress: [{
      kind: "event",
      says: "auto reset lets exactly one waiter through per set()",
      threads: { parties: 4, params: { m: 1000, n: 4 } },
      processes: { m: 500, n: 3 },
      init: (memory) => Event.in(memory, 0, { autoReset: true }).set(),
      check: (d, parties, p) => {
        noViolation(d);
        assert.equal(d[COUNTER], parties * p.m);
      },
    }, {
      kind: "event-manual",
      says: "manual reset lets every waiter through and stays set until reset()",
      threads: { parties: 4, params: { m: 300, n: 4 } },
      processes: { m: 100, n: 3 },
      check: (d, _parties, p) => {
        noViolation(d);
        assert.equal(d[COUNTER], p.m);
      },
    }],
    held: { kind: "event", wait: eventWait, orphaned: waitsOut(eventWait) },
  },
  {
    name: "Barrier",
    stress: [{
      kind: "barrier",
      says: "generations never mix",
      threads: { parties: 4, params: { m: 300, n: 4 } },
      processes: { m: 100, n: 3 },
      check: noViolation,
    }],
    held: {
      kind: "barrier",
      wait: barrierWait,
      afterGiveUp: (shm) => Barrier.in(shm, 0, 2).reset(),
      orphaned: waitsOut(barrierWait),
    },
  },
  {
    name: "Condition",
    stress: [{
      kind: "condition",
      says: "producers and consumers with random pauses lose no wake-up",
      threads: { parties: 4, params: { m: 500, n: 4 } },
      processes: { m: 300, n: 3 },
      check: (d, _parties, p) => {
        const produced = Math.ceil(p.n / 2) * p.m; // even parties produce
        assert.equal(d[PRODUCED], produced);
        assert.equal(d[CONSUMED], produced);
      },
    }],
    held: {
      kind: "condition",
      wait: conditionWait,
      async orphaned(shm, kill) {
        const waiting = conditionWait(shm, { timeout: 300 });
        await kill();
        assert.equal(await waiting, false, "nobody notified: the wait ran out");
      },
    },
  },
];

/** A worker thread of the stress scenarios, kept for the whole file: the current scenario's replies go to `settle`. */
interface Thread {
  handle: WorkerHandle;
  settle?: ((error?: unknown) => void) | undefined;
}

// Worker threads are started once per file and reused by every stress scenario (a Node worker thread costs about half
// a second of CPU to start: it loads the TypeScript loader and the library). A thread whose scenario failed or never
// answered is not reused; every thread is stopped when the file ends.
const threads = new Set<Thread>();
const idle: Thread[] = [];
after(async () => {
  await Promise.all([...threads].map((t) => t.handle.terminate()));
  threads.clear();
  idle.length = 0;
});

async function borrow(n: number): Promise<Thread[]> {
  const rt = await runtime();
  const got = idle.splice(0, n);
  while (got.length < n) {
    const t: Thread = { handle: rt.worker(WORKER) };
    t.handle.onMessage((m) => {
      const r = m as { ok?: number; error?: string };
      t.settle?.(r.error === undefined ? undefined : new Error(r.error));
    });
    t.handle.onError((e) => t.settle?.(e ?? new Error("the worker thread failed")));
    t.handle.onExit((code) => t.settle?.(new Error(`the worker thread exited with ${code}`)));
    threads.add(t);
    got.push(t);
  }
  return got;
}

/** Runs `kind` in `parties` workers on one SharedArrayBuffer; returns the data words. */
async function inWorkers(s: Stress): Promise<Data> {
  const sab = new SharedArrayBuffer(SIZE);
  s.init?.(sab, s.threads.params);
  const { parties, params } = s.threads;
  const workers = await borrow(parties);
  let failed = true;
  try {
    await Promise.all(workers.map((t, party) =>
      new Promise<void>((resolve, reject) => {
        t.settle = (e) => {
          t.settle = undefined;
          if (e === undefined) resolve();
          else reject(e);
        };
        t.handle.postMessage({ kind: s.kind, sab, party, params });
      })
    ));
    failed = false;
  } finally {
    if (failed) {
      for (const t of workers) threads.delete(t);
      await Promise.all(workers.map((t) => t.handle.terminate()));
    } else {
      idle.push(...workers);
    }
  }
  return new Int32Array(sab, DATA * 4, 64);
}

/** Runs `kind` in one child per runtime (deno, bun, node) sharing a segment; returns the data words (a copy). */
async function inProcesses(s: Stress): Promise<Data> {
  const rt = await runtime();
  const name = shmName();
  const shm = await SharedMemory.create(name, { size: SIZE });
  const children: ChildProcess[] = [];
  try {
    s.init?.(shm, s.processes);
    const { m, n } = s.processes;
    for (const [party, r] of RUNTIMES.entries()) {
      const argv = [...runtimeArgv(r, rt.fromFileUrl(CHILD)), "run", s.kind, name, String(party), `${m}`, `${n}`];
      children.push(rt.spawn(argv, { cwd: rt.fromFileUrl(ROOT), stdio: "null" }));
    }
    // A party that fails ends the others at once: they would wait for it until the test's timeout.
    const codes = await Promise.all(children.map((c) =>
      c.exited.then((status) => {
        if (status.code !== 0) { for (const other of children) other.kill("SIGKILL"); }
        return status;
      })
    ));
    assert.deepEqual(codes.map((c) => c.code), [0, 0, 0], `children exited ${JSON.stringify(codes)}`);
    return new Int32Array(shm.buffer, DATA * 4, 64).slice();
  } finally {
    for (const c of children) c.kill("SIGKILL");
    for (const c of children) await stopChild(c);
    shm.close();
    await SharedMemory.unlink(name);
  }
}

/** Waits for `event` while the child lives (a child that exits first fails the test). */
async function whileAlive(event: Event, child: { exited: Promise<unknown> }, what: string): Promise<void> {
  let live = true;
  const exited = child.exited.then((s) => {
    if (live) throw new Error(`the holder exited before it ${what} (${JSON.stringify(s)})`);
  });
  try {
    await Promise.race([event.wait({ timeout: 60_000 }), exited]);
  } finally {
    live = false;
  }
}

async function heldByChild(h: Held, holder: RuntimeName): Promise<void> {
  const rt = await runtime();
  const name = shmName();
  const shm = await SharedMemory.create(name, { size: SIZE });
  const ready = Event.in(shm, READY);
  const go = Event.in(shm, GO, { autoReset: true });
  h.prepare?.(shm);
  const child = rt.spawn([...runtimeArgv(holder, rt.fromFileUrl(CHILD)), "hold", h.kind, name], {
    cwd: rt.fromFileUrl(ROOT),
    stdio: "null",
  });
  try {
    await whileAlive(ready, child, "held it");
    ready.reset();
    // Held: a wait gives up at its timeout (a Condition resolves false, everything else rejects).
    const timedOut = await h.wait(shm, { timeout: 30 }).catch((e) => {
      assert.ok(e instanceof TimeoutError, `${e}`);
      return false;
    });
    assert.equal(timedOut, false);
    h.afterGiveUp?.(shm);
    // An abort while waiting rejects with the signal's reason.
    const ac = new AbortController();
    const aborted = h.wait(shm, { signal: ac.signal, timeout: 60_000 });
    ac.abort();
    await assert.rejects(aborted, (e: Error) => e.name === "AbortError");
    h.afterGiveUp?.(shm);
    // Released by the holder: a waiter passes.
    const passing = h.wait(shm, { timeout: 60_000 });
    go.set();
    assert.equal(await passing, true);
    // Held again, then the holder dies.
    go.set();
    await whileAlive(ready, child, "held it again");
    await h.orphaned(shm, async () => {
      child.kill("SIGKILL");
      await child.exited;
    });
  } finally {
    child.kill("SIGKILL");
    await stopChild(child);
    shm.close();
    await SharedMemory.unlink(name);
  }
}

/** Registers the suite's tests for `subject` (the `index`-th of the list: it picks the holders' runtimes). */
export function syncConformance(subject: SyncSubject, index: number): void {
  for (const s of subject.stress) {
    test(`${subject.name} (${s.kind}) in ${s.threads.parties} worker threads: ${s.says}`, LONG, async () => {
      s.check(await inWorkers(s), s.threads.parties, s.threads.params);
    });
    // Its parties are a Deno, a Bun and a Node child whatever runs the file: one runner of the run takes it.
    if (takesSharedChecks()) {
      test(
        `${subject.name} (${s.kind}) in a segment, in a Deno, a Bun and a Node process: ${s.says}`,
        LONG,
        async () => {
          s.check(await inProcesses(s), 3, s.processes);
        },
      );
    }
  }
  for (const holder of subject.held.holders ?? [RUNTIMES[index % RUNTIMES.length]!]) {
    test(
      `${subject.name} held by a ${holder} process: a wait here times out, aborts, passes on release, and survives the holder's death`,
      LONG,
      () => heldByChild(subject.held, holder),
    );
  }
}
