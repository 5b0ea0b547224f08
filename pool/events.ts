/**
 * A pool's event stream: what happened to its workers and tasks, for logs and tooling. Each subscriber has its
 * own bounded buffer, so a slow one loses its oldest events (and is told how many) instead of growing without bound.
 *
 * @module
 */
import { Fifo, Waiters } from "../async/mod.ts";

/** One thing that happened in a pool. `slot` is the worker's place in the pool; `id` its pid or thread number. */
export type PoolEvent =
  & { time: number; lost?: number }
  & (
    | { type: "worker-ready"; slot: number; id: number; runtime: string }
    | {
      type: "worker-exit";
      slot: number;
      id: number;
      code: number | null;
      signal: string | null;
      expected: boolean;
      /** What a thread died of, when it said (its uncaught error, or `ERR_WORKER_OUT_OF_MEMORY`). */
      error?: string;
    }
    | { type: "worker-failed"; slot: number; error: string }
    | { type: "worker-restart"; slot: number; delay: number }
    | { type: "worker-hung"; slot: number; id: number; task?: number }
    | {
      type: "worker-recycle";
      slot: number;
      id: number;
      done: number;
      /** `maxTasksPerWorker` reached, or `maxMemory` passed (then `memory`: the bytes it held). */
      reason: "tasks" | "memory";
      memory?: number;
    }
    | { type: "worker-grow"; slot: number; size: number }
    | { type: "worker-shrink"; slot: number; id: number; size: number }
    | { type: "crash-loop"; slot: number; error: string }
    | { type: "task-retry"; task: number; id: number }
    | { type: "task-lost"; task: number; id: number }
    | { type: "drain" }
    | { type: "reload" }
    | { type: "closed" }
  );

/** Distributive Omit, so each variant keeps its own fields. */
type Without<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

const LIMIT = 1024;

interface Subscriber {
  readonly buffer: Fifo<PoolEvent>;
  lost: number;
  /** `next()` calls waiting for an event (or the end). */
  readonly readers: Waiters<void>;
}

/** The pool's side: emit events, end the stream. */
export class EventLog {
  readonly #subscribers = new Set<Subscriber>();
  #ended = false;

  emit(event: Without<PoolEvent, "time" | "lost">): void {
    if (this.#ended) return;
    for (const s of this.#subscribers) {
      if (s.buffer.length >= LIMIT) {
        s.buffer.shift();
        s.lost++;
      }
      const e = { ...event, time: Date.now() } as PoolEvent;
      if (s.lost > 0) {
        e.lost = s.lost;
        s.lost = 0;
      }
      s.buffer.push(e);
      s.readers.wake();
    }
  }

  end(): void {
    this.#ended = true;
    for (const s of this.#subscribers) while (s.readers.wake());
  }

  subscribe(): AsyncIterableIterator<PoolEvent> {
    const s: Subscriber = { buffer: new Fifo(), lost: 0, readers: new Waiters() };
    if (!this.#ended) this.#subscribers.add(s);
    const done: IteratorReturnResult<undefined> = { done: true, value: undefined };
    const it: AsyncIterableIterator<PoolEvent> = {
      next: async () => {
        while (s.buffer.length === 0) {
          if (this.#ended) return done;
          await s.readers.wait();
        }
        return { done: false, value: s.buffer.shift()! };
      },
      return: () => {
        this.#subscribers.delete(s);
        while (s.readers.wake());
        return Promise.resolve(done);
      },
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }
}
