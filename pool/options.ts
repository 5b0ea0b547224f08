/**
 * A pool's options, checked once: the public option types ({@linkcode PoolOptions}, {@linkcode RunOptions},
 * {@linkcode PoolStats}) and `resolveOptions()`, which turns what the caller gave into the settings the scheduler and the
 * supervisor read, throwing `TypeError`/`RangeError` for what cannot work.
 *
 * @module
 */
import { runtimeName } from "../runtimes/detect.ts";
import { UnsupportedError } from "../errors.ts";
import { type ResourceLimits, type RuntimeName, WORKER_LIMITS_UNSUPPORTED } from "../runtimes/runtime.ts";
import type { LatencySummary } from "../shm/stats_latency.ts";
import type { Launch } from "./member.ts";
import { type NatsPoolOptions, RemoteWorkers } from "./remote.ts";

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
   * How worker processes talk to the master: `"shm"` (the default: a shared-memory ring pair, 1.9-2.4x the tasks/s of
   * pipes here; waiting sides spin briefly while spinning pays, see the shm channel's `idle`) or `"pipe"` (two pipes
   * on fds 3 and 4; their stdio stays theirs either way). Worker threads always use a shared-memory ring pair on a
   * SharedArrayBuffer.
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
  /** The pool's name in `ipckit stats` (its first 52 bytes). Default: `thread pool <n>` or `process pool <n>`. */
  name?: string;
  /**
   * Milliseconds of waiting worth one priority level (default 1000; `Infinity`: strict priority). A queued task is
   * overtaken only by tasks of higher priority queued less than `(their priority - its priority) * priorityAging`
   * ms after it: with the default, a task of priority 0 is passed over by priority-1 tasks queued within the
   * second after it, and then runs before any queued later.
   */
  priorityAging?: number;
  /**
   * A worker that ran this many tasks is replaced (tinypool's `maxTasksPerWorker`: against leaks that a restart
   * clears): a new one takes the slot's new tasks, the old one finishes its own, then stops. None by default.
   */
  maxTasksPerWorker?: number;
  /**
   * A worker that holds more than this many bytes is replaced, as by `maxTasksPerWorker` (tinypool's
   * `maxMemoryLimitBeforeRecycle`): a worker process's resident set, a worker thread's own JS heap (`heapUsed`: its
   * ArrayBuffers are outside it). The pool asks the worker after a task, at most every 100 ms (and an idle worker on
   * each `heartbeat`), so the trivial-task path stays as it is; a worker can pass the limit by what it allocates in
   * that time. None by default.
   */
  maxMemory?: number;
  /**
   * Thread pools on Node: the engine limits of each worker thread (node:worker_threads' `resourceLimits`, in MiB). A
   * thread that passes them ends at once and is replaced; its tasks are handled as for any worker that died. Deno and
   * Bun refuse them with `UnsupportedError` (Bun's threads ignore them; a Deno thread that reaches them while it runs
   * a task stops without ending): use `maxMemory` there.
   */
  resourceLimits?: ResourceLimits;
  /**
   * An elastic pool: it starts `size` workers, starts more while tasks wait and no worker has room, up to `maxSize`,
   * and stops those past `minSize` that ran nothing for `idleTimeout` ms (to twice that). Both default to `size`
   * (a fixed pool). Not with `transport: "nats"` (workers join by themselves there).
   */
  minSize?: number;
  maxSize?: number;
  /** How long a worker past `minSize` may stay idle before it stops, in ms. Default 10 000. */
  idleTimeout?: number;
}

/** Options of one task. */
export interface RunOptions {
  /** Cancels the task: removed from the queue, or its handler's `this.signal` aborts. */
  signal?: AbortSignal;
  /** Deadline in ms: the task rejects with `TimeoutError` and its handler's `this.signal` aborts. */
  timeout?: number;
  /** The task may run again if its worker dies before it finishes (it is safe to run twice). Default false. */
  idempotent?: boolean;
  /**
   * Higher runs first: a finite number, 0 by default; tasks of one priority run in the order they were queued.
   * Waiting counts too (the pool's `priorityAging`), so a task is not held back for ever by more urgent ones.
   */
  priority?: number;
  /**
   * Tasks with the same key (a string or a number: a user, a tenant, a cache shard) run on the same worker while it
   * lives: the first goes to the least busy worker and binds the key to it, the next ones wait for that worker
   * (in their priority order) even if others are free. When it dies or is replaced the key is free again, and its
   * waiting tasks go first to whichever worker takes them next. The last 100 000 keys are remembered.
   */
  affinity?: string | number;
  /**
   * ArrayBuffers to move to the worker instead of copying (piscina's `transferList`): they are detached here as
   * `run()` returns (`byteLength` 0), and a worker thread gets the very memory, wherever they are in the arguments.
   * A worker process cannot share this memory: the bytes are copied to it as any argument is, and the buffers are
   * detached here all the same, so code behaves alike on both kinds. A task with a transfer runs at most once (a
   * worker that dies takes the buffers with it): `idempotent` does not re-run it. A task refused (bad list, full
   * queue, closed pool) leaves them whole. With a transfer, a thread's arguments travel as a structured clone (an
   * ArrayBuffer stays one) instead of ipckit's CBOR. Not with `map()`; results come back copied.
   */
  transfer?: ArrayBuffer[];
}

/** One worker's answer to `pool.broadcast()`: its slot, its id (pid, or a thread's number), and its value or error. */
export type BroadcastAnswer<T> =
  | { slot: number; id: number; ok: true; value: T }
  | { slot: number; id: number; ok: false; error: unknown };

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
    /** The worker's memory at the last look, in bytes (see `maxMemory`; only pools with `maxMemory` look). */
    memory?: number;
  }>;
  /**
   * How long tasks waited for a worker, and how long they ran (from dispatch to answer, every method), in
   * microseconds: one task in 8 is timed (`stats` module, latency slots `<pool> · wait` and `<pool> · call <m>`).
   */
  waitTime: LatencySummary;
  runTime: LatencySummary;
}

/** The options with every default filled in (what the scheduler, the supervisor and the pool read). */
export type Settings =
  & Required<
    Omit<
      PoolOptions,
      "env" | "cwd" | "taskTimeout" | "runtime" | "worker" | "transport" | "nats" | "name" | "resourceLimits"
    >
  >
  & PoolOptions;

/** What `resolveOptions()` makes of a pool's options. */
export interface Resolved {
  readonly settings: Settings;
  readonly kind: "thread" | "process";
  /** The runtime of each slot the pool fills itself, round-robin. */
  readonly runtimes: RuntimeName[];
  /** How to start a worker; undefined with `transport: "nats"` (workers join, the pool starts none). */
  readonly launch: Omit<Launch, "runtime"> | undefined;
}

/**
 * Checks a pool's options and fills in the defaults.
 *
 * @throws {TypeError} / {RangeError} for bad options.
 */
export function resolveOptions(options: PoolOptions): Resolved {
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
  // Worker processes default to shm too: measured faster than pipes for workers of every runtime (issue 18: Node
  // 120 k against 51 k tasks/s, Bun 85 k against 40 k, Deno 92 k against 16 k; docs/performance.md).
  const transport = o.transport ?? "shm";
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
  const size = positiveInt("size", o.size ?? (transport === "nats" ? 1 : 2));
  const settings: Settings = {
    ...o,
    kind,
    size,
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
    priorityAging: aging(o.priorityAging ?? 1000),
    minSize: positiveInt("minSize", o.minSize ?? Math.min(size, o.maxSize ?? size)),
    maxSize: positiveInt("maxSize", o.maxSize ?? Math.max(size, o.minSize ?? size)),
    idleTimeout: positiveInt("idleTimeout", o.idleTimeout ?? 10_000),
    maxTasksPerWorker: o.maxTasksPerWorker === undefined
      ? Infinity
      : positiveInt("maxTasksPerWorker", o.maxTasksPerWorker),
    maxMemory: o.maxMemory === undefined ? Infinity : bytes("maxMemory", o.maxMemory),
  };
  if (o.resourceLimits !== undefined) checkLimits(o.resourceLimits, kind, transport, here);
  if (o.taskTimeout !== undefined) nonNegative("taskTimeout", o.taskTimeout);
  if (!(settings.minSize <= size && size <= settings.maxSize)) {
    throw new RangeError(
      `Cannot make a pool of ${size} workers with minSize ${settings.minSize} and maxSize ${settings.maxSize}: ` +
        "it needs minSize <= size <= maxSize",
    );
  }
  if (transport === "nats" && (o.minSize !== undefined || o.maxSize !== undefined)) {
    throw new TypeError(
      "Cannot make a NATS pool elastic: its workers join by themselves (size is how many to wait for)",
    );
  }
  if (o.name !== undefined && (typeof o.name !== "string" || o.name === "")) {
    throw new TypeError(`Cannot name a pool ${JSON.stringify(o.name)}: the name must be a non-empty string`);
  }
  const launch = worker === undefined || transport === "nats" ? undefined : {
    kind,
    worker,
    transport,
    startTimeout: settings.startTimeout,
    capacity: settings.capacity,
    ...(o.resourceLimits === undefined ? {} : { resourceLimits: { ...o.resourceLimits } }),
    ...(o.env === undefined ? {} : { env: o.env }),
    ...(o.cwd === undefined ? {} : { cwd: o.cwd }),
  };
  return { settings, kind: transport === "nats" ? "process" : kind, runtimes, launch };
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

/**
 * `v` when it is an integer >= 1 (or Infinity where allowed).
 *
 * @throws {RangeError} otherwise, naming the option.
 */
export function positiveInt(name: string, v: number, infinite = false): number {
  if ((infinite && v === Infinity) || (Number.isInteger(v) && v >= 1)) return v;
  throw new RangeError(`Cannot use ${name} ${v}: it must be an integer >= 1`);
}

const LIMITS = ["maxOldGenerationSizeMb", "maxYoungGenerationSizeMb", "codeRangeSizeMb", "stackSizeMb"];

/**
 * Checks `resourceLimits`: thread pools only, each a number of MiB > 0, on a runtime that honours them.
 *
 * @throws {TypeError} / {RangeError} for a process pool, an unknown key, a bad number; {@linkcode UnsupportedError}
 * on a runtime whose threads do not honour them (Bun, Deno).
 */
function checkLimits(limits: ResourceLimits, kind: "thread" | "process", transport: string, here: RuntimeName): void {
  if (kind !== "thread" || transport === "nats") {
    throw new TypeError(
      "Cannot use resourceLimits with worker processes: they limit worker threads (use maxMemory, or the runtime's " +
        "own flags in the worker's argv, e.g. --max-old-space-size)",
    );
  }
  if (limits === null || typeof limits !== "object") {
    throw new TypeError("Cannot use resourceLimits: it must be an object of limits in MiB");
  }
  for (const [key, v] of Object.entries(limits)) {
    if (!LIMITS.includes(key)) {
      throw new TypeError(`Cannot use resourceLimits.${key}: the limits are ${LIMITS.join(", ")}`);
    }
    if (typeof v !== "number" || !(v > 0) || !Number.isFinite(v)) {
      throw new RangeError(`Cannot use resourceLimits.${key} ${v}: it must be a number of MiB > 0`);
    }
  }
  const why = WORKER_LIMITS_UNSUPPORTED[here];
  if (why !== undefined) {
    throw new UnsupportedError(`Cannot limit worker threads with resourceLimits on ${here}: ${why}; use maxMemory`);
  }
}

function aging(v: number): number {
  if (typeof v === "number" && v > 0) return v; // Infinity included: strict priority
  throw new RangeError(`Cannot use priorityAging ${v}: it must be a number of ms > 0 (Infinity: strict priority)`);
}

function bytes(name: string, v: number): number {
  if (Number.isInteger(v) && v >= 1) return v;
  throw new RangeError(`Cannot use ${name} ${v}: it must be a number of bytes, an integer >= 1 (e.g. 512 * 2 ** 20)`);
}

function nonNegative(name: string, v: number): number {
  if (typeof v === "number" && v >= 0 && Number.isFinite(v)) return v;
  throw new RangeError(`Cannot use ${name} ${v}: it must be a number >= 0`);
}
