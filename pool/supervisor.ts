/**
 * A pool's supervisor: the worker slots and what happens to them. It starts a worker per slot (or adopts the
 * workers that join over NATS, one slot each), restarts a dead one after a back-off that doubles from
 * `restartDelay` up to 5 s, gives a slot up after `maxRestarts` failures within `restartWindow` (and fails the
 * pool when every slot gave up), re-queues or loses the tasks a dead worker held, probes idle workers every
 * `heartbeat` ms, and replaces the workers one at a time on `reload()`. The queue itself is the scheduler's
 * (`pool/scheduler.ts`).
 *
 * @module
 */
import { TimeoutError, WorkerDiedError } from "../errors.ts";
import type { RuntimeName } from "../runtimes/runtime.ts";
import type { EventLog } from "./events.ts";
import { type Launch, Member, type MemberExit } from "./member.ts";
import type { PoolStats, Settings } from "./options.ts";
import { RemoteWorkers } from "./remote.ts";
import type { Scheduler, Task, Workers } from "./scheduler.ts";
import { INFO, MEMORY } from "./worker.ts";

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

/** What the supervisor needs to know of the pool. */
export interface PoolState {
  /** The pool's name (`ipckit stats`): remote workers' connections are named after it, as local ones are. */
  readonly name: string;
  /** True once the pool is shut down. */
  closed(): boolean;
  /** True once the pool is closing (draining) or shut down: no worker is started or restarted any more. */
  stopping(): boolean;
  /** The workers changed (one is ready, or the pool failed): the pool re-checks `ready()`. */
  changed(): void;
}

const MAX_BACKOFF = 5000;
/** How often a busy worker's memory is looked at, at most (`maxMemory`), in ms. */
const MEMORY_SAMPLE_MS = 100;

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

/** The worker slots of a pool, supervised. */
export class Supervisor implements Workers {
  /** Restarts of every slot so far. */
  restarts = 0;
  /** Set once nothing can run any more: every slot gave up, or workers cannot join at all. */
  failed: Error | undefined;
  readonly #o: Settings;
  readonly #launch: Omit<Launch, "runtime"> | undefined;
  /** Workers that join over NATS (transport "nats"), instead of slots the pool fills itself. */
  readonly #remote: RemoteWorkers<Task> | undefined;
  readonly #events: EventLog;
  readonly #tasks: Scheduler;
  readonly #pool: PoolState;
  #slots: Slot[] = [];
  #nextSlot = 0;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  readonly #runtimes: RuntimeName[];
  /** Elastic pools (`maxSize` > `minSize`): looks for idle workers past `minSize` every `idleTimeout` ms. */
  #idleCheck: ReturnType<typeof setInterval> | undefined;
  /** Per member, its `done` count at the last idle check (unchanged and nothing running: idle since). */
  readonly #doneAtCheck = new WeakMap<Member<Task>, number>();

  /** Starts the workers (or, over NATS, takes those that join) in the background, and the heartbeat. */
  constructor(
    settings: Settings,
    launch: Omit<Launch, "runtime"> | undefined,
    runtimes: RuntimeName[],
    events: EventLog,
    tasks: Scheduler,
    pool: PoolState,
  ) {
    this.#o = settings;
    this.#launch = launch;
    this.#events = events;
    this.#tasks = tasks;
    this.#pool = pool;
    this.#runtimes = runtimes;
    if (launch === undefined) {
      this.#remote = new RemoteWorkers<Task>(settings.nats!, settings.startTimeout, pool.name);
      this.#remote.start(
        (member) => this.#join(member),
        (error) => this.fail(error, "Cannot take workers from NATS"),
      ).catch((error) => this.fail(error, "Cannot take workers from NATS"));
    }
    for (let i = 0; i < (launch ? settings.size : 0); i++) {
      this.#slots.push(newSlot(i, runtimes[i % runtimes.length]!));
    }
    this.#nextSlot = this.#slots.length;
    for (const slot of this.#slots) void this.#spawn(slot);
    if (settings.heartbeat > 0) {
      this.#heartbeat = setInterval(() => this.#probe(), settings.heartbeat);
      unref(this.#heartbeat);
    }
    if (launch && settings.maxSize > settings.minSize) {
      this.#idleCheck = setInterval(() => this.#shrink(), settings.idleTimeout);
      unref(this.#idleCheck);
    }
  }

  /**
   * Tasks are waiting and no worker has room: an elastic pool starts workers, up to `maxSize`, one per waiting task
   * beyond those already starting.
   */
  grow(waiting: number): void {
    if (this.#launch === undefined || this.#slots.length >= this.#o.maxSize || this.#pool.stopping()) return;
    let starting = 0;
    for (const s of this.#slots) if (s.restarting || s.member?.state === "starting") starting++;
    while (starting < waiting && this.#slots.length < this.#o.maxSize) {
      const slot = newSlot(this.#nextSlot++, this.#runtimes[this.#slots.length % this.#runtimes.length]!);
      this.#slots.push(slot);
      this.#events.emit({ type: "worker-grow", slot: slot.index, size: this.#slots.length });
      void this.#spawn(slot);
      starting++;
    }
  }

  /** Stops workers past `minSize` that ran nothing since the last check (idle for `idleTimeout` to twice that). */
  #shrink(): void {
    if (this.#pool.stopping()) return;
    for (const slot of [...this.#slots]) {
      if (this.#slots.length <= this.#o.minSize) return;
      const m = slot.member;
      if (!m || m.state !== "ready" || m.running.size > 0) continue;
      const before = this.#doneAtCheck.get(m);
      this.#doneAtCheck.set(m, m.done);
      if (before !== m.done) continue; // it ran something since the last look (or this is the first look)
      this.#slots = this.#slots.filter((s) => s !== slot);
      this.#events.emit({ type: "worker-shrink", slot: slot.index, id: m.id, size: this.#slots.length });
      void this.#retire(m);
    }
  }

  /** The worker slots, in order (the scheduler reads their members). */
  get slots(): readonly Slot[] {
    return this.#slots;
  }

  slotOf(member: Member<Task>): number {
    return this.#slots.find((s) => s.member === member)?.index ?? -1;
  }

  /** Whether `ready()` can resolve: every slot's worker answered (over NATS: `size` workers joined). */
  get ready(): boolean {
    return this.#remote
      ? this.#slots.filter((s) => s.member?.state === "ready").length >= this.#o.size
      : this.#slots.every((s) => s.member?.state === "ready");
  }

  /** The state of each slot, and the tasks running on all of them. */
  stats(kind: "thread" | "process"): { running: number; workers: PoolStats["workers"] } {
    let running = 0;
    const workers = this.#slots.map((s) => {
      const m = s.member;
      running += m?.running.size ?? 0;
      return {
        slot: s.index,
        kind,
        runtime: s.runtime,
        id: m?.id,
        ...(m?.host === undefined ? {} : { host: m.host }),
        state: s.gaveUp
          ? "gave up" as const
          : m
          ? m.state
          : this.#pool.closed()
          ? "dead" as const
          : "restarting" as const,
        running: m?.running.size ?? 0,
        done: m?.done ?? 0,
        restarts: s.restarts,
        ...(m?.memory === undefined ? {} : { memory: m.memory }),
      };
    });
    return { running, workers };
  }

  /** Starts the worker of `slot`; a failure to start counts as a death. */
  async #spawn(slot: Slot): Promise<void> {
    slot.restarting = true;
    let fresh: Member<Task>;
    try {
      fresh = await Member.start<Task>({ ...this.#launch!, runtime: slot.runtime });
    } catch (e) {
      slot.restarting = false;
      if (this.#pool.stopping()) return;
      this.#events.emit({ type: "worker-failed", slot: slot.index, error: String((e as Error)?.message ?? e) });
      return this.#failure(slot, e);
    }
    slot.restarting = false;
    if (this.#pool.closed()) {
      fresh.stop(0);
      return;
    }
    this.#adopt(slot, fresh);
    this.#tasks.schedule();
  }

  /** A worker joined over NATS: it gets a slot of its own. */
  #join(member: Member<Task>): void {
    if (this.#pool.stopping()) return member.stop(0);
    const slot = newSlot(this.#nextSlot++, member.runtime);
    this.#slots.push(slot);
    this.#adopt(slot, member);
    this.#tasks.schedule();
  }

  #adopt(slot: Slot, member: Member<Task>): void {
    slot.member = member;
    this.#events.emit({ type: "worker-ready", slot: slot.index, id: member.id, runtime: member.runtime });
    void member.gone.then((exit) => this.#gone(slot, member, exit));
    this.#pool.changed();
  }

  #gone(slot: Slot, member: Member<Task>, exit: MemberExit) {
    if (slot.member === member) slot.member = undefined;
    this.#events.emit({ type: "worker-exit", slot: slot.index, id: member.id, ...exit });
    // Its tasks: re-run the idempotent ones, the others are lost with it.
    for (const task of member.running) {
      task.member = undefined;
      if (task.timer !== undefined) clearTimeout(task.timer);
      task.timer = undefined;
      if (task.settled) continue;
      if (task.retriesLeft > 0 && !task.options.signal?.aborted && !this.#pool.closed()) {
        task.retriesLeft--;
        this.#events.emit({ type: "task-retry", task: task.id, id: member.id });
        this.#tasks.requeue(task); // first in line
      } else {
        this.#events.emit({ type: "task-lost", task: task.id, id: member.id });
        this.#tasks.settle(
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
    this.#tasks.memberGone(member);
    this.#tasks.wakeIdle();
    if (member.remote) {
      this.#slots = this.#slots.filter((s) => s !== slot); // its place goes with it: workers join, not restart
    } else if (!exit.expected && !this.#pool.stopping()) {
      this.#failure(slot, new Error(`worker ${member.id} ${describe(exit)}`));
    }
    this.#tasks.schedule();
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
      if (this.#slots.every((s) => s.gaveUp)) this.fail(error);
      return;
    }
    const delay = Math.min(this.#o.restartDelay * 2 ** (slot.failures.length - 1), MAX_BACKOFF);
    slot.restarts++;
    this.restarts++;
    slot.restarting = true;
    this.#events.emit({ type: "worker-restart", slot: slot.index, delay });
    // Not unref'd: a pool waiting to restart a worker is as alive as one with workers.
    setTimeout(() => {
      if (!this.#pool.stopping()) void this.#spawn(slot);
      else slot.restarting = false;
    }, delay);
  }

  /** Every slot gave up (or workers cannot join at all): nothing can run any more; queued tasks reject. */
  fail(cause: unknown, why?: string): void {
    if (this.failed || this.#pool.closed()) return;
    this.failed = new WorkerDiedError(
      why === undefined
        ? `Cannot run tasks: every worker of the pool keeps dying (${this.#o.maxRestarts} failures within ` +
          `${this.#o.restartWindow} ms each; last: ${(cause as Error)?.message ?? cause})`
        : `${why}: ${(cause as Error)?.message ?? cause}`,
      { attempts: 0 },
      { cause },
    );
    this.#tasks.fail(this.failed);
    this.#pool.changed();
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
      // An idle worker's memory too: the last task's look may have been skipped (too soon after the one before).
      if (Number.isFinite(this.#o.maxMemory)) this.#sample(m);
    }
  }

  /**
   * `member` finished a task (pool with `maxMemory`): asks for its memory if none was asked for in the last
   * `MEMORY_SAMPLE_MS`, and recycles it when it holds more than `maxMemory` (a process its rss, a thread its heap).
   */
  checkMemory(member: Member<Task>): void {
    if (member.sampling || member.sampleTimer !== undefined) return;
    const wait = member.sampledAt + MEMORY_SAMPLE_MS - performance.now();
    if (wait <= 0) return this.#sample(member);
    // Too soon after the last look: one look when the interval ends, for what the tasks since then did (a burst of
    // short tasks that leak must not go unseen until the next heartbeat).
    member.sampleTimer = setTimeout(() => {
      member.sampleTimer = undefined;
      this.#sample(member);
    }, wait);
    unref(member.sampleTimer);
  }

  #sample(member: Member<Task>): void {
    if (member.sampling || member.state !== "ready" || this.#pool.stopping()) return;
    member.sampling = true;
    member.sampledAt = performance.now();
    member.peer.callWith(MEMORY, [], { timeout: 10_000 }).then((usage) => {
      const u = usage as { rss?: unknown; heapUsed?: unknown } | null;
      const bytes = member.kind === "thread" ? u?.heapUsed : u?.rss;
      if (typeof bytes !== "number") return;
      member.memory = bytes;
      if (bytes > this.#o.maxMemory) this.recycle(member, bytes);
    }).catch(() => {}).finally(() => (member.sampling = false)); // a worker that died, or one without the handler
  }

  /** Replaces the workers one at a time; see `Pool.reload()`. */
  async reload(): Promise<void> {
    this.#events.emit({ type: "reload" });
    for (const slot of this.#slots) {
      if (this.#pool.stopping()) return;
      const old = slot.member;
      if (!old || slot.gaveUp || slot.restarting) continue;
      await this.#replacing(slot, old);
    }
  }

  /** Replacements under way (reload, recycling): `stop()` waits for them, so no worker starts after it. */
  readonly #replacements = new Set<Promise<void>>();

  /** Runs `#replace`, known to `stop()` while it runs. */
  #replacing(slot: Slot, old: Member<Task>): Promise<void> {
    const p = this.#replace(slot, old).finally(() => this.#replacements.delete(p));
    this.#replacements.add(p);
    return p;
  }

  /**
   * Replaces a worker that ran `maxTasksPerWorker` tasks, or holds `memory` bytes past `maxMemory` (it takes no new
   * task from now on: draining), as `reload()` replaces one: a new worker takes the slot's new tasks, the old one
   * finishes its own, then stops.
   */
  recycle(member: Member<Task>, memory?: number): void {
    const slot = this.#slots.find((s) => s.member === member);
    if (!slot || member.state !== "ready" || this.#pool.stopping()) return;
    member.state = "draining";
    this.#events.emit({
      type: "worker-recycle",
      slot: slot.index,
      id: member.id,
      done: member.done,
      ...(memory === undefined ? { reason: "tasks" as const } : { reason: "memory" as const, memory }),
    });
    void this.#replacing(slot, member);
  }

  /** Starts a worker for `slot` and retires `old` (it finishes what it runs, then stops). */
  async #replace(slot: Slot, old: Member<Task>): Promise<void> {
    if (old.remote) {
      // Not ours to start: let it finish, then close it; its supervisor starts the new version.
      old.state = "draining";
      return await this.#retire(old);
    }
    let fresh: Member<Task>;
    try {
      fresh = await Member.start<Task>({ ...this.#launch!, runtime: slot.runtime });
    } catch (e) {
      this.#events.emit({ type: "worker-failed", slot: slot.index, error: String((e as Error)?.message ?? e) });
      if (old.state === "draining") old.state = "ready"; // keep the old one
      this.#tasks.schedule();
      return;
    }
    if (this.#pool.stopping() || slot.member !== old) {
      fresh.stop(0);
      await fresh.gone;
      return;
    }
    old.state = "draining";
    this.#adopt(slot, fresh);
    this.#tasks.schedule();
    await this.#retire(old);
  }

  /** Workers replaced that finish what they run before they stop; `stop()` stops them at once. */
  readonly #retiring = new Set<Member<Task>>();

  /** Lets `old` finish its tasks, then stops it (or sooner: `stop()`, or it dies). */
  async #retire(old: Member<Task>): Promise<void> {
    this.#retiring.add(old);
    this.#tasks.memberGone(old); // its keys go to the worker that takes their next task
    this.#tasks.schedule();
    try {
      await Promise.race([this.#tasks.whenIdle(old), old.gone]);
      old.stop();
      await old.gone;
    } finally {
      this.#retiring.delete(old);
    }
  }

  /** Stops probing (and looking for idle workers). */
  stopProbing(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    if (this.#idleCheck !== undefined) clearInterval(this.#idleCheck);
  }

  /** Rejects the running tasks with `reason`, stops every worker and waits until they are gone. */
  async stop(reason: Error): Promise<void> {
    const members = new Set([...this.#slots.flatMap((s) => (s.member ? [s.member] : [])), ...this.#retiring]);
    for (const m of members) {
      for (const task of m.running) this.#tasks.settle(task, false, reason);
      m.stop();
    }
    await Promise.all([...members].map((m) => m.gone));
    // A worker being started to replace another is stopped as soon as it is up (#replace sees the pool stopping).
    await Promise.all(this.#replacements);
    await this.#remote?.close();
  }
}

function describe(exit: MemberExit, remote = false): string {
  if (remote) return exit.expected ? "was stopped" : "disconnected (its channel ended or stopped answering)";
  if (exit.signal) return `was killed by ${exit.signal}`;
  if (exit.error !== undefined) return `died (${exit.error})`;
  if (exit.code !== null) return `exited with code ${exit.code}`;
  return "stopped";
}

function unref(timer: unknown): void {
  (timer as { unref?: () => void }).unref?.();
}
