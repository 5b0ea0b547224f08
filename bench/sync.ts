/**
 * The sync primitives' costs, next to their floors, in one run:
 *
 * 1. Uncontended lock + unlock, in ns: `Mutex` (`tryLock`/`lockSync` + `unlock`) and `SpinLock`, on a
 *    SharedArrayBuffer and in a shared memory segment, next to a bare `Atomics.compareExchange` + `Atomics.store`
 *    pair (the floor for any JS lock).
 * 2. Contended hand-off round trip, in us: two sides take turns through a `Mutex` and a `Condition` (take the lock,
 *    wait for your turn, hand it over, notify), between this thread and a worker (SharedArrayBuffer,
 *    Atomics.wait/notify underneath) and between this process and a child on `--runtime` (segment, futex). Compare
 *    with PERF.md's Atomics.wait/notify and futex round trips (C: 4.1 and 4.7 us pinned).
 *
 * Medians of `--reps` repetitions. Pin to one CPU to see software costs (`taskset -c 0`); unpinned, each hand-off
 * pays this VM's ~43 us cross-CPU wake-up (PERF.md). Figures, not pass/fail.
 *
 *   node --import tsx bench/sync.ts [--runtime deno|bun|node] [--reps 5]
 *   npx deno run -A bench/sync.ts --runtime bun
 *
 * @module
 */
import { Condition, Mutex, runtime, runtimeArgv, type RuntimeName, SharedMemory, SpinLock } from "../mod.ts";
import { guard, median, reap, ROOT, table } from "../cli/peers/launch.ts";
import { READY, STOP, TURN } from "./peers/sync_peer.ts";
import { flags } from "./args.ts";

const rt = await runtime();
const args = rt.args();
const { opt } = flags(args);
const peer = opt("--runtime", rt.name) as RuntimeName;
const REPS = Number(opt("--reps", "5"));
const N = 2_000_000;
const HANDOFFS = 5_000;
const PEER = rt.fromFileUrl(new URL("./peers/sync_peer.ts", import.meta.url));

function nsPer(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return ((performance.now() - t0) * 1e6) / N;
}

function uncontended(memory: SharedArrayBuffer | SharedMemory) {
  const m = Mutex.in(memory, 0);
  const s = SpinLock.in(memory, 64);
  const words = new Int32Array(memory instanceof SharedArrayBuffer ? memory : memory.buffer);
  return {
    atomics: () =>
      nsPer(() => {
        for (let i = 0; i < N; i++) {
          Atomics.compareExchange(words, 40, 0, 1);
          Atomics.store(words, 40, 0);
        }
      }),
    tryLock: () =>
      nsPer(() => {
        for (let i = 0; i < N; i++) {
          m.tryLock();
          m.unlock();
        }
      }),
    lockSync: () =>
      nsPer(() => {
        for (let i = 0; i < N; i++) {
          m.lockSync();
          m.unlock();
        }
      }),
    spin: () =>
      nsPer(() => {
        for (let i = 0; i < N; i++) {
          s.lockSync();
          s.unlock();
        }
      }),
  };
}

/** Round trips of the turn between this side and the peer; us per round trip. */
function handOff(memory: SharedArrayBuffer | SharedMemory): number {
  const words = new Int32Array(memory instanceof SharedArrayBuffer ? memory : memory.buffer);
  const m = Mutex.in(memory, 0);
  const c = Condition.in(memory, 64);
  const t0 = performance.now();
  m.lockSync();
  for (let i = 0; i < HANDOFFS; i++) {
    Atomics.store(words, TURN, 1);
    c.notify();
    while (Atomics.load(words, TURN) !== 0) c.waitSync(m);
  }
  m.unlock();
  return ((performance.now() - t0) * 1000) / HANDOFFS;
}

async function waitReady(words: Int32Array): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (Atomics.load(words, READY) !== 1) {
    if (Date.now() > deadline) throw new Error("the peer did not start");
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sab = new SharedArrayBuffer(4096);
const name = `/ipckit-bench-sync-${rt.pid}`;
const seg = await SharedMemory.create(name, { size: 4096 });
try {
  const results: Record<string, number[]> = {};
  const add = (k: string, v: number) => (results[k] ??= []).push(v);
  const onSab = uncontended(sab);
  const onSeg = uncontended(seg);
  for (let r = 0; r < REPS; r++) {
    add("atomics sab", onSab.atomics());
    add("tryLock sab", onSab.tryLock());
    add("lockSync sab", onSab.lockSync());
    add("spin sab", onSab.spin());
    add("atomics seg", onSeg.atomics());
    add("tryLock seg", onSeg.tryLock());
    add("lockSync seg", onSeg.lockSync());
    add("spin seg", onSeg.spin());
  }

  // Hand-off between threads.
  const threadWords = new Int32Array(sab);
  const worker = rt.worker(new URL("./peers/sync_peer.ts", import.meta.url));
  try {
    worker.postMessage(sab);
    await waitReady(threadWords);
    handOff(sab); // warm-up
    for (let r = 0; r < REPS; r++) add("threads", handOff(sab));
  } finally {
    Atomics.store(threadWords, STOP, 1);
    Condition.in(sab, 64).notifyAll();
    await worker.terminate();
  }

  // Hand-off between processes.
  const segWords = new Int32Array(seg.buffer);
  const child = rt.spawn([...runtimeArgv(peer, PEER), name], { cwd: ROOT, stdio: "null" });
  try {
    await guard(child, waitReady(segWords), `sync peer on ${peer}`);
    handOff(seg);
    for (let r = 0; r < REPS; r++) add("processes", handOff(seg));
  } finally {
    Atomics.store(segWords, STOP, 1);
    Condition.in(seg, 64).notifyAll();
    await reap(child, `sync peer on ${peer}`);
  }

  const f = (k: string, digits = 1) => median(results[k]!).toFixed(digits);
  console.log(`${rt.name}, medians of ${REPS} repetitions\n`);
  console.log(table([
    ["uncontended lock + unlock (ns)", "SharedArrayBuffer", "segment"],
    ["Atomics CAS + store (floor)", f("atomics sab"), f("atomics seg")],
    ["Mutex tryLock + unlock", f("tryLock sab"), f("tryLock seg")],
    ["Mutex lockSync + unlock", f("lockSync sab"), f("lockSync seg")],
    ["SpinLock lockSync + unlock", f("spin sab"), f("spin seg")],
  ]));
  console.log();
  console.log(table([
    ["Mutex + Condition hand-off round trip (us)", "median"],
    [`two threads (${rt.name})`, f("threads")],
    [`two processes (${rt.name} -> ${peer})`, f("processes")],
  ]));
} finally {
  seg.close();
  await SharedMemory.unlink(name);
}
