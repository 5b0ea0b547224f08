/**
 * A pool's scheduler: one queue of tasks, handed to the ready worker with the fewest tasks running, at most
 * `concurrency` at a time per worker. It settles each task exactly once (result, error, `TimeoutError` past
 * `taskTimeout`, the signal's reason), keeps the counters, and tells `close()` when the pool has drained. Which
 * workers exist, and what happens when one dies, is the supervisor's (`pool/supervisor.ts`).
 *
 * @module
 */
import { onAbort, Waiters } from "../async/mod.ts";
import { abortError, ClosedError, QueueFullError, TimeoutError } from "../errors.ts";
import type { EventLog } from "./events.ts";
import type { CallSink } from "../rpc/peer.ts";
import { type Counters, track } from "../shm/stats.ts";
import {
  type Latency,
  latency,
  type LatencySummary,
  releaseLatency,
  summarize,
  UNTIMED,
} from "../shm/stats_latency.ts";
import type { Member } from "./member.ts";
import type { RunOptions, Settings } from "./options.ts";
import { TaskQueue } from "./task_queue.ts";
import { moveTransfer } from "./transfer.ts";
import { TRANSFERRED } from "./worker.ts";

/** One task, from `run()` until it settles. */
export interface Task {
  readonly id: number;
  readonly method: string;
  readonly args: unknown[];
  readonly options: RunOptions;
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
  settled: boolean;
  attempts: number;
  retriesLeft: number;
  member: Member<Task> | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Stops listening to the task's abort signal. */
  unlisten: (() => void) | undefined;
  /** Higher runs first (`RunOptions.priority`, 0 by default). */
  readonly priority: number;
  /** When it was queued (performance.now(); 0 with strict priority, where it does not count). */
  queuedAt: number;
  /** When its wait started, if it is timed (`<pool> · wait`); UNTIMED once its wait was counted. */
  waitStarted: number;
  /** Its wait is not counted yet. */
  waiting: boolean;
  /** The buffers its arguments move to a worker thread (`RunOptions.transfer`), taken from the caller already. */
  readonly buffers: ArrayBuffer[] | undefined;
}

/** What the scheduler needs to know of the workers (the supervisor knows it). */
export interface Workers {
  /**
   * The worker slots in order, each with its member (undefined while it has none) and how often it was restarted.
   * Read, never changed.
   */
  readonly slots: readonly {
    readonly index: number;
    readonly member: Member<Task> | undefined;
    readonly restarts: number;
  }[];
  /** The slot of a member, for events; -1 when it has none. */
  slotOf(member: Member<Task>): number;
  /** Workers started again after dying, so far. */
  readonly restarts: number;
  /** `member` ran `maxTasksPerWorker` tasks: replace it. */
  recycle(member: Member<Task>): void;
  /** `member` finished a task in a pool with `maxMemory`: look at its memory (at most every so often). */
  checkMemory(member: Member<Task>): void;
  /** `waiting` tasks found no worker with room: an elastic pool may start more. */
  grow(waiting: number): void;
}

/** The task queue and its dispatch to workers. */
export class Scheduler {
  /** Tasks that settled with a result, with an error, and that were re-run after their worker died. */
  readonly counters = { done: 0, failed: 0, retried: 0 };
  readonly #o: Settings;
  readonly #events: EventLog;
  readonly #workers: Workers;
  readonly #queue: TaskQueue<Task>;
  /** Affinity: the worker each key (`RunOptions.affinity`) is bound to while it lives, oldest binding first. */
  readonly #boundTo = new Map<string | number, Member<Task>>();
  /** Keyed tasks waiting for the worker their key is bound to (it had no room), per worker. */
  readonly #bound = new Map<Member<Task>, TaskQueue<Task>>();
  /** Whether waiting counts toward a task's rank (finite `priorityAging`): then each task's time is read. */
  readonly #aging: boolean;
  /** Whether workers are recycled by their memory (`maxMemory`): then it is looked at after tasks. */
  readonly #memoryLimit: boolean;
  #nextId = 1;
  /** Set once nothing can run any more (every slot gave up): the pool counts as drained from then on. */
  #failed: Error | undefined;
  readonly #idle = new Set<() => void>();
  /** `close()` waiting for the queue and the workers to empty. */
  readonly #drainWaiters = new Waiters<void>();
  /** `ready({ room })` callers waiting for room in the queue. */
  #roomWaiters: { room: number; resolve: () => void; reject: (e: unknown) => void }[] = [];

  /** The live counters (`ipckit stats`): `COUNTERS.pool` of shm/stats.ts. */
  readonly #stats: Counters;
  /** How long tasks wait for a worker (`<pool> · wait`); the run time is each method's (`<pool> · call <m>`). */
  readonly #wait: Latency;
  /** Each worker slot's counters (`COUNTERS.worker`: `<pool> worker <i>`) by slot index, made as slots appear. */
  readonly #slotStats = new Map<number, Counters>();

  constructor(settings: Settings, events: EventLog, workers: Workers, stats: Counters) {
    this.#o = settings;
    this.#events = events;
    this.#workers = workers;
    this.#stats = stats;
    this.#wait = latency(`${stats.name} · wait`);
    this.#queue = new TaskQueue(settings.priorityAging);
    this.#aging = Number.isFinite(settings.priorityAging);
    this.#memoryLimit = Number.isFinite(settings.maxMemory);
  }

  /** The pool closed: its wait-time slot and its workers' slots are given back. */
  close(): void {
    releaseLatency(this.#wait);
    this.#gauges(); // the workers' last state (stopped: none)
    for (const c of this.#slotStats.values()) c.close();
  }

  /** How long tasks waited for a worker (the `<pool> · wait` slot). */
  get waitTime(): LatencySummary {
    return summarize([this.#wait]);
  }

  /** Tasks waiting for a worker (in the queue, and keyed ones waiting for their own worker). */
  get queued(): number {
    let n = this.#queue.size;
    if (this.#bound.size > 0) { for (const q of this.#bound.values()) n += q.size; }
    return n;
  }

  /**
   * Queues a task (the pool checked that it may run); rejects with `QueueFullError` past `maxQueue`, and with
   * `TypeError` for a bad transfer list.
   */
  submit(method: string, args: unknown[], options: RunOptions): Promise<unknown> {
    if (this.queued >= this.#o.maxQueue) {
      return Promise.reject(
        new QueueFullError(`Cannot queue the task: the queue holds maxQueue (${this.#o.maxQueue})`),
      );
    }
    // A transfer list moves the buffers now, as the task is taken (a task refused keeps the caller's buffers).
    let buffers: ArrayBuffer[] | undefined;
    if (options.transfer !== undefined) {
      try {
        ({ args, buffers } = moveTransfer(args, options.transfer));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    const now = this.#aging ? performance.now() : 0;
    const task: Task = {
      id: this.#nextId++,
      method,
      args,
      options,
      resolve: NOOP,
      reject: NOOP,
      settled: false,
      attempts: 0,
      // Its transferred buffers go with the worker it runs on: never run twice.
      retriesLeft: options.idempotent && buffers === undefined ? this.#o.retries : 0,
      member: undefined,
      timer: undefined,
      unlisten: undefined,
      priority: options.priority ?? 0,
      queuedAt: now,
      waitStarted: this.#aging ? this.#wait.startAt(now) : this.#wait.start(),
      waiting: true,
      buffers,
    };
    // One executor for every task (no closure per task): it takes the task from `forExecutor`.
    forExecutor = task;
    const promise = new Promise(takeResolvers);
    if (options.signal) {
      task.unlisten = onAbort(options.signal, () => {
        // Queued: it never reaches a worker. Running: the RPC call carries the cancel to the handler.
        if (task.member === undefined) this.settle(task, false, abortError(options.signal!));
      });
    }
    const key = options.affinity;
    const owner = key === undefined ? undefined : this.#boundTo.get(key);
    if (owner === undefined) this.#queue.push(task);
    else this.#waitFor(owner, task);
    const v = this.#stats.values;
    v[SUBMITTED]!++;
    if (this.#queue.size > 1 && this.#pick() === undefined) {
      // Tasks waited already and no worker has room: this one waits behind them, and nothing else changed but the
      // queue (the common case when tasks come faster than workers take them). An empty queue goes straight to
      // schedule(), which looks for a worker itself.
      v[QUEUED] = this.queued;
      this.#workers.grow(this.#queue.size);
      return promise;
    }
    this.schedule();
    return promise;
  }

  /** Settles `task` once: later calls do nothing. */
  settle(task: Task, ok: boolean, value: unknown): void {
    if (task.settled) return;
    task.settled = true;
    if (task.timer !== undefined) clearTimeout(task.timer);
    task.unlisten?.();
    if (task.waiting) this.#waited(task, false); // it never reached a worker
    if (ok) {
      this.counters.done++;
      this.#stats.values[DONE]!++;
      task.resolve(value);
    } else {
      this.counters.failed++;
      this.#stats.values[FAILED]!++;
      task.reject(value);
    }
    this.#checkDrained();
  }

  /** Puts a task whose worker died first in line, to run again. */
  requeue(task: Task): void {
    this.counters.retried++;
    this.#stats.values[RETRIED]!++;
    this.#queue.pushFirst(task);
  }

  /** Nothing can run any more: rejects every queued task with `error`, and the pool counts as drained. */
  fail(error: Error): void {
    this.#failed = error;
    this.failQueued(error);
    this.failRoom(error);
  }

  /** Rejects every queued task with `error` and empties the queue. */
  failQueued(error: unknown): void {
    for (const task of this.#queue.takeAll()) this.settle(task, false, error);
    for (const q of this.#bound.values()) for (const task of q.takeAll()) this.settle(task, false, error);
    this.#bound.clear();
  }

  /** A keyed task waits for `member`, the worker its key is bound to. */
  #waitFor(member: Member<Task>, task: Task): void {
    let q = this.#bound.get(member);
    if (q === undefined) this.#bound.set(member, q = new TaskQueue(this.#o.priorityAging));
    q.push(task);
  }

  /** `member` is gone: its keys are free again, and the keyed tasks that waited for it go first in the queue. */
  memberGone(member: Member<Task>): void {
    for (const [key, m] of this.#boundTo) if (m === member) this.#boundTo.delete(key);
    const q = this.#bound.get(member);
    if (q === undefined) return;
    this.#bound.delete(member);
    for (const task of q.takeAll()) if (!task.settled) this.#queue.pushFirst(task);
  }

  /** Binds `key` to `member` (a bounded number of keys is remembered: the oldest binding goes first). */
  #bind(key: string | number, member: Member<Task>): void {
    this.#boundTo.set(key, member);
    if (this.#boundTo.size > MAX_KEYS) this.#boundTo.delete(this.#boundTo.keys().next().value!);
  }

  /** Hands queued tasks to ready workers with room. */
  schedule(): void {
    // Keyed tasks waiting for their own worker go first when it has room.
    if (this.#bound.size > 0) {
      for (const [m, q] of this.#bound) {
        while (m.state === "ready" && m.running.size < this.#o.concurrency && q.peek() !== undefined) {
          this.#begin(q.shift()!, m);
        }
      }
    }
    for (let task = this.#queue.peek(); task !== undefined; task = this.#queue.peek()) {
      const key = task.options.affinity;
      const owner = key === undefined ? undefined : this.#boundTo.get(key);
      if (owner !== undefined) {
        // Bound since it was queued (an earlier task of its key went first): to that worker, or wait for it.
        this.#queue.shift();
        if (owner.state === "ready" && owner.running.size < this.#o.concurrency) this.#begin(task, owner);
        else this.#waitFor(owner, task);
        continue;
      }
      const member = this.#pick();
      if (!member) break;
      this.#begin(this.#queue.shift()!, member);
      if (key !== undefined) this.#bind(key, member);
    }
    if (this.#queue.size > 0) this.#workers.grow(this.#queue.size);
    this.#gauges();
    this.#checkDrained();
    if (this.#roomWaiters.length > 0) this.#checkRoom();
  }

  /** Resolves once the queue has room for `room` more tasks (`maxQueue` less the tasks queued). */
  whenRoom(room: number): Promise<void> {
    if (this.#failed) return Promise.reject(this.#failed);
    if (this.#o.maxQueue - this.queued >= room) return Promise.resolve();
    return new Promise((resolve, reject) => this.#roomWaiters.push({ room, resolve, reject }));
  }

  /** Ends every `whenRoom()` wait with `error` (the pool closes or failed). */
  failRoom(error: unknown): void {
    const waiting = this.#roomWaiters;
    this.#roomWaiters = [];
    for (const w of waiting) w.reject(error);
  }

  #checkRoom(): void {
    const free = this.#o.maxQueue - this.queued;
    const waiting = this.#roomWaiters;
    this.#roomWaiters = waiting.filter((w) => w.room > free);
    for (const w of waiting) if (w.room <= free) w.resolve();
  }

  /** The pool's "now" counters: queued and running tasks, ready workers, restarts so far. */
  #gauges(): void {
    const v = this.#stats.values;
    const slots = this.#workers.slots;
    let running = 0, ready = 0;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i]!;
      const m = slot.member;
      let c = this.#slotStats.get(slot.index);
      if (c === undefined) {
        this.#slotStats.set(slot.index, c = track("worker", `${this.#stats.name} worker ${slot.index}`));
      }
      const w = c.values;
      w[W_SLOT] = slot.index;
      w[W_RESTARTS] = slot.restarts;
      if (!m) {
        w[W_STATE] = 0;
        w[W_RUNNING] = 0;
        continue;
      }
      w[W_ID] = m.id;
      w[W_STATE] = STATE_CODES[m.state];
      w[W_RUNNING] = m.running.size;
      w[W_DONE] = m.done;
      running += m.running.size;
      if (m.state === "ready") ready++;
    }
    v[QUEUED] = this.queued;
    if (this.#slotStats.size > slots.length) this.#closeGoneSlots(slots);
    v[RUNNING] = running;
    v[WORKERS] = ready;
    v[RESTARTS] = this.#workers.restarts;
  }

  /** An elastic pool stopped workers: their slots' counters say closed. */
  #closeGoneSlots(slots: Workers["slots"]): void {
    const present = new Set(slots.map((s) => s.index));
    for (const [index, c] of this.#slotStats) {
      if (present.has(index)) continue;
      c.close();
      this.#slotStats.delete(index);
    }
  }

  #pick(): Member<Task> | undefined {
    let best: Member<Task> | undefined;
    const slots = this.#workers.slots;
    for (let i = 0; i < slots.length; i++) {
      const m = slots[i]!.member;
      if (!m || m.state !== "ready" || m.running.size >= this.#o.concurrency) continue;
      if (!best || m.running.size < best.running.size) best = m;
      if (best.running.size === 0) break;
    }
    return best;
  }

  /** Counts the task's wait (once: a task run again after its worker died waited already). */
  #waited(task: Task, ok: boolean): void {
    task.waiting = false;
    this.#wait.end(task.waitStarted, ok);
    task.waitStarted = UNTIMED;
  }

  #begin(task: Task, member: Member<Task>): void {
    if (task.waiting) this.#waited(task, true);
    task.attempts++;
    task.member = member;
    member.running.add(task);
    if (this.#o.taskTimeout !== undefined) {
      task.timer = setTimeout(() => this.#hung(task, member), this.#o.taskTimeout);
    }
    // The run options are the call options (signal, timeout); the answer comes to the Attempt: no promise.
    if (task.buffers !== undefined && member.post !== undefined) return this.#transfer(task, member);
    const attempt = new Attempt(this, task, member);
    try {
      member.peer.callInto(task.method, task.args, task.options, attempt);
    } catch (e) {
      // Arguments that cannot be sent (too large for the ring, not encodable): the task fails, in a turn of its own
      // (not inside this dispatch loop).
      queueMicrotask(() => attempt.reject(e));
    }
  }

  /** A task with a transfer list, to a worker thread: its arguments by postMessage (moved), then the call. */
  #transfer(task: Task, member: Member<Task>): void {
    const attempt = new Attempt(this, task, member);
    const id = nextTransfer++;
    try {
      member.post!({ ipckitTask: id, args: task.args }, task.buffers!);
    } catch (e) {
      const error = new TypeError(`Cannot move task ${task.id} to its worker thread`, { cause: e });
      return queueMicrotask(() => attempt.reject(error));
    }
    try {
      member.peer.callInto(TRANSFERRED, [task.method, id], task.options, attempt);
    } catch (e) {
      queueMicrotask(() => attempt.reject(e));
    }
  }

  /** The answer of one attempt of `task` on `member` (see Attempt). */
  finished(task: Task, member: Member<Task>, ok: boolean, value: unknown): void {
    if (task.member !== member) return; // an earlier attempt, already handled
    member.running.delete(task);
    member.done++;
    task.member = undefined;
    this.settle(task, ok, value);
    if (member.done >= this.#o.maxTasksPerWorker) this.#workers.recycle(member);
    else if (this.#memoryLimit) this.#workers.checkMemory(member);
    if (member.running.size === 0) this.wakeIdle();
    this.schedule();
  }

  /** A task ran past `taskTimeout`: it fails, and its worker is replaced. */
  #hung(task: Task, member: Member<Task>): void {
    if (task.member !== member || task.settled) return;
    member.running.delete(task);
    task.member = undefined;
    this.#events.emit({ type: "worker-hung", slot: this.#workers.slotOf(member), id: member.id, task: task.id });
    this.settle(
      task,
      false,
      new TimeoutError(`Task ${task.id} ran past taskTimeout (${this.#o.taskTimeout} ms); its worker was replaced`),
    );
    member.kill();
  }

  // ---- waiting for idle workers and for the drain ----

  /** Resolves once `member` runs no task. */
  whenIdle(member: Member<Task>): Promise<void> {
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

  /** A member's tasks ended: wakes `whenIdle()` callers whose member is idle now. */
  wakeIdle(): void {
    for (const check of [...this.#idle]) check();
  }

  /** Resolves once the queue and the workers are empty (or nothing can run any more), or `endDrain()`. */
  drained(): Promise<void> {
    const drained = this.#drainWaiters.wait();
    this.#checkDrained();
    return drained;
  }

  /** Ends every `drained()` wait (the pool shut down). */
  endDrain(): void {
    while (this.#drainWaiters.wake());
  }

  #checkDrained(): void {
    if (this.#drainWaiters.length === 0) return;
    let empty = this.#queue.allSettled();
    for (const q of this.#bound.values()) empty &&= q.allSettled();
    let idle = true;
    for (const { member } of this.#workers.slots) if (member && member.running.size > 0) idle = false;
    if (!(empty && idle) && !this.#failed) return;
    this.endDrain();
  }
}

/**
 * One attempt of a task on a member: where the RPC peer hands the answer (a CallSink), one object per dispatch
 * instead of a promise and its two callbacks.
 */
class Attempt implements CallSink {
  method = "";
  cleanup: () => void = NOOP;
  readonly #scheduler: Scheduler;
  readonly #task: Task;
  readonly #member: Member<Task>;

  constructor(scheduler: Scheduler, task: Task, member: Member<Task>) {
    this.#scheduler = scheduler;
    this.#task = task;
    this.#member = member;
  }

  resolve(value: unknown): void {
    const member = this.#member;
    // A thread's result moved by postMessage (`pool.move`): the answer over the ring only names it.
    const n = member.movedNumber(value);
    if (n !== undefined) return member.claim(n, (moved) => this.#scheduler.finished(this.#task, member, true, moved));
    this.#scheduler.finished(this.#task, member, true, value);
  }

  reject(error: unknown): void {
    // ClosedError: the connection ended, so the worker died or was stopped. The task stays in member.running, and
    // the worker's end (the supervisor) decides: run it again, or WorkerDiedError.
    if (!(error instanceof ClosedError)) this.#scheduler.finished(this.#task, this.#member, false, error);
  }
}

const NOOP = () => {};
// Where the pool's counters are (`COUNTERS.pool` of shm/stats.ts).
/** Keys of `RunOptions.affinity` remembered at most (the oldest binding is forgotten past it). */
const MAX_KEYS = 100_000;
// Where a worker slot's counters are (`COUNTERS.worker`), and its states' codes.
const W_SLOT = 0, W_ID = 1, W_STATE = 2, W_RUNNING = 3, W_DONE = 4, W_RESTARTS = 5;
const STATE_CODES = { starting: 1, ready: 2, draining: 3, stopping: 4, dead: 5 } as const;
const SUBMITTED = 0, DONE = 1, FAILED = 2, RETRIED = 3, RESTARTS = 4, QUEUED = 5, RUNNING = 6, WORKERS = 7;

/** The number the next transferred arguments are posted under (one sequence for the process: threads are its own). */
let nextTransfer = 1;
let forExecutor: Task | undefined;
/** The executor of every task's promise: hands its resolvers to the task being submitted. */
function takeResolvers(resolve: (v: unknown) => void, reject: (e: unknown) => void): void {
  forExecutor!.resolve = resolve;
  forExecutor!.reject = reject;
  forExecutor = undefined;
}
