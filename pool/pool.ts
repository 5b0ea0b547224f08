/**
 * A Master-Worker pool: worker threads, or worker processes of any runtime (mixed if you like), supervised so that
 * every task settles exactly once, with its result or an error, whatever the workers do.
 *
 * - **Scheduling**: tasks wait in one queue and go to the ready worker with the fewest tasks running, at most
 *   `concurrency` at a time per worker. `maxQueue` bounds the queue: past it `run()` **rejects** with
 *   `QueueFullError` (it does not wait), so memory stays bounded; `map()` never overfills it.
 * - **Supervision**: a worker that crashes, exits or is killed is replaced, after a back-off that doubles from
 *   `restartDelay` up to 5 s. A worker slot that fails `maxRestarts` times within `restartWindow` gives up; when
 *   every slot has given up the pool fails: queued and future tasks reject with `WorkerDiedError`, and a
 *   `crash-loop` event says why. The tasks a dead worker held are re-run when marked `idempotent` (up to
 *   `retries` times, first in the queue), and otherwise reject with `WorkerDiedError`.
 * - **Hangs**: a task running past `taskTimeout` rejects with `TimeoutError` and its worker is killed and replaced
 *   (its other tasks are handled as above). An idle worker is probed every `heartbeat` ms and replaced if it does
 *   not answer within `taskTimeout` (or 10 s).
 * - **Deadlines and cancellation** of one task (`run(task, { timeout, signal })`) cross to the worker as RPC
 *   cancellation: the handler's `this.signal` aborts, the worker stays.
 * - **Signals** (`signals: true`, the default): SIGTERM and SIGINT drain every such pool (`close()` with
 *   `drainTimeout`), then exit with 128 + the signal number; SIGHUP reloads the workers one at a time
 *   (`reload()`). Worker processes never outlive the master: they get SIGKILL from the kernel when it dies.
 * - **Other hosts** (`transport: "nats"`): the pool starts no worker; processes anywhere join it through a NATS server
 *   (`ipckit worker --nats URL --module file.ts`) and get the same scheduling and guarantees (`pool/remote.ts`).
 *
 * @example
 * ```ts
 * import { Pool, pool, runtime } from "ipckit";
 * const rt = await runtime();
 * if (rt.env("SQUARE_WORKER") !== undefined) {
 *   await pool.worker((n: number) => ({ square: n * n, on: rt.name })); // this same module, started by the pool
 * } else {
 *   await using squares = new Pool<{ run(n: number): { square: number; on: string } }>({
 *     worker: new URL(import.meta.url),
 *     kind: "process",
 *     runtime: ["deno", "bun", "node"], // one worker process per runtime
 *     size: 3,
 *     env: { SQUARE_WORKER: "1" },
 *   });
 *   console.log((await squares.run(7)).square); // 49, from whichever worker was free
 *   for await (const r of squares.map([1, 2, 3])) console.log(r.square); // 1, 4, 9: in order
 * }
 * ```
 *
 * The pieces: the options and their checks are `pool/options.ts`, the task queue and its dispatch
 * `pool/scheduler.ts`, the worker slots (start, restart, give up, probe, reload) `pool/supervisor.ts`, one started
 * worker `pool/member.ts`, workers that join over NATS `pool/remote.ts`, the event stream `pool/events.ts`. This file
 * is the public face that ties them together, and the pool's life: ready, close (drain), terminate.
 *
 * @module
 */
import { onAbort, Waiters, within } from "../async/mod.ts";
import { abortError, ClosedError } from "../errors.ts";
import { EventLog, type PoolEvent } from "./events.ts";
import {
  type BroadcastAnswer,
  type PoolOptions,
  type PoolStats,
  positiveInt,
  resolveOptions,
  type RunOptions,
  type Settings,
} from "./options.ts";
import { Scheduler } from "./scheduler.ts";
import { installSignals } from "./signals.ts";
import { Supervisor } from "./supervisor.ts";
import { type Counters, track } from "../shm/stats.ts";
import { latenciesNamed, summarize } from "../shm/stats_latency.ts";
import { INFO, MEMORY } from "./worker.ts";

let pools = 0;

/** The options of a task run without any: one frozen object, not one per task. */
const NO_OPTIONS: RunOptions = Object.freeze({});

export type { BroadcastAnswer, PoolOptions, PoolStats, RunOptions } from "./options.ts";

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => any;

/**
 * A supervised pool of workers. `H` is the type of the worker's handlers (`typeof handlers`), for typed calls.
 *
 * @example
 * ```ts
 * import { type CallContext, Pool, pool, type PoolEvent, runtime } from "ipckit";
 * const handlers = {
 *   run: (n: number) => n * n,
 *   async sleep(this: CallContext, ms: number) {
 *     await new Promise((resolve, reject) => {
 *       const timer = setTimeout(resolve, ms);
 *       this.signal.addEventListener("abort", () => {
 *         clearTimeout(timer);
 *         reject(this.signal.reason);
 *       });
 *     });
 *     return ms;
 *   },
 * };
 * if ((await runtime()).parentPort() !== null) {
 *   await pool.worker(handlers); // a worker thread: this same module
 * } else {
 *   const workers = new Pool<typeof handlers>({ worker: new URL(import.meta.url), size: 2 }); // threads
 *   const events = workers.events(); // a subscription from now on
 *   await workers.ready();
 *   console.log(await workers.run(7)); // 49
 *   console.log(await workers.call("sleep", [5])); // 5
 *   const late = await workers.call("sleep", [60_000], { timeout: 50 }).catch((e) => e.name);
 *   console.log(late); // "TimeoutError": the handler was cancelled, the worker stays
 *   console.log(workers.stats.done, workers.stats.workers.map((w) => w.state)); // 2 ["ready", "ready"]
 *   await workers.reload(); // a rolling restart: new workers take over one at a time
 *   await workers.close({ timeout: 5000 }); // drains, then stops the workers
 *   const seen = new Set<PoolEvent["type"]>();
 *   for await (const e of events) seen.add(e.type); // ends with the pool
 *   console.log([...seen]); // ["worker-ready", "reload", "worker-exit", ..., "closed"]
 * }
 * ```
 */
export class Pool<H = { run(task: unknown): unknown }> implements AsyncDisposable {
  /** Number of workers. */
  readonly size: number;
  readonly kind: "thread" | "process";
  readonly #o: Settings;
  readonly #tasks: Scheduler;
  readonly #workers: Supervisor;
  #closing: Promise<void> | undefined;
  #closed = false;
  readonly #events = new EventLog();
  #signals: Disposable | undefined;
  /** The live counters (`ipckit stats`). */
  readonly #stats: Counters;

  /**
   * Starts the workers (in the background: tasks queue until one is ready).
   *
   * @throws {TypeError} / {RangeError} for bad options.
   */
  constructor(options: PoolOptions) {
    const { settings, kind, runtimes, launch } = resolveOptions(options);
    const name = options.name ?? `${kind} pool ${++pools}`;
    if (launch) launch.name = name;
    this.size = settings.size;
    this.kind = kind;
    this.#o = settings;
    // The scheduler and the supervisor need each other: the scheduler asks for the workers only once it runs.
    const workers = () => this.#workers;
    this.#stats = track("pool", name);
    this.#tasks = new Scheduler(settings, this.#events, {
      get slots() {
        return workers().slots;
      },
      slotOf: (member) => workers().slotOf(member),
      get restarts() {
        return workers().restarts;
      },
      recycle: (member) => workers().recycle(member),
      checkMemory: (member) => workers().checkMemory(member),
      grow: (waiting) => workers().grow(waiting),
    }, this.#stats);
    this.#workers = new Supervisor(settings, launch, runtimes, this.#events, this.#tasks, {
      closed: () => this.#closed,
      name,
      stopping: () => this.#closed || this.#closing !== undefined,
      changed: () => this.#checkReady(),
    });
    if (this.#o.signals) {
      this.#signals = installSignals(this, {
        drain: () => this.close({ timeout: this.#o.drainTimeout }),
        reload: () => this.reload(),
      });
    }
  }

  /**
   * Runs `task` on a worker's `run` handler. Settles exactly once: with the result, the handler's error (a
   * `RemoteError`), `TimeoutError` (deadline or `taskTimeout`), the signal's reason, `WorkerDiedError`,
   * `QueueFullError`, or `ClosedError` once the pool is closed or terminated.
   */
  run(
    task: H extends { run(task: infer T): unknown } ? T : unknown,
    options: RunOptions = NO_OPTIONS,
  ): Promise<H extends { run(...args: never[]): infer R } ? Awaited<R> : unknown> {
    return this.#submit("run", [task], options) as never;
  }

  /** Calls the worker handler `method` with `args` (with the same guarantees as `run`). */
  call<M extends keyof H & string>(
    method: M,
    args: H[M] extends AnyFunction ? Parameters<H[M]> : unknown[],
    options: RunOptions = NO_OPTIONS,
  ): Promise<H[M] extends AnyFunction ? Awaited<ReturnType<H[M]>> : unknown> {
    return this.#submit(method, args as unknown[], options) as never;
  }

  /**
   * Calls the worker handler `method` with `args` on every ready worker, once each, now: not through the queue, and
   * alongside what each is running (to reload configuration, warm a cache, collect each worker's numbers). Workers
   * that are starting, draining or being restarted are left out. Resolves, once every call settled, with one answer
   * per worker in slot order: `{ slot, id, ok: true, value }` or `{ slot, id, ok: false, error }` (the handler's
   * `RemoteError`, `TimeoutError` past `timeout`, `ClosedError` if it died); a worker's failure does not fail the rest.
   *
   * @throws {ClosedError} when the pool is closing or closed.
   *
   * @example
   * ```ts
   * import { Pool, pool, runtime } from "ipckit";
   * const rt = await runtime();
   * if (rt.parentPort() !== null) {
   *   let greeting = "hello";
   *   await pool.worker({ run: (name: string) => `${greeting}, ${name}`, configure: (g: string) => void (greeting = g) });
   * } else {
   *   await using greeters = new Pool<{ run(name: string): string; configure(g: string): void }>({
   *     worker: new URL(import.meta.url),
   *     size: 2,
   *   });
   *   await greeters.ready();
   *   const answers = await greeters.broadcast("configure", ["hi"]);
   *   console.log(answers.length, answers.every((a) => a.ok)); // 2 true
   *   console.log(await greeters.run("you")); // "hi, you"
   * }
   * ```
   */
  async broadcast<M extends keyof H & string>(
    method: M,
    args: H[M] extends AnyFunction ? Parameters<H[M]> : unknown[],
    options: { timeout?: number; signal?: AbortSignal } = {},
  ): Promise<Array<BroadcastAnswer<H[M] extends AnyFunction ? Awaited<ReturnType<H[M]>> : unknown>>> {
    if (this.#closing || this.#closed) throw new ClosedError("Cannot broadcast: the pool is closed");
    if (options.timeout !== undefined && !(options.timeout >= 0)) {
      throw new RangeError(`Cannot broadcast with timeout ${options.timeout}: it must be >= 0 ms`);
    }
    const calls = this.#workers.slots.flatMap((slot) => {
      const m = slot.member;
      if (!m || m.state !== "ready") return [];
      return [
        m.peer.callWith(method, args as unknown[], options).then((value) => m.unmoved(value)).then(
          (value) => ({ slot: slot.index, id: m.id, ok: true as const, value }),
          (error: unknown) => ({ slot: slot.index, id: m.id, ok: false as const, error }),
        ),
      ];
    });
    return (await Promise.all(calls)) as never;
  }

  /**
   * Runs `run(item)` for each item, at most `concurrency` at a time (default: the pool's capacity), and yields the
   * results in the order of the items. A task's error is thrown at its place; leaving the loop early cancels the
   * tasks still running and stops reading `items`.
   *
   * @example
   * ```ts
   * import { Pool, pool, runtime } from "ipckit";
   * if ((await runtime()).parentPort() !== null) {
   *   await pool.worker((word: string) => word.toUpperCase()); // the worker thread: this same module
   * } else {
   *   await using upper = new Pool<{ run(word: string): string }>({ worker: new URL(import.meta.url), size: 2 });
   *   const words = (function* () {
   *     yield* ["map", "keeps", "the", "order"]; // any iterable, read only as fast as the window allows
   *   })();
   *   const out: string[] = [];
   *   for await (const w of upper.map(words, { concurrency: 2 })) out.push(w);
   *   console.log(out.join(" ")); // "MAP KEEPS THE ORDER"
   * }
   * ```
   */
  async *map<T, R = H extends { run(...args: never[]): infer R } ? Awaited<R> : unknown>(
    items: Iterable<T> | AsyncIterable<T>,
    options: Omit<RunOptions, "signal" | "transfer"> & { concurrency?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<R, void, undefined> {
    if ((options as RunOptions).transfer !== undefined) {
      throw new TypeError("Cannot map with transfer: one list cannot move to every task (use run() per item)");
    }
    const limit = positiveInt("concurrency", options.concurrency ?? this.size * this.#o.concurrency);
    const ac = new AbortController();
    const unlisten = onAbort(options.signal, () => ac.abort(options.signal!.reason));
    const source = Symbol.asyncIterator in items
      ? (items as AsyncIterable<T>)[Symbol.asyncIterator]()
      : (items as Iterable<T>)[Symbol.iterator]();
    const window: Promise<unknown>[] = [];
    const runOptions: RunOptions = { ...options, signal: ac.signal };
    let ended = false;
    try {
      for (;;) {
        while (!ended && window.length < limit) {
          const next = await source.next();
          if (next.done) {
            ended = true;
            break;
          }
          const p = this.#submit("run", [next.value], runOptions);
          p.catch(() => {}); // observed when its turn comes
          window.push(p);
        }
        if (window.length === 0) return;
        yield (await window.shift()) as R;
      }
    } finally {
      ac.abort(new DOMException("The map was left early", "AbortError"));
      unlisten();
      if (!ended) await source.return?.();
    }
  }

  /**
   * Resolves once every worker has started and answered (tasks do not need this: they queue until a worker is
   * ready). With `room`, instead: once the queue has room for `room` more tasks (`maxQueue` less the queued ones),
   * whatever the workers do: the backpressure a producer awaits before it queues more (piscina's `drain`), where
   * `run()` past `maxQueue` rejects. Rejects with `WorkerDiedError` when the pool fails, `ClosedError` once it is
   * closing or closed.
   *
   * @throws {RangeError} for a `room` that is not an integer from 1 to `maxQueue` (it could never come).
   *
   * @example
   * ```ts
   * import { Pool, pool, runtime } from "ipckit";
   * if ((await runtime()).parentPort() !== null) {
   *   await pool.worker((n: number) => n * 2); // the worker thread: this same module
   * } else {
   *   await using doubler = new Pool<{ run(n: number): number }>({ worker: new URL(import.meta.url), maxQueue: 100 });
   *   const results: Promise<number>[] = [];
   *   for (let i = 0; i < 1000; i++) {
   *     await doubler.ready({ room: 1 }); // never more than 100 queued, and no QueueFullError
   *     results.push(doubler.run(i));
   *   }
   *   console.log((await Promise.all(results)).at(-1)); // 1998
   * }
   * ```
   */
  ready(options: { room?: number } = {}): Promise<void> {
    const room = options.room;
    if (room !== undefined) {
      if (!Number.isInteger(room) || room < 1 || room > this.#o.maxQueue) {
        return Promise.reject(
          new RangeError(
            `Cannot wait for room for ${room} tasks: it must be an integer from 1 to maxQueue (${this.#o.maxQueue})`,
          ),
        );
      }
      if (this.#closing || this.#closed) {
        return Promise.reject(new ClosedError("Cannot wait for room in the queue: the pool is closed"));
      }
      return this.#tasks.whenRoom(room);
    }
    const ready = this.#readyWaiters.wait();
    this.#checkReady();
    return ready;
  }

  readonly #readyWaiters = new Waiters<void>();

  #checkReady(): void {
    if (this.#readyWaiters.length === 0) return;
    const error = this.#workers.failed ??
      (this.#closing || this.#closed ? new ClosedError("Cannot wait for the workers: the pool is closed") : undefined);
    if (error) {
      this.#readyWaiters.fail(error);
    } else if (this.#workers.ready) {
      while (this.#readyWaiters.wake());
    }
  }

  /** Counters and the state of each worker. */
  get stats(): PoolStats {
    const { done, failed, retried } = this.#tasks.counters;
    const { running, workers } = this.#workers.stats(this.kind);
    // Run time: the workers' connections (named after the pool) time each method; the pool's own probes are no tasks.
    const calls = `${this.#stats.name} · call `;
    const own = new Set([`${calls}${INFO}`, `${calls}${MEMORY}`]);
    const run = latenciesNamed(calls).filter((l) => !own.has(l.counters.name));
    return {
      done,
      failed,
      retried,
      restarts: this.#workers.restarts,
      queued: this.#tasks.queued,
      running,
      workers,
      waitTime: this.#tasks.waitTime,
      runTime: summarize(run),
    };
  }

  /**
   * What happens in the pool, as it happens (worker started, ready, exited, restarted, hung; task retried or lost
   * with its worker; crash loop; drain; reload; closed). Each call is a new subscription from now on; it ends when
   * the pool is closed. A subscriber that falls 1024 events behind loses the oldest (counted in `lost` of the next).
   */
  events(): AsyncIterableIterator<PoolEvent> {
    return this.#events.subscribe();
  }

  /**
   * Replaces the workers one at a time (a rolling restart, as after a deploy): a new worker starts and takes new
   * tasks, the old one finishes what it runs, then stops. Resolves when every slot was replaced.
   */
  reload(): Promise<void> {
    return this.#workers.reload();
  }

  /**
   * Stops taking tasks, lets the queued and running ones finish, then stops the workers. After `timeout` ms
   * (default: no limit) what is left is terminated: it rejects with `ClosedError`. Idempotent.
   */
  close(options: { timeout?: number } = {}): Promise<void> {
    this.#closing ??= (async () => {
      this.#events.emit({ type: "drain" });
      this.#tasks.failRoom(new ClosedError("Cannot wait for room in the queue: the pool is closing"));
      const drained = this.#tasks.drained();
      if (options.timeout === undefined) await drained;
      else await within(drained, options.timeout);
      await this.#shutdown(new ClosedError("Cannot complete the task: the pool was closed before it ran"));
    })();
    return this.#closing;
  }

  /**
   * Stops every worker now; queued and running tasks reject with `ClosedError`.
   *
   * @example
   * ```ts
   * import { ClosedError, Pool, pool, runtime } from "ipckit";
   * if ((await runtime()).parentPort() !== null) {
   *   await pool.worker(() => new Promise(() => {})); // the worker thread: a task that never ends
   * } else {
   *   const stuck = new Pool({ worker: new URL(import.meta.url), size: 1 });
   *   const task = stuck.run("forever").catch((e) => e instanceof ClosedError);
   *   await stuck.ready();
   *   await stuck.terminate(); // no drain: stop the workers now
   *   console.log(await task); // true: what was running or queued rejects with ClosedError
   * }
   * ```
   */
  terminate(): Promise<void> {
    this.#closing ??= Promise.resolve();
    return this.#shutdown(new ClosedError("Cannot complete the task: the pool was terminated"));
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Queues a task: the one way in for `run()`, `call()` and `map()`. */
  #submit(method: string, args: unknown[], options: RunOptions): Promise<unknown> {
    if (this.#closing || this.#closed) {
      return Promise.reject(new ClosedError("Cannot run a task: the pool is closed"));
    }
    if (this.#workers.failed) return Promise.reject(this.#workers.failed);
    if (options.signal?.aborted) return Promise.reject(abortError(options.signal));
    if (options.timeout !== undefined && !(options.timeout >= 0)) {
      return Promise.reject(new RangeError(`Cannot run a task with timeout ${options.timeout}: it must be >= 0 ms`));
    }
    const key = options.affinity;
    if (key !== undefined && typeof key !== "string" && !(typeof key === "number" && Number.isFinite(key))) {
      return Promise.reject(
        new TypeError(`Cannot run a task with affinity ${String(key)}: it must be a string or a finite number`),
      );
    }
    if (options.priority !== undefined && !Number.isFinite(options.priority)) {
      return Promise.reject(
        new RangeError(`Cannot run a task with priority ${String(options.priority)}: it must be a finite number`),
      );
    }
    return this.#tasks.submit(method, args, options);
  }

  async #shutdown(reason: ClosedError): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#checkReady();
    this.#workers.stopProbing();
    this.#signals?.[Symbol.dispose]();
    this.#tasks.failQueued(reason);
    this.#tasks.failRoom(reason);
    await this.#workers.stop(reason);
    this.#tasks.endDrain();
    this.#events.emit({ type: "closed" });
    this.#events.end();
    this.#stats.close();
    this.#tasks.close();
  }
}
