/**
 * The sleep and wake-up protocol of a shm ring with plain publication (`shm/ring.ts`, `os/fence.ts`), checked on a
 * model of x86-64's memory (TSO: each CPU's stores wait in a FIFO store buffer, its loads see its own buffered
 * stores first, an atomic read-modify-write or `Atomics.store` drains the buffer) by trying every interleaving of
 * one publication against one consumer going to sleep. No interleaving may leave the consumer asleep with the
 * record published and nobody to wake it (a lost wake-up). The same search without the consumer's fence finds one:
 * the fence is what makes plain stores safe.
 */
import { test } from "node:test";
import assert from "node:assert/strict";

type Word = "commit" | "sleeping" | "plain";
interface State {
  mem: Record<Word, number>;
  /** The producer's store buffer (oldest first). */
  buffer: [Word, number][];
  p: number; // the producer's next step
  c: number; // the consumer's next step
  seen: { sleeping: number; plain: number; commit: number };
  woken: boolean;
  asleep: boolean;
}

/**
 * How the producer publishes: `plain` (plain mode on before), `switchOn` (turns it on with an atomic store, then
 * publishes plainly), `atomic` (plain mode off). The consumer fences (membarrier: every buffered store of the
 * producer reaches memory) when `fence` and it read `plain` as 1.
 */
function search(mode: "plain" | "switchOn" | "atomic", fence: boolean): { lost: number; runs: number } {
  const load = (s: State, w: Word) => {
    for (let i = s.buffer.length - 1; i >= 0; i--) if (s.buffer[i]![0] === w) return s.buffer[i]![1];
    return s.mem[w];
  };
  const drain = (s: State) => {
    for (const [w, v] of s.buffer) s.mem[w] = v;
    s.buffer = [];
  };
  // The producer's steps: each returns false when it cannot run yet.
  const producer: ((s: State) => void)[] = [
    (s) => {
      if (mode === "switchOn") (s.buffer.push(["plain", 1]), drain(s)); // Atomics.store: drains
    },
    (s) => {
      if (mode === "atomic") (s.buffer.push(["commit", 1]), drain(s));
      else s.buffer.push(["commit", 1]); // the plain store waits in the buffer
    },
    (s) => {
      s.seen.sleeping = load(s, "sleeping"); // takeConsumerSleeping's Atomics.load (a plain load on x86-64)
    },
    (s) => {
      if (s.seen.sleeping === 1) {
        drain(s); // compareExchange (and turning plain mode off): drains
        s.mem.sleeping = 0;
        s.woken = true;
      }
    },
  ];
  const consumer: ((s: State) => void)[] = [
    (s) => void (s.mem.sleeping = 1), // Atomics.store: the consumer has nothing buffered after it
    (s) => void (s.seen.plain = s.mem.plain),
    (s) => {
      if (fence && s.seen.plain === 1) drain(s); // membarrier(2): the producer's buffer reaches memory
    },
    (s) => void (s.seen.commit = s.mem.commit),
    (s) => void (s.asleep = s.seen.commit === 0),
  ];
  let lost = 0;
  let runs = 0;
  const clone = (s: State): State => ({
    ...s,
    mem: { ...s.mem },
    buffer: s.buffer.map(([w, v]) => [w, v]),
    seen: { ...s.seen },
  });
  const visit = (s: State) => {
    const moves: ((s: State) => void)[] = [];
    if (s.p < producer.length) moves.push((t) => producer[t.p++]!(t));
    if (s.c < consumer.length) moves.push((t) => consumer[t.c++]!(t));
    if (s.buffer.length > 0) moves.push((t) => void (([w, v]) => (t.mem[w] = v))(t.buffer.shift()!));
    if (moves.length === 0) {
      runs++;
      // Lost: the consumer went to sleep on a ring that holds the record, and the producer never woke it.
      if (s.asleep && !s.woken && s.mem.commit === 1) lost++;
      return;
    }
    for (const move of moves) {
      const t = clone(s);
      move(t);
      visit(t);
    }
  };
  visit({
    mem: { commit: 0, sleeping: 0, plain: mode === "plain" ? 1 : 0 },
    buffer: [],
    p: 0,
    c: 0,
    seen: { sleeping: 0, plain: 0, commit: 0 },
    woken: false,
    asleep: false,
  });
  return { lost, runs };
}

test("fence model: with the consumer's fence, no interleaving loses a wake-up, in plain mode, turning it on, or off", () => {
  for (const mode of ["plain", "switchOn", "atomic"] as const) {
    const { lost, runs } = search(mode, true);
    assert.ok(runs > 100, `${mode}: ${runs} interleavings tried`);
    assert.equal(lost, 0, `${mode}: ${lost} of ${runs} interleavings lose the wake-up`);
  }
});

test("fence model: without it, plain publication loses wake-ups (atomic publication does not need it)", () => {
  assert.ok(search("plain", false).lost > 0, "plain stores without the consumer's fence lose a wake-up");
  assert.ok(search("switchOn", false).lost > 0, "turning plain mode on without the fence loses one too");
  assert.equal(search("atomic", false).lost, 0, "Atomics.store publication needs no fence");
});
