/**
 * A pool's queue of tasks waiting for a worker: by priority, first in first out within one, with aging so that a
 * steady stream of urgent tasks cannot hold a less urgent one back for ever.
 *
 * A task's rank is `priority - queuedAt / aging` (higher first; equal ranks in the order they were queued): waiting
 * `aging` milliseconds is worth one priority level. So a task is overtaken only by tasks of higher priority queued
 * less than `(their priority - its priority) * aging` ms after it, and by nothing queued later than that: the bound
 * on how long it can be passed over (piscina #1031: tasks waiting up to 60 s under sustained load). `aging: Infinity`
 * is strict priority. The rank of a queued task never changes, so the queue is one FIFO per priority, and the next
 * task is the best of their heads (a head is the best of its FIFO: same priority, queued first); a task given back
 * after its worker died goes before all of them.
 *
 * Why not a heap: the common case is one priority, where this is an array with a head index (no reordering, no
 * comparison); with a few priorities, a pick compares a few heads.
 *
 * @module
 */

/** What the queue needs of a task. */
export interface Queued {
  /** Settled while queued (cancelled, timed out): skipped, never handed out. */
  readonly settled: boolean;
  readonly priority: number;
  /** When it was queued, in ms (any clock, the same for all). */
  readonly queuedAt: number;
}

/** One priority's tasks, in order. */
class Fifo<T> {
  items: T[] = [];
  head = 0;

  constructor(readonly priority: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(t: T): void {
    this.items.push(t);
  }

  first(): T | undefined {
    return this.items[this.head];
  }

  shift(): T {
    const t = this.items[this.head++]!;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return t;
  }
}

/** The queue; see the module doc. */
export class TaskQueue<T extends Queued> {
  readonly #aging: number;
  /** One FIFO per priority, in an array (a pick runs once per task submitted and once per task handed out: a Map
   * would make an iterator and an entry each time). */
  #fifos: Fifo<T>[] = [];
  /** Tasks given back (their worker died): first in line, in the order they came back. */
  readonly #again = new Fifo<T>(Infinity);
  #size = 0;

  /** `aging`: milliseconds of waiting worth one priority level (Infinity: strict priority). */
  constructor(aging: number) {
    this.#aging = aging;
  }

  /** Tasks queued (a settled one counts until it is skipped). */
  get size(): number {
    return this.#size;
  }

  /** Queues `t` behind the tasks of its priority. */
  push(t: T): void {
    const fifos = this.#fifos;
    let fifo: Fifo<T> | undefined;
    for (let i = 0; i < fifos.length; i++) {
      if (fifos[i]!.priority === t.priority) {
        fifo = fifos[i];
        break;
      }
    }
    if (fifo === undefined) fifos.push(fifo = new Fifo(t.priority));
    fifo.push(t);
    this.#size++;
  }

  /** Puts `t` first in line (its worker died while it ran). */
  pushFirst(t: T): void {
    this.#again.push(t);
    this.#size++;
  }

  /** The next task to hand out (unsettled), without taking it; undefined when none waits. */
  peek(): T | undefined {
    return this.#best()?.first();
  }

  /** Takes the next task (unsettled); undefined when none waits. */
  shift(): T | undefined {
    const fifo = this.#best();
    if (fifo === undefined) return undefined;
    this.#size--;
    return fifo.shift();
  }

  /** Takes every task, in no particular order, and empties the queue. */
  takeAll(): T[] {
    const all: T[] = [];
    for (const fifo of [this.#again, ...this.#fifos]) {
      while (fifo.length > 0) all.push(fifo.shift());
    }
    this.#fifos = [];
    this.#size = 0;
    return all;
  }

  /** Whether every queued task is settled (none would run). */
  allSettled(): boolean {
    return this.#best() === undefined;
  }

  /** The FIFO whose first task goes next, settled heads dropped on the way; undefined when none waits. */
  #best(): Fifo<T> | undefined {
    if (this.#again.length > 0) {
      this.#dropSettled(this.#again);
      if (this.#again.length > 0) return this.#again;
    }
    const fifos = this.#fifos;
    if (fifos.length === 1) {
      const only = fifos[0]!;
      this.#dropSettled(only);
      return only.length > 0 ? only : undefined;
    }
    let best: Fifo<T> | undefined;
    let bestRank = -Infinity;
    let bestAt = Infinity;
    for (let i = 0; i < fifos.length; i++) {
      const fifo = fifos[i]!;
      this.#dropSettled(fifo);
      const head = fifo.first();
      if (head === undefined) {
        if (fifos.length > 1) fifos.splice(i--, 1); // (keeps the usual one)
        continue;
      }
      // Aging: Infinity makes the rank the priority alone (and 0 / Infinity is 0, not NaN: queuedAt is finite).
      const rank = fifo.priority - head.queuedAt / this.#aging;
      if (rank > bestRank || (rank === bestRank && head.queuedAt < bestAt)) {
        best = fifo;
        bestRank = rank;
        bestAt = head.queuedAt;
      }
    }
    return best;
  }

  #dropSettled(fifo: Fifo<T>): void {
    while (fifo.length > 0 && fifo.first()!.settled) {
      fifo.shift();
      this.#size--;
    }
  }
}
