/**
 * The two sides of tests/conformance/sync.ts that run in other threads and processes:
 *
 * - stress scenarios, run the same way by worker threads (on a SharedArrayBuffer) and by processes of each runtime
 *   (in a shared memory segment). Each party runs `run(kind, memory, party, params)` and counts the invariant
 *   violations it sees in a shared word; the caller checks the shared totals.
 * - holders ({@linkcode holder}): a child process that holds a primitive, releases it when told, and holds it again
 *   until it is killed (tests/helpers/sync_child.ts `hold`).
 *
 * Layout of the memory: the primitives at offsets 0 (Mutex, SpinLock, RwLock, Semaphore, Barrier or Event; a second
 * Event at 8) and 64 (a Condition, or a Semaphore), the test's own Int32 words from byte 128 on (see `DATA`), the
 * holder's READY and GO events at bytes 1024 and 1032.
 */
// The primitives' own modules, not mod.ts: every sync child process loads this file.
import type { SharedMemory } from "../../shm/segment.ts";
import { Barrier } from "../../sync/barrier.ts";
import { Condition } from "../../sync/condition.ts";
import { Event } from "../../sync/event.ts";
import { Mutex } from "../../sync/mutex.ts";
import { RwLock } from "../../sync/rwlock.ts";
import { Semaphore } from "../../sync/semaphore.ts";
import { SpinLock } from "../../sync/spinlock.ts";
import type { WaitOptions } from "../../sync/primitive.ts";

export const SIZE = 4096;
/** Index of the first data word (byte 128). */
export const DATA = 32;
/** Data word indexes, relative to DATA. */
export const COUNTER = 0, INSIDE = 1, WRITER_IN = 2, VIOLATIONS = 3, QUEUED = 4, PRODUCED = 5, CONSUMED = 6;
export const SLOTS = 16;

export type Kind =
  | "mutex"
  | "mutex-async"
  | "spinlock"
  | "rwlock"
  | "semaphore"
  | "barrier"
  | "condition"
  | "event"
  | "event-manual";

export interface Params {
  /** Iterations per party. */
  m: number;
  /** Number of parties (barrier, event-manual) or semaphore permits. */
  n: number;
}

/** A few hundred nanoseconds of work between a read and a write, so that unprotected increments would race. */
function work(x: number): number {
  let s = x;
  for (let i = 0; i < 50; i++) s = (s * 31 + i) | 0;
  return s;
}

export async function run(
  kind: Kind,
  memory: SharedMemory | SharedArrayBuffer,
  party: number,
  p: Params,
): Promise<number> {
  const buffer = memory instanceof SharedArrayBuffer ? memory : memory.buffer;
  const d = new Int32Array(buffer, DATA * 4, 64);
  let sink = 0;
  const violation = () => Atomics.add(d, VIOLATIONS, 1);
  switch (kind) {
    case "mutex":
    case "mutex-async": {
      const m = Mutex.in(memory, 0);
      for (let i = 0; i < p.m; i++) {
        if (kind === "mutex-async" || i % 2 === 1) await m.lock();
        else m.lockSync();
        const c = d[COUNTER]!; // plain read and write: only the mutex keeps them apart
        sink += work(c);
        d[COUNTER] = c + 1;
        m.unlock();
      }
      break;
    }
    case "spinlock": {
      const s = SpinLock.in(memory, 0);
      for (let i = 0; i < p.m; i++) {
        if (i % 2 === 1) await s.lock();
        else s.lockSync();
        const c = d[COUNTER]!;
        sink += work(c);
        d[COUNTER] = c + 1;
        s.unlock();
      }
      break;
    }
    case "rwlock": {
      const l = RwLock.in(memory, 0);
      for (let i = 0; i < p.m; i++) {
        if ((i + party) % 4 === 0) {
          using _g = i % 2 === 0 ? l.writeSync() : await l.write();
          if (Atomics.load(d, INSIDE) !== 0 || Atomics.exchange(d, WRITER_IN, 1) !== 0) violation();
          sink += work(i);
          Atomics.store(d, WRITER_IN, 0);
          d[COUNTER] = d[COUNTER]! + 1;
        } else {
          using _g = i % 2 === 0 ? l.readSync() : await l.read();
          Atomics.add(d, INSIDE, 1);
          if (Atomics.load(d, WRITER_IN) !== 0) violation();
          sink += work(i);
          Atomics.sub(d, INSIDE, 1);
        }
      }
      break;
    }
    case "semaphore": {
      const s = Semaphore.in(memory, 0);
      for (let i = 0; i < p.m; i++) {
        using _g = i % 2 === 0 ? s.acquireSync() : await s.acquire();
        if (Atomics.add(d, INSIDE, 1) + 1 > p.n) violation();
        sink += work(i);
        Atomics.sub(d, INSIDE, 1);
      }
      break;
    }
    case "barrier": {
      const b = Barrier.in(memory, 0, p.n);
      const slots = new Int32Array(buffer, (DATA + 16) * 4, SLOTS);
      for (let g = 1; g <= p.m; g++) {
        Atomics.store(slots, party, g);
        if (g % 2 === 0) b.waitSync({ timeout: 120_000 });
        else await b.wait({ timeout: 120_000 });
        // Everyone wrote generation g before anyone passed; nobody has written g + 1 yet.
        for (let j = 0; j < p.n; j++) if (Atomics.load(slots, j) !== g) violation();
        if (g % 2 === 0) await b.wait({ timeout: 120_000 });
        else b.waitSync({ timeout: 120_000 });
      }
      break;
    }
    case "condition": {
      // Even parties produce p.m items each, odd parties consume until all produced items are taken.
      const m = Mutex.in(memory, 0);
      const c = Condition.in(memory, 64);
      const producers = Math.ceil(p.n / 2);
      const total = producers * p.m;
      if (party % 2 === 0) {
        for (let i = 0; i < p.m; i++) {
          await m.lock();
          d[QUEUED] = d[QUEUED]! + 1;
          d[PRODUCED] = d[PRODUCED]! + 1;
          c.notify();
          m.unlock();
          if (i % 7 === 0) await new Promise((r) => setTimeout(r, i % 3));
        }
      } else {
        await m.lock();
        for (;;) {
          if (d[CONSUMED] === total) break;
          if (d[QUEUED]! > 0) {
            d[QUEUED] = d[QUEUED]! - 1;
            d[CONSUMED] = d[CONSUMED]! + 1;
            if (d[CONSUMED] === total) c.notifyAll(); // release the other consumers
            continue;
          }
          // No timeout: a lost wake-up shows up as a hang (the test's own timeout).
          if (party % 4 === 1) await c.wait(m);
          else c.waitSync(m);
        }
        m.unlock();
      }
      break;
    }
    case "event": {
      // An auto-reset Event as a token (the caller set it once): each wait() lets exactly one party through.
      const e = Event.in(memory, 0, { autoReset: true });
      for (let i = 0; i < p.m; i++) {
        if (i % 2 === 1) await e.wait();
        else e.waitSync();
        if (Atomics.add(d, INSIDE, 1) !== 0) violation();
        const c = d[COUNTER]!;
        sink += work(c);
        d[COUNTER] = c + 1;
        Atomics.sub(d, INSIDE, 1);
        e.set();
      }
      break;
    }
    case "event-manual": {
      // Party 0 leads p.m rounds: once the p.n - 1 others arrived (a Semaphore), it resets the other round's
      // manual-reset Event, publishes the round, and sets this round's Event, which lets everyone through and
      // stays set until every party arrived at the next round.
      const events = [Event.in(memory, 0), Event.in(memory, 8)];
      const arrived = Semaphore.in(memory, 64);
      for (let g = 1; g <= p.m; g++) {
        const e = events[g % 2]!;
        if (party === 0) {
          if (g % 2 === 1) await arrived.acquire(p.n - 1);
          else arrived.acquireSync(p.n - 1);
          events[(g + 1) % 2]!.reset();
          Atomics.store(d, COUNTER, g);
          e.set();
        } else {
          arrived.release(1);
          if ((g + party) % 2 === 1) await e.wait();
          else e.waitSync();
          if (Atomics.load(d, COUNTER) < g) violation(); // the round was published before set()
          if (!e.isSet) violation(); // nobody resets it before this party arrived at the next round
        }
      }
      break;
    }
  }
  return sink === 0.5 ? -1 : 0; // keep `sink` alive
}

/** The primitives a holder child can hold. */
export type HoldKind = "mutex" | "spinlock" | "rwlock" | "semaphore" | "event" | "barrier" | "condition";

/** Byte offsets of the holder's READY (manual reset: it holds) and GO (auto reset: go on) events. */
export const READY = 1024, GO = 1032;

/** What a holder does to the primitive at offset 0 (and a Condition's at 64) of `memory`. */
export function holder(kind: HoldKind, memory: SharedMemory | SharedArrayBuffer): {
  hold(): void | Promise<void>;
  release(): void | Promise<void>;
} {
  const long: WaitOptions = { timeout: 120_000 };
  let g: { release(): void } | undefined;
  switch (kind) {
    case "mutex": {
      const m = Mutex.in(memory, 0);
      return { hold: async () => void await m.lock(long), release: () => m.unlock() };
    }
    case "spinlock": {
      const s = SpinLock.in(memory, 0);
      return { hold: () => s.lock(long), release: () => s.unlock() };
    }
    case "rwlock": {
      const l = RwLock.in(memory, 0);
      return { hold: async () => void (g = await l.write(long)), release: () => g!.release() };
    }
    case "semaphore": {
      const s = Semaphore.in(memory, 0); // the parent gave it 1 permit
      return { hold: async () => void (g = await s.acquire(1, long)), release: () => g!.release() };
    }
    case "event": {
      const e = Event.in(memory, 0); // manual reset: clear holds waiters back
      return { hold: () => e.reset(), release: () => e.set() };
    }
    case "barrier": {
      const b = Barrier.in(memory, 0, 2); // the waiter is the other party: it waits until this one arrives
      return { hold: () => {}, release: async () => void await b.wait(long) };
    }
    case "condition": {
      const m = Mutex.in(memory, 0);
      const c = Condition.in(memory, 64);
      return {
        hold: () => {},
        release: async () => {
          using _g = await m.acquire(long);
          c.notifyAll();
        },
      };
    }
  }
}
