/**
 * The worker side of a {@linkcode Pool}: `await worker(handlers)` in the module the pool starts. The same module
 * serves as a worker thread (the pool hands it one end of a shared-memory channel) and as a worker process of any
 * runtime (the pool hands it two pipes, as fds 3 and 4, or with `transport: "shm"` the name of a segment).
 *
 * `handlers` is a function (what `pool.run(task)` calls, with the task) or an object of functions (`run` for
 * `pool.run`, any name for `pool.call(name, ...args)`). Handlers may be async, return AsyncIterables (streamed to
 * the caller), and read `this.signal`: it aborts when the caller cancels or the call's deadline passes.
 *
 * A worker process never outlives its pool: it asks the kernel for SIGKILL when its parent dies
 * (`prctl(PR_SET_PDEATHSIG)`), and it exits when the pool's end of the pipes closes.
 *
 * @example
 * ```ts
 * import { Pool, pool, runtime } from "ipckit";
 * if ((await runtime()).parentPort() !== null) {
 *   await pool.worker((n: number) => n * n); // a worker thread of the pool below: this same module
 * } else {
 *   await using squares = new Pool({ worker: new URL(import.meta.url) });
 *   console.log(await squares.run(9)); // 81
 * }
 * ```
 *
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { PR_SET_PDEATHSIG, SIGKILL } from "../ffi/constants.ts";
import { native } from "../ffi/native.ts";
import { type CallContext, RpcPeer } from "../rpc/peer.ts";
import { runtime } from "../runtimes/detect.ts";
import type { Channel } from "../transports/channel.ts";
import * as pipe from "../transports/pipe.ts";
import * as shm from "../transports/shm.ts";

/** Environment of a worker process: "process" marks it; the parent's pid lets it check it was not orphaned. */
export const ENV_KIND = "IPCKIT_POOL_WORKER";
export const ENV_PARENT = "IPCKIT_POOL_PARENT";
/** Set when the worker process talks over shared memory: the segment's name. */
export const ENV_SHM = "IPCKIT_POOL_SHM";
/** The handler every worker serves besides the user's: who it is (also the pool's liveness probe). */
export const INFO = "ipckit.pool.info";
/** The worker's memory, for `maxMemory`: `{ rss, heapUsed }` in bytes. */
export const MEMORY = "ipckit.pool.memory";
/**
 * A task whose arguments came to a worker thread by postMessage, with their transferred buffers
 * (`RunOptions.transfer`): called with the task's method and the number the arguments were posted under.
 */
export const TRANSFERRED = "ipckit.pool.transferred";
/** The handlers a worker serves besides the user's. */
const RESERVED = [INFO, MEMORY, TRANSFERRED];
/**
 * A worker thread's answer whose value went by postMessage (see {@linkcode move}): `{ [MOVED]: n }` over the ring,
 * the value posted under `n`.
 */
export const MOVED = "ipckit.pool.moved";

/** A handler's result to move to the master rather than copy (see {@linkcode move}). */
class Moved {
  constructor(readonly value: unknown, readonly transfer: ArrayBuffer[]) {}
}

/**
 * Marks a handler's result to be moved to the master instead of copied (piscina's `Piscina.move`): return
 * `move(value, [buffers])` from the handler. In a worker thread the buffers are transferred (detached here, the master
 * gets the same memory: no copy); in a worker process, or over NATS, the value is copied as any result. The transfer
 * list is checked when the handler returns: ArrayBuffers, each once, none detached nor shared.
 *
 * @example
 * ```ts
 * import { Pool, pool, runtime } from "ipckit";
 * if ((await runtime()).parentPort() !== null) {
 *   await pool.worker((n: number) => {
 *     const out = new Float64Array(n).fill(1);
 *     return pool.move(out, [out.buffer]); // the master gets this array, not a copy
 *   });
 * } else {
 *   await using p = new Pool<{ run(n: number): Float64Array }>({ worker: new URL(import.meta.url), size: 1 });
 *   console.log((await p.run(1_000_000)).length); // 1000000
 * }
 * ```
 */
export function move<T>(value: T, transfer: ArrayBuffer[]): T {
  return new Moved(value, transfer) as T;
}

let nextMoved = 1;

/**
 * `fn` with its results unwrapped from {@linkcode move}: posted with their buffers by `post` (a worker thread: the
 * ring carries the number they went under) or, without `post`, returned as they are (copied).
 */
function movable(
  fn: AnyFunction,
  post: ((message: unknown, transfer: ArrayBuffer[]) => void) | undefined,
): AnyFunction {
  const unwrap = (r: unknown): unknown => {
    if (!(r instanceof Moved)) return r;
    if (post === undefined) return r.value;
    checkMoved(r.transfer);
    const n = nextMoved++;
    post({ ipckitResult: n, value: r.value }, r.transfer);
    return { [MOVED]: n };
  };
  return function (this: CallContext, ...args: unknown[]): unknown {
    const r = fn.apply(this, args);
    if (r instanceof Moved) return unwrap(r);
    if (r !== null && typeof r === "object" && typeof (r as PromiseLike<unknown>).then === "function") {
      return (r as PromiseLike<unknown>).then(unwrap);
    }
    return r;
  };
}

/** A result's transfer list, checked as `RunOptions.transfer` is. @throws {TypeError} naming what is wrong. */
function checkMoved(transfer: unknown): void {
  if (!Array.isArray(transfer)) throw new TypeError("Cannot move a result: transfer must be an array of ArrayBuffers");
  const seen = new Set<unknown>();
  for (const [i, b] of transfer.entries()) {
    if (!(b instanceof ArrayBuffer)) {
      throw new TypeError(
        `Cannot move a result: transfer item ${i} is not an ArrayBuffer (a SharedArrayBuffer or a typed array is not ` +
          "moved; give a typed array's .buffer)",
      );
    }
    if (seen.has(b)) throw new TypeError(`Cannot move a result: transfer item ${i} is listed twice`);
    seen.add(b);
  }
}

/** What `INFO` answers. */
export interface WorkerInfo {
  pid: number;
  runtime: string;
  methods: string[];
  /** The host of a remote (NATS) worker. */
  host?: string;
}

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => unknown;

/** A function (served as `run`), or an object of functions. */
export type WorkerHandlers = AnyFunction | Record<string, unknown>;

/**
 * Serves `handlers` to the pool that started this module. Resolves when the pool closes the connection; a worker
 * process then exits.
 *
 * @throws {UnsupportedError} when this module was not started by a Pool.
 * @throws {TypeError} when `handlers` has no function, or uses the reserved name `ipckit.pool.info`.
 *
 * @example
 * ```ts
 * import { type CallContext, Pool, pool, runtime } from "ipckit";
 * const rt = await runtime();
 * const handlers = {
 *   run: (n: number) => n + 1, // what pool.run(task) calls
 *   where: () => `${rt.name} pid ${rt.pid}`, // pool.call("where", [])
 *   async *countdown(this: CallContext, from: number) {
 *     for (let i = from; i > 0 && !this.signal.aborted; i--) yield i; // streamed to the caller
 *   },
 * };
 * if (rt.env("IPCKIT_EXAMPLE_WORKER") !== undefined) {
 *   await pool.worker(handlers); // a worker process: serves until the pool closes it, then the process exits
 * } else {
 *   await using workers = new Pool<typeof handlers>({
 *     worker: new URL(import.meta.url),
 *     kind: "process",
 *     runtime: "bun",
 *     size: 1,
 *     env: { IPCKIT_EXAMPLE_WORKER: "1" },
 *   });
 *   console.log(await workers.run(1)); // 2
 *   console.log(await workers.call("where", [])); // "bun pid ..."
 *   for await (const n of await workers.call("countdown", [3])) console.log(n); // 3, 2, 1
 * }
 * ```
 */
export async function worker(handlers: WorkerHandlers): Promise<void> {
  const table = handlerTable(handlers);
  const rt = await runtime();
  let channel: Channel;
  let done: () => void;
  let host: string | undefined;
  const joining = joiningState();
  /** Reserved handlers of this kind of worker (threads: tasks with transferred buffers). */
  let extra: Record<string, AnyFunction> = {};
  /** A worker thread's way to its master beside the ring (moved results). */
  let post: ((message: unknown, transfer: ArrayBuffer[]) => void) | undefined;
  if (joining) {
    // Started by `ipckit worker --nats`: join a pool over NATS; the command exits when this resolves.
    joining.served = true;
    channel = await joining.connect();
    host = joining.host;
    done = () => {};
  } else if (rt.env(ENV_KIND) === "process") {
    await dieWithParent(Number(rt.env(ENV_PARENT)));
    const segment = rt.env(ENV_SHM);
    channel = segment ? await shm.open(segment, { wait: 60_000 }) : await pipe.inherited();
    done = () => rt.exit(0);
  } else {
    const port = rt.parentPort();
    if (!port) {
      throw new UnsupportedError(
        "Cannot serve as a pool worker: this module was not started by a Pool (no parent thread, no pool pipes)",
      );
    }
    const handle = await new Promise<shm.ShmHandle>((resolve) => {
      port.onMessage((m) => {
        const message = m as { ipckitPool?: shm.ShmHandle; ipckitTask?: number; args?: unknown[] } | null;
        if (typeof message?.ipckitTask === "number") arrived(message.ipckitTask, message.args ?? []);
        else if (message?.ipckitPool) resolve(message.ipckitPool);
      });
    });
    extra = { [TRANSFERRED]: transferred(table) };
    post = (message, transfer) => port.postMessage(message, transfer);
    await loadNative(); // before the channel: its waits then see when the CPUs are all taken (os/load.ts)
    channel = shm.fromHandle(handle);
    done = () => port.close();
  }
  const info: WorkerInfo = {
    pid: rt.pid,
    runtime: rt.name,
    methods: Object.keys(table),
    ...(host === undefined ? {} : { host }),
  };
  // The master is this worker's own supervisor: it sees task errors with their stacks (as a local call would), and it
  // bounds the tasks in flight itself (`concurrency` per worker), so the RPC server's per-connection cap must not.
  // Results marked with move(): posted with their buffers to the parent thread, copied over any other channel.
  const served: Record<string, AnyFunction> = {};
  for (const [name, fn] of Object.entries({ ...table, ...extra })) served[name] = movable(fn, post);
  const peer = new RpcPeer(channel, {
    handlers: { ...served, [INFO]: () => info, [MEMORY]: () => rt.memoryUsage() },
    exposeStack: true,
    maxInFlight: MAX_TASKS_IN_FLIGHT,
  });
  await peer.done;
  done();
}

/**
 * How `ipckit worker --nats` tells `worker()` to join over NATS. A global, not a module variable: the worker module
 * may load another copy of ipckit than the command's (another node_modules, a JSR URL).
 */
const JOIN = Symbol.for("ipckit.pool.join");

/** A worker's cap on tasks in flight: far above any `concurrency`, still a bound. */
const MAX_TASKS_IN_FLIGHT = 1 << 20;
interface Joining {
  connect(): Promise<Channel>;
  host: string | undefined;
  served: boolean;
}
const joiningState = (): Joining | undefined => (globalThis as Record<symbol, Joining | undefined>)[JOIN];

/**
 * Makes `worker()` join a pool through `connect` (a channel to the master) instead of pipes or a parent thread.
 * Used by `ipckit worker --nats`, before it imports the worker module.
 */
export function joinWith(connect: () => Promise<Channel>, host?: string): void {
  (globalThis as Record<symbol, Joining>)[JOIN] = { connect, host, served: false };
}

/** Whether `worker()` was called (by the module itself) since `joinWith`. */
export function workerCalled(): boolean {
  return joiningState()?.served ?? false;
}

function handlerTable(handlers: WorkerHandlers): Record<string, AnyFunction> {
  const table: Record<string, AnyFunction> = {};
  if (typeof handlers === "function") table.run = handlers;
  else if (handlers !== null && typeof handlers === "object") {
    for (const key of Object.keys(handlers)) {
      const fn = handlers[key];
      if (typeof fn === "function") table[key] = fn as AnyFunction;
    }
  }
  if (Object.keys(table).length === 0) {
    throw new TypeError("Cannot serve as a pool worker: handlers must be a function or an object of functions");
  }
  for (const name of RESERVED) {
    if (name in table) throw new TypeError(`Cannot serve as a pool worker: "${name}" is a reserved handler name`);
  }
  return table;
}

/**
 * Arguments that came by postMessage (with their transferred buffers) before their call came over the ring, by the
 * number they were posted under; and calls that came first, waiting for their arguments. The master posts the
 * arguments before it sends the call, but the two paths are not ordered with each other.
 */
const parked = new Map<number, unknown[]>();
const waiting = new Map<number, (args: unknown[]) => void>();

function arrived(id: number, args: unknown[]): void {
  const call = waiting.get(id);
  if (call === undefined) parked.set(id, args);
  else {
    waiting.delete(id);
    call(args);
  }
}

/** The context a handler sees: its own method's name; the call's signal and peer (read from the call itself). */
function ownContext(call: CallContext, method: string): CallContext {
  return {
    get signal() {
      return call.signal;
    },
    method,
    peer: call.peer,
  };
}

/** The `TRANSFERRED` handler: runs `method` with the arguments posted under `id`, as soon as they are here. */
function transferred(table: Record<string, AnyFunction>): AnyFunction {
  return function (this: CallContext, method: string, id: number): unknown {
    const fn = Object.hasOwn(table, method) ? table[method] : undefined;
    if (fn === undefined) throw new TypeError(`Cannot run a task: the worker has no method ${JSON.stringify(method)}`);
    const context = ownContext(this, method);
    const args = parked.get(id);
    if (args !== undefined) {
      parked.delete(id);
      return fn.apply(context, args);
    }
    return new Promise<unknown[]>((resolve) => waiting.set(id, resolve)).then((a) => {
      context.signal.throwIfAborted(); // cancelled while its arguments were on their way
      return fn.apply(context, a);
    });
  };
}

/** Asks the kernel to SIGKILL this process when its parent dies; exits now if the parent is gone already. */
/**
 * Loads FFI when this runtime allows it (Deno without `--allow-ffi` does not): a thread channel made after it knows
 * when the machine's CPUs are all taken and parks instead of spinning then (`os/load.ts`). 1000 trivial tasks at a time
 * on two worker threads: 496-527 k tasks/s against 442-465 k without.
 */
export async function loadNative(): Promise<void> {
  await native().catch(() => {});
}

async function dieWithParent(parent: number): Promise<void> {
  let ffi;
  try {
    ffi = await native();
  } catch {
    return; // no FFI: the pipe's end of stream still ends this worker when its pool goes
  }
  ffi.call.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // The parent may have died before the request: then this process was handed to another parent already.
  if (Number.isInteger(parent) && parent > 0 && ffi.call.getppid() !== parent) (await runtime()).exit(1);
}
