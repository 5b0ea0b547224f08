/**
 * Producers and a consumer between worker threads: a bounded queue of 4 slots on a SharedArrayBuffer, guarded by a
 * `Mutex`, with two `Condition`s ("not full", "not empty"). Two worker threads each produce 10 jobs; the main thread
 * consumes all 20 and checks that each producer's jobs arrived in order. This one file is the main thread and the
 * workers (`runtime().parentPort()` tells which).
 *
 *   node --import tsx examples/condition.ts      (or: npx deno run -A / npx bun examples/condition.ts)
 *
 * @module
 */
import { Condition, Mutex, runtime, type SyncHandle } from "../mod.ts";

const SLOTS = 4;
const PER_PRODUCER = 10;
const PRODUCERS = 2;

interface Shared {
  lock: SyncHandle;
  notFull: SyncHandle;
  notEmpty: SyncHandle;
  /** [head, count, slot 0..SLOTS-1] */
  memory: SharedArrayBuffer;
}

/** The queue over the shared words: head index, item count, then the slots. */
function queue(s: Shared) {
  const lock = Mutex.from(s.lock);
  const notFull = Condition.from(s.notFull);
  const notEmpty = Condition.from(s.notEmpty);
  const words = new Int32Array(s.memory);
  return {
    /** Blocking put, for worker threads. */
    putSync(item: number): void {
      lock.lockSync();
      while (words[1] === SLOTS) notFull.waitSync(lock, { timeout: 10_000 });
      words[2 + ((words[0]! + words[1]!) % SLOTS)] = item;
      words[1]! += 1;
      notEmpty.notify();
      lock.unlock();
    },
    /** Waiting take that never blocks the event loop, for the main thread. */
    async take(): Promise<number> {
      await lock.lock({ timeout: 10_000 });
      try {
        if (!(await notEmpty.waitFor(lock, () => words[1]! > 0, { timeout: 10_000 }))) {
          throw new Error("Cannot take a job: none came within 10 s");
        }
        const item = words[2 + words[0]!]!;
        words[0] = (words[0]! + 1) % SLOTS;
        words[1]! -= 1;
        notFull.notify();
        return item;
      } finally {
        lock.unlock();
      }
    },
  };
}

const rt = await runtime();
const parent = rt.parentPort();

if (parent !== null) {
  // A producer thread: jobs numbered producer * 100 + i.
  parent.onMessage((message) => {
    const { shared, producer } = message as { shared: Shared; producer: number };
    const q = queue(shared);
    for (let i = 1; i <= PER_PRODUCER; i++) q.putSync(producer * 100 + i);
    parent.postMessage("done");
  });
} else {
  const shared: Shared = {
    lock: new Mutex().handle!,
    notFull: new Condition().handle!,
    notEmpty: new Condition().handle!,
    memory: new SharedArrayBuffer(4 * (2 + SLOTS)),
  };
  const q = queue(shared);
  const workers = Array.from({ length: PRODUCERS }, (_, i) => {
    const w = rt.worker(new URL(import.meta.url));
    w.postMessage({ shared, producer: i + 1 });
    return w;
  });
  try {
    const last = new Map<number, number>();
    for (let n = 0; n < PRODUCERS * PER_PRODUCER; n++) {
      const job = await q.take();
      const producer = Math.floor(job / 100);
      if ((last.get(producer) ?? producer * 100) !== job - 1) throw new Error(`Cannot trust the order: job ${job}`);
      last.set(producer, job);
    }
    console.log(`consumed ${PRODUCERS * PER_PRODUCER} jobs from ${PRODUCERS} producers, in order per producer`);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
