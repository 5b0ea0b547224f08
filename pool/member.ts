/**
 * One started worker of a pool: a worker thread on a shared-memory channel, or a worker process of any runtime on
 * two pipes, with the RPC peer that talks to it and the tasks it holds. The pool decides what to do when it dies.
 *
 * @module
 */
import { within } from "../async/mod.ts";
import { ClosedError, TimeoutError, WorkerDiedError } from "../errors.ts";
import { RpcPeer } from "../rpc/peer.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { runtime } from "../runtimes/detect.ts";
import {
  type ChildProcess,
  type ResourceLimits,
  type RuntimeName,
  RUNTIMES,
  type WorkerHandle,
} from "../runtimes/runtime.ts";
import type { Channel } from "../transports/channel.ts";
import * as pipe from "../transports/pipe.ts";
import * as shm from "../transports/shm.ts";
import { ENV_KIND, ENV_PARENT, ENV_SHM, INFO, loadNative, MOVED, type WorkerInfo } from "./worker.ts";

/** How to start one worker. */
export interface Launch {
  kind: "thread" | "process";
  /** The worker module (threads, and processes of `runtime`), or the full argv of a process. */
  worker: URL | string[];
  runtime: RuntimeName;
  env?: Record<string, string>;
  cwd?: string;
  /** Milliseconds a new worker has to answer before it counts as failed. */
  startTimeout: number;
  /** How a process talks to the master: two pipes (fds 3 and 4), or a shared-memory ring pair. Threads: shm. */
  transport: "pipe" | "shm";
  /** The shm ring size, in bytes. */
  capacity: number;
  /** A thread's engine limits (`PoolOptions.resourceLimits`). */
  resourceLimits?: ResourceLimits;
  /**
   * The pool's name in `ipckit stats`: each worker's connection is named after it, so the calls of every worker
   * count and are timed together, per method (`<name> · call <method>`).
   */
  name?: string;
}

/** Where a member is in its life. */
export type MemberState = "starting" | "ready" | "draining" | "stopping" | "dead";

/** How a member ended. */
export interface MemberExit {
  code: number | null;
  signal: string | null;
  /** True when the pool stopped it (close, reload, terminate); false when it died on its own or hung. */
  expected: boolean;
  /** What a thread died of, when it said (its uncaught error, or `ERR_WORKER_OUT_OF_MEMORY` past resourceLimits). */
  error?: string;
}

let threads = 0;
/** How long a worker whose connection ended may take to exit by itself before it is killed, in ms. */
const GRACE = 1000;

/** A started worker. */
export class Member<T = unknown> {
  readonly kind: "thread" | "process";
  readonly runtime: RuntimeName;
  /** The process's pid, or for a thread a number unique in this process. */
  readonly id: number;
  readonly peer: RpcPeer;
  state: MemberState = "starting";
  /** Tasks started on this member and not finished. */
  readonly running = new Set<T>();
  done = 0;
  /** True for a worker that joined over NATS (the pool cannot start or kill it). */
  remote = false;
  /** The host a remote worker runs on, as it said. */
  host: string | undefined;
  /** A thread's side path for transferred buffers (`RunOptions.transfer`): posts to the thread itself. */
  post: ((message: unknown, transfer: ArrayBuffer[]) => void) | undefined;
  /** Results a thread moved (`pool.move`) that came before their answer over the ring, by number; and answers first. */
  readonly #moved = new Map<number, unknown>();
  readonly #claims = new Map<number, (value: unknown) => void>();
  /** Its memory at the last look (`maxMemory`), in bytes; when that look began (performance.now()); one under way. */
  memory: number | undefined;
  sampledAt = -Infinity;
  sampling = false;
  /** A look at its memory due at the end of the interval (tasks finished since the last one). */
  sampleTimer: ReturnType<typeof setTimeout> | undefined;
  /** Resolves once, when the worker is gone (its connection ended, and it was made sure to stop). */
  readonly gone: Promise<MemberExit>;
  #expected = false;
  readonly #kill: () => void;

  private constructor(
    kind: "thread" | "process",
    rt: RuntimeName,
    id: number,
    peer: RpcPeer,
    kill: () => void,
    exited: Promise<{ code: number | null; signal: string | null; error?: string }>,
  ) {
    this.kind = kind;
    this.runtime = rt;
    this.id = id;
    this.peer = peer;
    this.#kill = kill;
    // The connection ends when the worker dies (pipe EOF, thread exit) or is stopped. Make sure it is stopped
    // (a worker that closed its end but lives on is useless), then report how it ended.
    this.gone = peer.done.then(async () => {
      this.state = "dead";
      // A crashed worker is exiting already: give it a moment, so its own exit status is the one reported.
      if (!(await within(exited, GRACE))) kill();
      return { ...(await exited), expected: this.#expected };
    });
  }

  /** The number a thread's answer names its moved result by (`{ [MOVED]: n }`), or undefined for any other answer. */
  movedNumber(value: unknown): number | undefined {
    if (this.post === undefined || value === null || typeof value !== "object" || !Object.hasOwn(value, MOVED)) {
      return undefined;
    }
    const n = (value as Record<string, unknown>)[MOVED];
    return typeof n === "number" ? n : undefined;
  }

  /** A result the thread posted (moved) under `n`. */
  arrived(n: number, value: unknown): void {
    const claim = this.#claims.get(n);
    if (claim === undefined) this.#moved.set(n, value);
    else {
      this.#claims.delete(n);
      claim(value);
    }
  }

  /**
   * Hands the result moved under `n` to `take`, now or when it comes. The two paths are not ordered with each other;
   * a thread that dies between them leaves `take` uncalled (its task is settled by the death, as any running task).
   */
  claim(n: number, take: (value: unknown) => void): void {
    if (this.#moved.has(n)) {
      const value = this.#moved.get(n);
      this.#moved.delete(n);
      take(value);
    } else this.#claims.set(n, take);
  }

  /**
   * `value` as the handler returned it: a thread's moved result (`{ [MOVED]: n }` over the ring) once it came, or the
   * value itself. Rejects with {@linkcode WorkerDiedError} if the thread ends before its moved result came.
   */
  unmoved(value: unknown): unknown {
    const n = this.movedNumber(value);
    if (n === undefined) return value;
    return new Promise((resolve, reject) => {
      this.claim(n, resolve);
      void this.gone.then(() =>
        reject(
          new WorkerDiedError(`Worker thread ${this.id} ended before its result came`, {
            worker: this.id,
            attempts: 1,
          }),
        )
      );
    });
  }

  /**
   * Starts a worker and waits until it answers.
   *
   * @throws {TimeoutError} when it does not answer within `startTimeout` (it is killed); {@linkcode ClosedError}
   * when it exits first.
   */
  static async start<T>(launch: Launch): Promise<Member<T>> {
    const rt = await runtime();
    let member: Member<T>;
    const named = launch.name === undefined ? {} : { name: launch.name };
    if (launch.kind === "thread") {
      await loadNative(); // see loadNative: the master's end of the channel too
      const [here, handle] = shm.pair({ capacity: launch.capacity });
      let w: WorkerHandle;
      try {
        w = rt.worker(launch.worker as URL, {
          name: `ipckit-pool-${threads + 1}`,
          ...(launch.resourceLimits === undefined ? {} : { resourceLimits: launch.resourceLimits }),
        });
      } catch (e) {
        await here.close();
        throw e;
      }
      const id = ++threads;
      let exit!: (s: { code: number | null; signal: string | null; error?: string }) => void;
      const exited = new Promise<{ code: number | null; signal: string | null; error?: string }>((r) => (exit = r));
      let error: string | undefined;
      // An uncaught error (or the engine's memory limit) ends the thread: reported through onExit, with what it was.
      w.onError((e) => {
        const code = (e as { code?: unknown })?.code;
        error ??= `${typeof code === "string" ? `${code}: ` : ""}${(e as Error)?.message ?? String(e)}`;
      });
      w.onExit((code) => {
        exit({ code, signal: null, ...(error === undefined ? {} : { error }) });
        void here.close(); // ends the peer: its pending calls reject
      });
      w.postMessage({ ipckitPool: handle });
      const made = member = new Member<T>(
        "thread",
        rt.name,
        id,
        new RpcPeer(here, named),
        () => void w.terminate(),
        exited,
      );
      member.post = (message, transfer) => w.postMessage(message, transfer);
      // Results the thread moved (`pool.move`): they come beside the ring, their answer over it names them.
      w.onMessage((m) => {
        const moved = m as { ipckitResult?: unknown; value?: unknown } | null;
        if (typeof moved?.ipckitResult === "number") made.arrived(moved.ipckitResult, moved.value);
      });
    } else {
      const argv = Array.isArray(launch.worker)
        ? launch.worker
        : runtimeArgv(launch.runtime, rt.fromFileUrl(launch.worker)); // a .js worker runs on node without tsx
      const env = { ...launch.env, [ENV_KIND]: "process", [ENV_PARENT]: String(rt.pid) };
      const cwd = launch.cwd === undefined ? {} : { cwd: launch.cwd };
      const { channel, child } = launch.transport === "shm"
        ? await spawnOnShm(argv, env, cwd, launch)
        : await pipe.spawn(argv, { over: "fds", env, ...cwd });
      member = new Member<T>(
        "process",
        launch.runtime,
        child.pid,
        new RpcPeer(channel, named),
        kill(child),
        child.exited,
      );
    }
    try {
      const info = await member.peer.callWith(INFO, [], { timeout: launch.startTimeout }) as WorkerInfo;
      if (!info || typeof info.pid !== "number") throw new ClosedError("the worker answered nonsense");
    } catch (e) {
      member.stop(0);
      await member.gone;
      if (e instanceof TimeoutError) {
        throw new TimeoutError(`Cannot start a pool worker: it did not answer within ${launch.startTimeout} ms`, {
          cause: e,
        });
      }
      throw new ClosedError(`Cannot start a pool worker: ${(e as Error)?.message ?? e}`, { cause: e });
    }
    if (member.state === "starting") member.state = "ready";
    return member;
  }

  /**
   * Stops the worker: closes the connection (a process then exits by itself; a thread is terminated) and kills
   * it if it is still there after `grace` milliseconds. Counts as expected.
   */
  stop(grace = 2000): void {
    if (this.state === "dead") return;
    this.#expected = true;
    this.state = "stopping";
    if (this.kind === "thread" || grace <= 0) {
      this.#kill();
      this.peer.close().catch(() => {});
      return;
    }
    this.peer.close().catch(() => {});
    void within(this.gone, grace).then((gone) => gone || this.#kill());
  }

  /**
   * Adopts a worker that joined from elsewhere (over NATS) once it answers; its connection is named `name` (the
   * pool's) in `ipckit stats`. It cannot be killed from here:
   * "kill" and "stop" close its channel, and the worker exits when it sees that.
   *
   * @throws {ClosedError} / {@linkcode TimeoutError} when it does not answer within `startTimeout`.
   */
  static async remote<T>(channel: Channel, startTimeout: number, name?: string): Promise<Member<T>> {
    const peer = new RpcPeer(channel, name === undefined ? {} : { name });
    let info: WorkerInfo;
    try {
      info = await peer.callWith(INFO, [], { timeout: startTimeout }) as WorkerInfo;
      if (!info || typeof info.pid !== "number" || typeof info.runtime !== "string") {
        throw new ClosedError("the worker answered nonsense");
      }
    } catch (e) {
      await peer.close().catch(() => {});
      throw e;
    }
    const exited = peer.done.then(() => ({ code: null, signal: null }));
    const rt = RUNTIMES.includes(info.runtime as RuntimeName) ? info.runtime as RuntimeName : "node";
    const member = new Member<T>("process", rt, info.pid, peer, () => void peer.close().catch(() => {}), exited);
    member.host = typeof info.host === "string" ? info.host : undefined;
    member.remote = true;
    member.state = "ready";
    return member;
  }

  /** Kills the worker now (a hung worker): not expected, so the pool treats it as a death. */
  kill(): void {
    if (this.state === "dead") return;
    this.#kill();
    this.peer.close().catch(() => {});
  }
}

let segments = 0;

/**
 * Starts a worker process that opens a shared-memory channel named in its environment. The name is gone from
 * /dev/shm as soon as the worker attached (or the start failed).
 */
async function spawnOnShm(
  argv: string[],
  env: Record<string, string>,
  cwd: { cwd?: string },
  launch: Launch,
): Promise<{ channel: shm.ShmChannel; child: ChildProcess }> {
  const rt = await runtime();
  const name = `/ipckit-pool-${rt.pid}-${++segments}`;
  const ac = new AbortController();
  const attached = shm.create(name, { capacity: launch.capacity, signal: ac.signal });
  let child: ChildProcess;
  try {
    child = rt.spawn(argv, { ...cwd, env: { ...env, [ENV_SHM]: name }, stdio: "inherit" });
  } catch (e) {
    ac.abort(e);
    await attached.catch(() => {});
    throw e;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const giveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError("it did not attach in time")), launch.startTimeout);
    void child.exited.then((s) => reject(new ClosedError(`it exited first (${JSON.stringify(s)})`)));
  });
  try {
    return { channel: await Promise.race([attached, giveUp]), child };
  } catch (e) {
    ac.abort(e);
    await attached.catch(() => {});
    child.kill("SIGKILL");
    throw new ClosedError(`Cannot start a pool worker on shared memory: ${(e as Error).message}`, { cause: e });
  } finally {
    clearTimeout(timer);
  }
}

function kill(child: ChildProcess): () => void {
  return () => child.kill("SIGKILL");
}
