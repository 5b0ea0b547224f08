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
 * Why one file of ~900 lines (a fifth of them docs): the Pool holds its queue, scheduler and supervision as one state
 * machine over shared private state (what a member does is `pool/member.ts`, remote workers `pool/remote.ts`, events
 * `pool/events.ts`). Taking the scheduler out into its own file is the next split.
 *
 * @module
 */
import { onAbort, Waiters, within } from "../async/mod.ts";
import { abortError, ClosedError, QueueFullError, TimeoutError, WorkerDiedError } from "../errors.ts";
import { runtimeName } from "../runtimes/detect.ts";
import type { RuntimeName } from "../runtimes/runtime.ts";
import { EventLog, type PoolEvent } from "./events.ts";
import { type Launch, Member } from "./member.ts";
import { installSignals } from "./signals.ts";
import { INFO } from "./worker.ts";
import { type NatsPoolOptions, RemoteWorkers } from "./remote.ts";

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => any;

/** Options of {@linkcode Pool}. */
export interface PoolOptions {
  /**
   * The worker module (`URL`, or a path or `file:` URL string), or for processes the full argv to start. Not used
   * with `transport: "nats"` (the workers start elsewhere, with `ipckit worker --nats URL --module file.ts`).
   */
  worker?: URL | string | string[];
  /** Threads of this runtime, or processes. Default `"thread"`. */
  kind?: "thread" | "process";
  /** Runtime of worker processes (default: this one); a list is used round-robin across the workers. */
  runtime?: RuntimeName | RuntimeName[];
  /** Number of workers. Default 2. With `transport: "nats"`: how many must have joined for `ready()`. */
  size?: number;
  /** Tasks running at once on one worker. Default 1. */
  concurrency?: number;
  /** Largest number of queued (not yet started) tasks; past it `run()` rejects with `QueueFullError`. 100 000. */
  maxQueue?: number;
  /** Hard limit on one task's run time, in ms: past it the task rejects and its worker is replaced. None. */
  taskTimeout?: number;
  /** How often an idle worker is probed, in ms (0: never). Default 5000. */
  heartbeat?: number;
  /** How many times an idempotent task is re-run after its worker died. Default 3. */
  retries?: number;
  /** Delay before the first restart of a worker slot, in ms; it doubles with each failure, up to 5 s. Default 100. */
  restartDelay?: number;
  /** Failures of one slot within `restartWindow` after which the slot gives up. Default 5. */
  maxRestarts?: number;
  /** The window of `maxRestarts`, in ms. Default 30 000. */
  restartWindow?: number;
  /** How long a new worker has to answer, in ms. Default 60 000. */
  startTimeout?: number;
  /** SIGTERM/SIGINT drain the pool then exit; SIGHUP reloads the workers. Default true. */
  signals?: boolean;
  /** How long a signal-triggered drain may take before the rest is terminated, in ms. Default 30 000. */
  drainTimeout?: number;
  /** Environment variables for worker processes. */
  env?: Record<string, string>;
  /** Working directory of worker processes. */
  cwd?: string;
  /**
   * How worker processes talk to the master: `"pipe"` (the default: two pipes on fds 3 and 4, their stdio stays
   * theirs) or `"shm"` (a shared-memory ring pair: faster, and both sides spin up to 50 us when waiting, so it
   * costs CPU). Worker threads always use a shared-memory ring pair on a SharedArrayBuffer.
   *
   * `"nats"`: the pool starts no worker; worker processes on any host join it through a NATS server
   * (`ipckit worker --nats URL --module file.ts`), see `nats`. A worker that dies or vanishes is not replaced by
   * the pool (its own supervisor restarts it), and its tasks are handled as for local workers.
   */
  transport?: "pipe" | "shm" | "nats";
  /** With `transport: "nats"`: the server (or a shared `link`), the pool's subject and the workers' heartbeat. */
  nats?: NatsPoolOptions;
  /** Ring size of a shared-memory channel, in bytes (the largest message is 8 bytes less). 1 MiB. */
  capacity?: number;
}

/** Options of one task. */
export interface RunOptions {
  /** Cancels the task: removed from the queue, or its handler's `this.signal` aborts. */
  signal?: AbortSignal;
  /** Deadline in ms: the task rejects with `TimeoutError` and its handler's `this.signal` aborts. */
  timeout?: number;
  /** The task may run again if its worker dies before it finishes (it is safe to run twice). Default false. */
  idempotent?: boolean;
}

/** Counters and per-worker state, for monitoring. */
export interface PoolStats {
  done: number;
  failed: number;
  retried: number;
  queued: number;
  running: number;
  restarts: number;
  workers: Array<{
    slot: number;
    kind: "thread" | "process";
    runtime: RuntimeName;
    /** pid of a process, or the thread's number. */
    id: number | undefined;
    /** The host of a worker that joined over NATS, as it said. */
    host?: string;
    state: "starting" | "ready" | "draining" | "stopping" | "dead" | "restarting" | "gave up";
    running: number;
    done: number;
    restarts: number;
  }>;
}

interface Task {
  readonly id: number;
  readonly method: string;
  readonly args: unknown[];
  readonly options: RunOptions;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: unknown) => void;
  settled: boolean;
  attempts: number;
  retriesLeft: number;
  member: Member<Task> | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Stops listening to the task's abort signal. */
  unlisten: (() => void) | undefined;
}

interface Slot {
  readonly index: number;
  readonly runtime: RuntimeName;
  member: Member<Task> | undefined;
  failures: number[];
  restarts: number;
  restarting: boolean;
  gaveUp: boolean;
  lastError: unknown;
}

const MAX_BACKOFF = 5000;

function newSlot(index: number, runtime: RuntimeName): Slot {
  return {
    index,
    runtime,
    member: undefined,
    failures: [],
    restarts: 0,
    restarting: false,
    gaveUp: false,
    lastError: undefined,
  };
}

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
  readonly #o:
    & Required<Omit<PoolOptions, "env" | "cwd" | "taskTimeout" | "runtime" | "worker" | "transport" | "nats">>
    & PoolOptions;
  readonly #launch: Omit<Launch, "runtime"> | undefined;
  /** Workers that join over NATS (transport "nats"), instead of slots the pool fills itself. */
  readonly #remote: RemoteWorkers<Task> | undefined;
  #nextSlot = 0;
  #slots: Slot[] = [];
  #queue: Task[] = [];
  #queueHead = 0;
  #nextId = 1;
  #closing: Promise<void> | undefined;
  #closed = false;
  #failed: Error | undefined;
  readonly #events = new EventLog();
  readonly #idle = new Set<() => void>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #signals: Disposable | undefined;
  readonly #stats = { done: 0, failed: 0, retried: 0, restarts: 0 };

  /**
   * Starts the workers (in the background: tasks queue until one is ready).
   *
   * @throws {TypeError} / {RangeError} for bad options.
   */
  constructor(options: PoolOptions) {
    const o = { ...options };
    const kind = o.kind ?? "thread";
    if (kind !== "thread" && kind !== "process") throw new TypeError(`Cannot make a pool of kind ${String(kind)}`);
    const here = runtimeName();
    const runtimes = o.runtime === undefined ? [here] : Array.isArray(o.runtime) ? o.runtime : [o.runtime];
    for (const r of runtimes) {
      if (r !== "deno" && r !== "bun" && r !== "node") throw new RangeError(`Cannot start workers on runtime ${r}`);
      if (kind === "thread" && r !== here) {
        throw new RangeError(`Cannot start ${r} worker threads from ${here}: threads run this runtime; use processes`);
      }
    }
    if (runtimes.length === 0) throw new RangeError("Cannot make a pool: runtime is an empty list");
    const transport = o.transport ?? (kind === "thread" ? "shm" : "pipe");
    if (transport !== "pipe" && transport !== "shm" && transport !== "nats") {
      throw new TypeError(`Cannot make a pool with transport ${String(transport)}: use "pipe", "shm" or "nats"`);
    }
    if (transport === "nats") {
      if (o.kind === "thread") throw new TypeError("Cannot make a thread pool on NATS: its workers are processes");
      RemoteWorkers.check(o.nats);
    } else if (o.nats !== undefined) {
      throw new TypeError('Cannot use the nats option without transport: "nats"');
    }
    if (kind === "thread" && transport === "pipe") {
      throw new TypeError("Cannot make a thread pool on pipes: worker threads use shared memory");
    }
    const worker = transport === "nats" ? undefined : workerTarget(o.worker!, kind);
    this.size = positiveInt("size", o.size ?? (transport === "nats" ? 1 : 2));
    this.kind = transport === "nats" ? "process" : kind;
    this.#o = {
      ...o,
      kind,
      size: this.size,
      concurrency: positiveInt("concurrency", o.concurrency ?? 1),
      maxQueue: positiveInt("maxQueue", o.maxQueue ?? 100_000, true),
      heartbeat: nonNegative("heartbeat", o.heartbeat ?? 5000),
      retries: nonNegative("retries", o.retries ?? 3),
      restartDelay: nonNegative("restartDelay", o.restartDelay ?? 100),
      maxRestarts: positiveInt("maxRestarts", o.maxRestarts ?? 5),
      restartWindow: nonNegative("restartWindow", o.restartWindow ?? 30_000),
      startTimeout: nonNegative("startTimeout", o.startTimeout ?? 60_000),
      signals: o.signals ?? true,
      drainTimeout: nonNegative("drainTimeout", o.drainTimeout ?? 30_000),
      capacity: positiveInt("capacity", o.capacity ?? 1 << 20),
    };
    if (o.taskTimeout !== undefined) nonNegative("taskTimeout", o.taskTimeout);
    this.#launch = worker === undefined || transport === "nats" ? undefined : {
      kind,
      worker,
      transport,
      startTimeout: this.#o.startTimeout,
      capacity: this.#o.capacity,
      ...(o.env === undefined ? {} : { env: o.env }),
      ...(o.cwd === undefined ? {} : { cwd: o.cwd }),
    };
    if (transport === "nats") {
      this.#remote = new RemoteWorkers<Task>(o.nats!, this.#o.startTimeout);
      this.#remote.start(
        (member) => this.#join(member),
        (error) => this.#fail(error, "Cannot take workers from NATS"),
      ).catch((error) => this.#fail(error, "Cannot take workers from NATS"));
    }
    for (let i = 0; i < (this.#launch ? this.size : 0); i++) {
      this.#slots.push(newSlot(i, runtimes[i % runtimes.length]!));
    }
    this.#nextSlot = this.#slots.length;
    for (const slot of this.#slots) void this.#spawn(slot);
    if (this.#o.heartbeat > 0) {
      this.#heartbeat = setInterval(() => this.#probe(), this.#o.heartbeat);
      unref(this.#heartbeat);
    }
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
    options: RunOptions = {},
  ): Promise<H extends { run(...args: never[]): infer R } ? Awaited<R> : unknown> {
    return this.#submit("run", [task], options) as never;
  }

  /** Calls the worker handler `method` with `args` (with the same guarantees as `run`). */
  call<M extends keyof H & string>(
    method: M,
    args: H[M] extends AnyFunction ? Parameters<H[M]> : unknown[],
    options: RunOptions = {},
  ): Promise<H[M] extends AnyFunction ? Awaited<ReturnType<H[M]>> : unknown> {
    return this.#submit(method, args as unknown[], options) as never;
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
    options: Omit<RunOptions, "signal"> & { concurrency?: number; signal?: AbortSignal } = {},
  ): AsyncGenerator<R, void, undefined> {
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
   * ready). Rejects with `WorkerDiedError` when the pool fails, `ClosedError` once it is closed.
   */
  ready(): Promise<void> {
    const ready = this.#readyWaiters.wait();
    this.#checkReady();
    return ready;
  }

  #readyWaiters = new Waiters<void>();

  #checkReady(): void {
    if (this.#readyWaiters.length === 0) return;
    const error = this.#failed ??
      (this.#closing || this.#closed ? new ClosedError("Cannot wait for the workers: the pool is closed") : undefined);
    if (error) {
      this.#readyWaiters.fail(error);
    } else if (
      this.#remote
        ? this.#slots.filter((s) => s.member?.state === "ready").length >= this.size
        : this.#slots.every((s) => s.member?.state === "ready")
    ) {
      while (this.#readyWaiters.wake());
    }
  }

  /** Counters and the state of each worker. */
  get stats(): PoolStats {
    let running = 0;
    const workers = this.#slots.map((s) => {
      const m = s.member;
      running += m?.running.size ?? 0;
      return {
        slot: s.index,
        kind: this.kind,
        runtime: s.runtime,
        id: m?.id,
        ...(m?.host === undefined ? {} : { host: m.host }),
        state: s.gaveUp ? "gave up" as const : m ? m.state : this.#closed ? "dead" as const : "restarting" as const,
        running: m?.running.size ?? 0,
        done: m?.done ?? 0,
        restarts: s.restarts,
      };
    });
    return { ...this.#stats, queued: this.#queue.length - this.#queueHead, running, workers };
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
  async reload(): Promise<void> {
    this.#events.emit({ type: "reload" });
    for (const slot of this.#slots) {
      if (this.#closed || this.#closing) return;
      const old = slot.member;
      if (!old || slot.gaveUp || slot.restarting) continue;
      if (old.remote) {
        // Not ours to start: let it finish, then close it; its supervisor starts the new version.
        old.state = "draining";
        await this.#whenIdle(old);
        old.stop();
        await old.gone;
        continue;
      }
      let fresh: Member<Task>;
      try {
        fresh = await Member.start<Task>({ ...this.#launch!, runtime: slot.runtime });
      } catch (e) {
        this.#events.emit({ type: "worker-failed", slot: slot.index, error: String((e as Error)?.message ?? e) });
        continue; // keep the old one
      }
      if (this.#closed || this.#closing || slot.member !== old) {
        fresh.stop(0);
        continue;
      }
      old.state = "draining";
      this.#adopt(slot, fresh);
      this.#schedule();
      await this.#whenIdle(old);
      old.stop();
      await old.gone;
    }
  }

  /**
   * Stops taking tasks, lets the queued and running ones finish, then stops the workers. After `timeout` ms
   * (default: no limit) what is left is terminated: it rejects with `ClosedError`. Idempotent.
   */
  close(options: { timeout?: number } = {}): Promise<void> {
    this.#closing ??= (async () => {
      this.#events.emit({ type: "drain" });
      const drained = this.#drainWaiters.wait();
      this.#checkDrained();
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

  // ---- tasks ----

  #submit(method: string, args: unknown[], options: RunOptions): Promise<unknown> {
    if (this.#closing || this.#closed) {
      return Promise.reject(new ClosedError("Cannot run a task: the pool is closed"));
    }
    if (this.#failed) return Promise.reject(this.#failed);
    if (options.signal?.aborted) return Promise.reject(abortError(options.signal));
    if (options.timeout !== undefined && !(options.timeout >= 0)) {
      return Promise.reject(new RangeError(`Cannot run a task with timeout ${options.timeout}: it must be >= 0 ms`));
    }
    if (this.#queue.length - this.#queueHead >= this.#o.maxQueue) {
      return Promise.reject(
        new QueueFullError(`Cannot queue the task: the queue holds maxQueue (${this.#o.maxQueue})`),
      );
    }
    return new Promise((resolve, reject) => {
      const task: Task = {
        id: this.#nextId++,
        method,
        args,
        options,
        resolve,
        reject,
        settled: false,
        attempts: 0,
        retriesLeft: options.idempotent ? this.#o.retries : 0,
        member: undefined,
        timer: undefined,
        unlisten: undefined,
      };
      if (options.signal) {
        task.unlisten = onAbort(options.signal, () => {
          // Queued: it never reaches a worker. Running: the RPC call carries the cancel to the handler.
          if (task.member === undefined) this.#settle(task, false, abortError(options.signal!));
        });
      }
      this.#queue.push(task);
      this.#schedule();
    });
  }

  #settle(task: Task, ok: boolean, value: unknown): void {
    if (task.settled) return;
    task.settled = true;
    if (task.timer !== undefined) clearTimeout(task.timer);
    task.unlisten?.();
    if (ok) {
      this.#stats.done++;
      task.resolve(value);
    } else {
      this.#stats.failed++;
      task.reject(value);
    }
    this.#checkDrained();
  }

  /** Hands queued tasks to ready workers with room. */
  #schedule(): void {
    while (this.#queueHead < this.#queue.length) {
      const task = this.#queue[this.#queueHead]!;
      if (task.settled) {
        this.#queueHead++;
        continue;
      }
      const member = this.#pick();
      if (!member) break;
      this.#queueHead++;
      this.#begin(task, member);
    }
    if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#queueHead);
      this.#queueHead = 0;
    }
    this.#checkDrained();
  }

  #pick(): Member<Task> | undefined {
    let best: Member<Task> | undefined;
    for (const slot of this.#slots) {
      const m = slot.member;
      if (!m || m.state !== "ready" || m.running.size >= this.#o.concurrency) continue;
      if (!best || m.running.size < best.running.size) best = m;
      if (best.running.size === 0) break;
    }
    return best;
  }

  #begin(task: Task, member: Member<Task>): void {
    task.attempts++;
    task.member = member;
    member.running.add(task);
    if (this.#o.taskTimeout !== undefined) {
      task.timer = setTimeout(() => this.#hung(task, member), this.#o.taskTimeout);
    }
    const { signal, timeout } = task.options;
    member.peer.callWith(task.method, task.args, {
      ...(signal ? { signal } : {}),
      ...(timeout === undefined ? {} : { timeout }),
    }).then(
      (value) => this.#finished(task, member, true, value),
      (error) => {
        // ClosedError: the connection ended, so the worker died or was stopped. The task stays in member.running,
        // and the worker's end (#gone) decides: run it again, or WorkerDiedError.
        if (!(error instanceof ClosedError)) this.#finished(task, member, false, error);
      },
    );
  }

  #finished(task: Task, member: Member<Task>, ok: boolean, value: unknown): void {
    if (task.member !== member) return; // an earlier attempt, already handled
    member.running.delete(task);
    member.done++;
    task.member = undefined;
    this.#settle(task, ok, value);
    if (member.running.size === 0) this.#wakeIdle(member);
    this.#schedule();
  }

  /** A task ran past `taskTimeout`: it fails, and its worker is replaced. */
  #hung(task: Task, member: Member<Task>): void {
    if (task.member !== member || task.settled) return;
    member.running.delete(task);
    task.member = undefined;
    this.#events.emit({ type: "worker-hung", slot: this.#slotOf(member), id: member.id, task: task.id });
    this.#settle(
      task,
      false,
      new TimeoutError(`Task ${task.id} ran past taskTimeout (${this.#o.taskTimeout} ms); its worker was replaced`),
    );
    member.kill();
  }

  // ---- workers ----

  /** Starts the worker of `slot`; a failure to start counts as a death. */
  async #spawn(slot: Slot): Promise<void> {
    slot.restarting = true;
    let fresh: Member<Task>;
    try {
      fresh = await Member.start<Task>({ ...this.#launch!, runtime: slot.runtime });
    } catch (e) {
      slot.restarting = false;
      if (this.#closed || this.#closing) return;
      this.#events.emit({ type: "worker-failed", slot: slot.index, error: String((e as Error)?.message ?? e) });
      return this.#failure(slot, e);
    }
    slot.restarting = false;
    if (this.#closed) {
      fresh.stop(0);
      return;
    }
    this.#adopt(slot, fresh);
    this.#schedule();
  }

  /** A worker joined over NATS: it gets a slot of its own. */
  #join(member: Member<Task>): void {
    if (this.#closed || this.#closing) return member.stop(0);
    const slot = newSlot(this.#nextSlot++, member.runtime);
    this.#slots.push(slot);
    this.#adopt(slot, member);
    this.#schedule();
  }

  #adopt(slot: Slot, member: Member<Task>): void {
    slot.member = member;
    this.#events.emit({ type: "worker-ready", slot: slot.index, id: member.id, runtime: member.runtime });
    void member.gone.then((exit) => this.#gone(slot, member, exit));
    this.#checkReady();
  }

  #gone(slot: Slot, member: Member<Task>, exit: { code: number | null; signal: string | null; expected: boolean }) {
    if (slot.member === member) slot.member = undefined;
    this.#events.emit({ type: "worker-exit", slot: slot.index, id: member.id, ...exit });
    // Its tasks: re-run the idempotent ones, the others are lost with it.
    for (const task of member.running) {
      task.member = undefined;
      if (task.timer !== undefined) clearTimeout(task.timer);
      task.timer = undefined;
      if (task.settled) continue;
      if (task.retriesLeft > 0 && !task.options.signal?.aborted && !this.#closed) {
        task.retriesLeft--;
        this.#stats.retried++;
        this.#events.emit({ type: "task-retry", task: task.id, id: member.id });
        this.#queue.splice(this.#queueHead, 0, task); // first in line
      } else {
        this.#events.emit({ type: "task-lost", task: task.id, id: member.id });
        this.#settle(
          task,
          false,
          new WorkerDiedError(
            `Task ${task.id} was lost: its worker (${member.kind} ${member.id}${
              member.host ? ` on ${member.host}` : ""
            }) ${describe(exit, member.remote)} while running it` +
              (task.options.idempotent ? ` (after ${task.attempts} attempts)` : " (not marked idempotent)"),
            { worker: member.id, attempts: task.attempts },
          ),
        );
      }
    }
    member.running.clear();
    this.#wakeIdle(member);
    if (member.remote) {
      this.#slots = this.#slots.filter((s) => s !== slot); // its place goes with it: workers join, not restart
    } else if (!exit.expected && !this.#closed && !this.#closing) {
      this.#failure(slot, new Error(`worker ${member.id} ${describe(exit)}`));
    }
    this.#schedule();
  }

  /** A slot's worker died or would not start: restart it after a back-off, or give up on a crash loop. */
  #failure(slot: Slot, error: unknown): void {
    const now = Date.now();
    slot.lastError = error;
    slot.failures = slot.failures.filter((t) => now - t < this.#o.restartWindow);
    slot.failures.push(now);
    if (slot.failures.length >= this.#o.maxRestarts) {
      slot.gaveUp = true;
      this.#events.emit({
        type: "crash-loop",
        slot: slot.index,
        error: String((error as Error)?.message ?? error),
      });
      if (this.#slots.every((s) => s.gaveUp)) this.#fail(error);
      return;
    }
    const delay = Math.min(this.#o.restartDelay * 2 ** (slot.failures.length - 1), MAX_BACKOFF);
    slot.restarts++;
    this.#stats.restarts++;
    slot.restarting = true;
    this.#events.emit({ type: "worker-restart", slot: slot.index, delay });
    // Not unref'd: a pool waiting to restart a worker is as alive as one with workers.
    setTimeout(() => {
      if (!this.#closed && !this.#closing) void this.#spawn(slot);
      else slot.restarting = false;
    }, delay);
  }

  /** Every slot gave up (or workers cannot join at all): nothing can run any more. */
  #fail(cause: unknown, why?: string): void {
    if (this.#failed || this.#closed) return;
    this.#failed = new WorkerDiedError(
      why === undefined
        ? `Cannot run tasks: every worker of the pool keeps dying (${this.#o.maxRestarts} failures within ` +
          `${this.#o.restartWindow} ms each; last: ${(cause as Error)?.message ?? cause})`
        : `${why}: ${(cause as Error)?.message ?? cause}`,
      { attempts: 0 },
      { cause },
    );
    for (let i = this.#queueHead; i < this.#queue.length; i++) this.#settle(this.#queue[i]!, false, this.#failed);
    this.#queue = [];
    this.#queueHead = 0;
    this.#checkReady();
  }

  /** Probes idle workers; one that does not answer in time is hung and replaced. */
  #probe(): void {
    const limit = this.#o.taskTimeout ?? 10_000;
    for (const slot of this.#slots) {
      const m = slot.member;
      if (!m || m.state !== "ready" || m.running.size > 0) continue;
      m.peer.callWith(INFO, [], { timeout: limit }).catch((e) => {
        if (e instanceof TimeoutError && m.state === "ready") {
          this.#events.emit({ type: "worker-hung", slot: slot.index, id: m.id });
          m.kill();
        }
      });
    }
  }

  #slotOf(member: Member<Task>): number {
    return this.#slots.find((s) => s.member === member)?.index ?? -1;
  }

  // ---- draining and shutdown ----

  /** `close()` waiting for the queue and the workers to empty. */
  #drainWaiters = new Waiters<void>();

  #checkDrained(): void {
    if (this.#drainWaiters.length === 0) return;
    const empty = this.#queueHead >= this.#queue.length || this.#queue.slice(this.#queueHead).every((t) => t.settled);
    const idle = this.#slots.every((s) => !s.member || s.member.running.size === 0);
    if (!(empty && idle) && !this.#failed) return;
    while (this.#drainWaiters.wake());
  }

  #whenIdle(member: Member<Task>): Promise<void> {
    if (member.running.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (member.running.size === 0) {
          this.#idle.delete(check);
          resolve();
        }
      };
      this.#idle.add(check);
    });
  }

  #wakeIdle(_member: Member<Task>): void {
    for (const check of [...this.#idle]) check();
  }

  async #shutdown(reason: ClosedError): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#checkReady();
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#signals?.[Symbol.dispose]();
    for (let i = this.#queueHead; i < this.#queue.length; i++) this.#settle(this.#queue[i]!, false, reason);
    this.#queue = [];
    this.#queueHead = 0;
    const members = this.#slots.flatMap((s) => (s.member ? [s.member] : []));
    for (const m of members) {
      for (const task of m.running) this.#settle(task, false, reason);
      m.stop();
    }
    await Promise.all(members.map((m) => m.gone));
    await this.#remote?.close();
    while (this.#drainWaiters.wake());
    this.#events.emit({ type: "closed" });
    this.#events.end();
  }
}

function describe(exit: { code: number | null; signal: string | null; expected: boolean }, remote = false): string {
  if (remote) return exit.expected ? "was stopped" : "disconnected (its channel ended or stopped answering)";
  if (exit.signal) return `was killed by ${exit.signal}`;
  if (exit.code !== null) return `exited with code ${exit.code}`;
  return "stopped";
}

function workerTarget(worker: URL | string | string[], kind: "thread" | "process"): URL | string[] {
  if (worker instanceof URL) return worker;
  if (Array.isArray(worker)) {
    if (kind === "thread") throw new TypeError("Cannot start worker threads from an argv: give the module's URL");
    if (worker.length === 0 || !worker.every((a) => typeof a === "string")) {
      throw new TypeError("Cannot start worker processes: argv must be a non-empty array of strings");
    }
    return worker;
  }
  if (typeof worker === "string" && worker !== "") {
    if (/^file:/.test(worker)) return new URL(worker);
    if (worker.startsWith("/")) return new URL(`file://${worker}`);
    throw new TypeError(`Cannot start workers from ${JSON.stringify(worker)}: give a URL or an absolute path`);
  }
  throw new TypeError("Cannot make a pool: worker must be a URL, an absolute path or (processes) an argv");
}

function positiveInt(name: string, v: number, infinite = false): number {
  if ((infinite && v === Infinity) || (Number.isInteger(v) && v >= 1)) return v;
  throw new RangeError(`Cannot use ${name} ${v}: it must be an integer >= 1`);
}

function nonNegative(name: string, v: number): number {
  if (typeof v === "number" && v >= 0 && Number.isFinite(v)) return v;
  throw new RangeError(`Cannot use ${name} ${v}: it must be a number >= 0`);
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}
