/**
 * System V message queues (`msgget(2)`, `msgsnd(2)`, `msgrcv(2)`): kernel queues of typed messages identified by
 * a numeric key, usable from any process (C, Python, another runtime) on the host.
 *
 * - `key` (`os/sysv_open.ts`) makes a key from a path and a project id (`ftok(3)`) or takes a number.
 * - `SysvQueue.create` / `open` / `openOrCreate` / `fromId` and `SysvQueue.private()` (`IPC_PRIVATE`) give a
 *   {@linkcode SysvQueue}: `send(type, data)`, `receive({ type })` with msgrcv's type selection, non-waiting
 *   `trySend`/`tryReceive`, `info`, `remove()`.
 *
 * This is the OS object only (the handle, `os/sysv.ts`, and the system calls that make one, `os/sysv_open.ts`);
 * the channel over one queue is `transports/sysv.ts`, which re-exports both as the `sysv` namespace.
 *
 * The named-object descriptor of the kind (`sysv` records: look up by id and key, remove with `IPC_RMID`, list
 * `/proc/sysvipc/msg`) is {@linkcode sysvName}, re-exported from `os/sysv_name.ts`.
 *
 * SysV queues have no per-process handle: `close()` only forgets this object, and the queue lives until
 * `remove()` (`IPC_RMID`, which also discards the messages in it) or reboot. `ipcs -q` lists them.
 *
 * **Waiting and latency.** msgsnd/msgrcv cannot wait with a timeout, and a thread blocked in them can never be
 * interrupted (the process could not exit). So every call here is non-waiting (`IPC_NOWAIT`, errno reliable)
 * and a waiting `send()`/`receive()` retries on the main thread after 0, 1, 2, 4, 8, 16, then every 20 ms (an
 * async/ `Backoff`). A
 * message arriving at an idle queue is therefore noticed up to ~20 ms late; a busy queue is read at full speed.
 *
 * Message layout (`struct msgbuf`): the type as a little-endian signed 64-bit `long` (x86-64, arm64), then the
 * bytes. Limits: `/proc/sys/kernel/msgmax` per message (8192 by default), the queue's `msg_qbytes` in total
 * (`/proc/sys/kernel/msgmnb`, 16384 by default; raising it needs CAP_SYS_RESOURCE).
 *
 * Over ~400 lines: the handle alone (its send and receive paths share one buffer and one errno mapping), with the
 * documented statics that make it (their system calls are in `os/sysv_open.ts`).
 *
 * @module
 */
import {
  abortError,
  ClosedError,
  type IpcError,
  MessageTooLargeError,
  NotFoundError,
  PermissionError,
  TimeoutError,
} from "../errors.ts";
import {
  IPC_INFO,
  IPC_NOWAIT,
  IPC_RMID,
  IPC_SET,
  IPC_STAT,
  MSQID_DS,
  MSQID_DS_CBYTES as OFF_CBYTES,
  MSQID_DS_LSPID as OFF_LSPID,
  MSQID_DS_MODE as OFF_MODE,
  MSQID_DS_QBYTES as OFF_QBYTES,
  MSQID_DS_QNUM as OFF_QNUM,
} from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import { unregister } from "../registry.ts";
import { Backoff, Deadline, delay } from "../async/mod.ts";
import {
  createQueue,
  fromIdQueue,
  integer,
  loadNative,
  type MakeSysvQueue,
  nameOf,
  openOrCreateQueue,
  openQueue,
  privateQueue,
  type SysvCreateOptions,
} from "./sysv_open.ts";

export type { SysvCreateOptions } from "./sysv_open.ts";

/** The named-object descriptor of System V queues (look up by id and key, remove, list), from `os/sysv_name.ts`. */
export { sysvName } from "./sysv_name.ts";

const { E2BIG, ENOMSG, EIDRM, EINTR, EAGAIN, EINVAL } = ERRNO as Record<string, number>;
/** The pauses of a waiting send or receive: 0 (one macrotask), 1, 2, 4 … 20 ms. */
const POLL = { first: 0, max: 20 };

/** Kernel limits, as `IPC_INFO` reports them. */
export interface Limits {
  /** The largest message, in bytes (`/proc/sys/kernel/msgmax`). */
  msgmax: number;
  /** The default (and unprivileged maximum) bytes per queue (`/proc/sys/kernel/msgmnb`). */
  msgmnb: number;
}

/** Options of {@linkcode SysvQueue.send}. */
export interface SysvSendOptions {
  /** Gives up after this many milliseconds with `TimeoutError` while the queue is full. */
  timeout?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/** Options of {@linkcode SysvQueue.receive} and {@linkcode SysvQueue.tryReceive}. */
export interface SysvReceiveOptions {
  /** 0 (default): the oldest message; n > 0: the oldest of type n; n < 0: the oldest of the lowest type <= |n|. */
  type?: number;
  /** The largest message accepted, in bytes (default msgmax); a larger one stays queued: MessageTooLargeError. */
  maxSize?: number;
  /** Gives up after this many milliseconds with `TimeoutError` while no message matches. */
  timeout?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/** A received message. */
export interface SysvMessage {
  type: number;
  data: Uint8Array;
}

/** What `IPC_STAT` reports. */
export interface SysvInfo {
  /** Messages in the queue now. */
  messages: number;
  /** Bytes in the queue now. */
  bytes: number;
  /** The queue's capacity in bytes (msg_qbytes). */
  maxBytes: number;
  /** Permission bits. */
  mode: number;
  /** The last process that sent (0 if none). */
  lastSendPid: number;
  /** The last process that received (0 if none). */
  lastReceivePid: number;
}

let limitsCache: Limits | undefined;

/** Reads the limits with `IPC_INFO` (and caches them for new handles). */
export function readLimits(ffi: Native): Limits {
  const info = new Int32Array(MSQID_DS / 4); // struct msginfo: msgpool, msgmap, msgmax, msgmnb, ...
  if (ffi.call.msgctl(0, IPC_INFO, info) < 0) throw errnoError(ffi.errno(), "read the System V queue limits");
  return (limitsCache = { msgmax: info[2]!, msgmnb: info[3]! });
}

/**
 * The kernel's limits (read with `IPC_INFO`, so they follow `sysctl` changes).
 *
 * @example
 * ```ts
 * import { sysv } from "ipckit";
 * console.log((await sysv.limits()).msgmax); // 8192 by default
 * ```
 */
export async function limits(): Promise<Limits> {
  return readLimits(await loadNative());
}

function checkTimeout(t: unknown, what: string): number | undefined {
  if (t === undefined) return undefined;
  if (typeof t !== "number" || !(t >= 0)) throw new RangeError(`Cannot ${what} with timeout ${t}: it must be >= 0`);
  return t;
}

/**
 * A System V message queue. `close()` forgets this handle (the kernel keeps no per-process handle); `remove()`
 * destroys the queue and the messages in it.
 *
 * @example
 * ```ts
 * import { SysvQueue } from "ipckit";
 * using q = await SysvQueue.private(); // share q.id with the processes that should use it
 * try {
 *   await q.send(2, new TextEncoder().encode("two"));
 *   q.trySend(1, new TextEncoder().encode("one")); // never waits: false when the queue is full
 *   console.log(q.info.messages); // 2
 *   console.log((await q.receive({ type: -2 })).type); // 1: the lowest type <= 2
 *   console.log(new TextDecoder().decode(q.tryReceive({ type: 2 })!.data)); // "two"
 * } finally {
 *   q.remove(); // the queue and what is left in it are gone; close() would only forget this handle
 * }
 * ```
 */
export class SysvQueue implements Disposable {
  /** The queue's id (what `ipcs -q` shows as msqid; valid in every process). */
  readonly id: number;
  readonly #ffi: Native;
  readonly #msgmax: number;
  readonly #stat = new BigInt64Array(MSQID_DS / 8);
  #buffer: Uint8Array;
  #view: DataView;
  #closed = false;
  #removed = false;
  #writeTurn: Promise<unknown> = Promise.resolve();

  /** The maker `os/sysv_open.ts` calls: the constructor is private. */
  static readonly #make: MakeSysvQueue<SysvQueue> = (ffi, id) => new SysvQueue(ffi, id);

  /**
   * Creates the queue with key `k` (`IPC_CREAT | IPC_EXCL`; a key from `sysv.key`).
   *
   * @throws {AlreadyExistsError} when a queue has that key; {@linkcode PermissionError} for a `maxBytes` above
   * msgmnb without CAP_SYS_RESOURCE (nothing is left behind).
   *
   * @example
   * ```ts
   * import { AlreadyExistsError, runtime, sysv, SysvQueue } from "ipckit";
   * const k = await sysv.key((await runtime()).pid); // a number only this process uses
   * using q = await SysvQueue.create(k); // mode 0600
   * try {
   *   await SysvQueue.create(k);
   * } catch (e) {
   *   console.log(e instanceof AlreadyExistsError); // true
   * } finally {
   *   q.remove();
   * }
   * ```
   */
  static create(k: number, options: SysvCreateOptions = {}): Promise<SysvQueue> {
    return createQueue(SysvQueue.#make, k, options);
  }

  /**
   * Opens the existing queue with key `k`.
   *
   * @throws {NotFoundError} when there is none; {@linkcode PermissionError} when its mode refuses this user.
   *
   * @example
   * ```ts
   * import { runtime, sysv, SysvQueue } from "ipckit";
   * const k = await sysv.key((await runtime()).pid);
   * using owner = await SysvQueue.create(k);
   * using other = await SysvQueue.open(k); // in another process, usually
   * try {
   *   await other.send(1, new TextEncoder().encode("hi"));
   *   console.log(other.id === owner.id, (await owner.receive({ timeout: 1000 })).type); // true 1
   * } finally {
   *   owner.remove();
   * }
   * ```
   */
  static open(k: number): Promise<SysvQueue> {
    return openQueue(SysvQueue.#make, k);
  }

  /**
   * Opens the queue with key `k`, creating it with `options` when there is none (`maxBytes` only then).
   *
   * @example
   * ```ts
   * import { runtime, sysv, SysvQueue } from "ipckit";
   * const k = await sysv.key((await runtime()).pid);
   * using first = await SysvQueue.openOrCreate(k); // creates it
   * using second = await SysvQueue.openOrCreate(k); // opens it
   * console.log(first.id === second.id); // true
   * first.remove();
   * ```
   */
  static openOrCreate(k: number, options: SysvCreateOptions = {}): Promise<SysvQueue> {
    return openOrCreateQueue(SysvQueue.#make, k, options);
  }

  /**
   * Takes the queue `id` (from `queue.id` in another process, or `ipcs -q`).
   *
   * @throws {NotFoundError} when no queue has that id.
   *
   * @example
   * ```ts
   * import { SysvQueue } from "ipckit";
   * using q = await SysvQueue.private();
   * using same = await SysvQueue.fromId(q.id); // another process got the id from us (or from `ipcs -q`)
   * await same.send(5, new Uint8Array([5]));
   * console.log((await q.receive()).type); // 5
   * q.remove();
   * ```
   */
  static fromId(id: number): Promise<SysvQueue> {
    return fromIdQueue(SysvQueue.#make, id);
  }

  /**
   * Creates a new queue without a key (`IPC_PRIVATE`): share its `id` with the processes that should use it.
   *
   * @example
   * ```ts
   * import { SysvQueue } from "ipckit";
   * using q = await SysvQueue.private({ maxBytes: 8192 }); // no key: nobody finds it without its id
   * console.log(q.id >= 0, q.info.maxBytes); // true 8192
   * q.remove();
   * ```
   */
  static private(options: SysvCreateOptions = {}): Promise<SysvQueue> {
    return privateQueue(SysvQueue.#make, options);
  }

  /**
   * Removes the queue with key `k` and the messages in it (`IPC_RMID`), as `remove()` on a handle does.
   *
   * @throws {NotFoundError} when there is none.
   *
   * @example
   * ```ts
   * import { NotFoundError, runtime, sysv, SysvQueue } from "ipckit";
   * const k = await sysv.key((await runtime()).pid);
   * (await SysvQueue.create(k)).close(); // closed: the queue stays...
   * await SysvQueue.remove(k); // ...until removed
   * await SysvQueue.remove(k).catch((e) => console.log(e instanceof NotFoundError)); // true: gone already
   * ```
   */
  static async remove(k: number): Promise<void> {
    (await SysvQueue.open(k)).remove();
  }

  private constructor(ffi: Native, id: number) {
    this.#ffi = ffi;
    this.id = id;
    this.#msgmax = (limitsCache ?? readLimits(ffi)).msgmax;
    this.#buffer = new Uint8Array(8 + this.#msgmax);
    this.#view = new DataView(this.#buffer.buffer);
  }

  /** The largest message this queue takes, in bytes (msgmax when it was opened). */
  get maxMessage(): number {
    return this.#msgmax;
  }

  /** True once `close()` or `remove()` was called on this handle. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * The queue's state now (`IPC_STAT`).
   *
   * @throws {NotFoundError} when the queue was removed.
   */
  get info(): SysvInfo {
    this.#checkOpen("query");
    const s = this.#statNow("query");
    const u8 = new Uint8Array(s.buffer);
    const i32 = new Int32Array(s.buffer);
    return {
      messages: Number(s[OFF_QNUM / 8]),
      bytes: Number(s[OFF_CBYTES / 8]),
      maxBytes: Number(s[OFF_QBYTES / 8]),
      mode: (u8[OFF_MODE]! | (u8[OFF_MODE + 1]! << 8)) & 0o777,
      lastSendPid: i32[OFF_LSPID / 4]!,
      lastReceivePid: i32[OFF_LSPID / 4 + 1]!,
    };
  }

  #statNow(what: string): BigInt64Array {
    if (this.#ffi.call.msgctl(this.id, IPC_STAT, this.#stat) < 0) throw this.#error(this.#ffi.errno(), what);
    return this.#stat;
  }

  /**
   * Sets the queue's capacity in bytes (`msg_qbytes`, `IPC_SET`).
   *
   * @throws {PermissionError} above `/proc/sys/kernel/msgmnb` without CAP_SYS_RESOURCE, or when not the owner.
   */
  setMaxBytes(bytes: number): void {
    integer(bytes, "maxBytes", 1, 2 ** 31 - 1);
    this.#checkOpen("configure");
    const s = this.#statNow("configure");
    s[OFF_QBYTES / 8] = BigInt(bytes);
    if (this.#ffi.call.msgctl(this.id, IPC_SET, s) < 0) {
      const errno = this.#ffi.errno();
      const e = this.#error(errno, "configure");
      if (e instanceof PermissionError) {
        e.message = `Cannot set the capacity of ${nameOf(this.id)} to ${bytes} bytes: above ` +
          `/proc/sys/kernel/msgmnb (${limitsCache?.msgmnb}) it needs CAP_SYS_RESOURCE`;
      }
      throw e;
    }
  }

  #checkOpen(what: string): void {
    if (this.#removed) throw new ClosedError(`Cannot ${what} ${nameOf(this.id)}: it was removed`);
    if (this.#closed) throw new ClosedError(`Cannot ${what} ${nameOf(this.id)}: the handle is closed`);
  }

  /** The error for a failed call on this queue. */
  #error(errno: number, what: string): IpcError {
    if (errno === EINVAL || errno === EIDRM) {
      return new NotFoundError(`Cannot ${what} ${nameOf(this.id)}: it does not exist (removed?)`, {
        code: errno === EIDRM ? "EIDRM" : "EINVAL",
      });
    }
    return errnoError(errno, `${what} ${nameOf(this.id)}`);
  }

  #checkSend(type: unknown, data: unknown): void {
    integer(type, "message type", 1, Number.MAX_SAFE_INTEGER);
    if (!(data instanceof Uint8Array)) {
      throw new TypeError(`Cannot send to ${nameOf(this.id)}: the message must be a Uint8Array`);
    }
    this.#checkOpen("send to");
    if (data.byteLength > this.#msgmax) throw this.#tooLarge(data.byteLength, this.#msgmax);
  }

  #tooLarge(size: number, limit: number): MessageTooLargeError {
    return new MessageTooLargeError(
      `Cannot send a message of ${size} bytes to ${nameOf(this.id)}: it exceeds msgmax (${limit} bytes, ` +
        `/proc/sys/kernel/msgmax)`,
      size,
      limit,
    );
  }

  /**
   * Sends without waiting. Returns false when the queue is full.
   *
   * @throws {RangeError} for a type below 1; {@linkcode MessageTooLargeError} over msgmax.
   * @throws {NotFoundError} when the queue was removed elsewhere; {@linkcode ClosedError} after close()/remove().
   */
  trySend(type: number, data: Uint8Array): boolean {
    this.#checkSend(type, data);
    return this.#trySend(type, data);
  }

  #trySend(type: number, data: Uint8Array): boolean {
    const n = data.byteLength;
    if (this.#buffer.byteLength < 8 + n) this.#grow(8 + n);
    const buf = this.#buffer;
    this.#view.setUint32(0, type % 2 ** 32, true);
    this.#view.setUint32(4, Math.floor(type / 2 ** 32), true);
    buf.set(data, 8);
    for (;;) {
      if (this.#ffi.call.msgsnd(this.id, buf, n, IPC_NOWAIT) === 0) return true;
      const errno = this.#ffi.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) {
        const max = Number(this.#statNow("send to")[OFF_QBYTES / 8]);
        if (n > max) {
          throw new MessageTooLargeError(
            `Cannot send a message of ${n} bytes to ${nameOf(this.id)}: it exceeds the queue's capacity ` +
              `(msg_qbytes ${max} bytes)`,
            n,
            max,
          );
        }
        return false;
      }
      if (errno === EINVAL) {
        this.#statNow("send to"); // throws NotFoundError when the queue is gone
        const { msgmax } = readLimits(this.#ffi);
        if (n > msgmax) throw this.#tooLarge(n, msgmax);
      }
      throw this.#error(errno, "send to");
    }
  }

  #grow(size: number): void {
    this.#buffer = new Uint8Array(size);
    this.#view = new DataView(this.#buffer.buffer);
  }

  /**
   * Receives without waiting: the message that `type` selects, or undefined when none matches.
   *
   * @throws {MessageTooLargeError} when the selected message exceeds `maxSize`; it stays in the queue.
   * @throws {NotFoundError} when the queue was removed elsewhere; {@linkcode ClosedError} after close()/remove().
   */
  tryReceive(options: Pick<SysvReceiveOptions, "type" | "maxSize"> = {}): SysvMessage | undefined {
    const { type, maxSize } = this.#checkReceive(options);
    return this.#tryReceive(type, maxSize);
  }

  #checkReceive(options: SysvReceiveOptions): { type: number; maxSize: number } {
    const type = options.type === undefined
      ? 0
      : integer(options.type, "message type", -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
    const maxSize = options.maxSize === undefined ? this.#msgmax : integer(options.maxSize, "maxSize", 0, 2 ** 31);
    this.#checkOpen("receive from");
    return { type, maxSize };
  }

  #tryReceive(type: number, maxSize: number): SysvMessage | undefined {
    if (this.#buffer.byteLength < 8 + maxSize) this.#grow(8 + maxSize);
    const buf = this.#buffer;
    for (;;) {
      const n = this.#ffi.call.msgrcv(this.id, buf, maxSize, type, IPC_NOWAIT);
      if (n >= 0) {
        const t = this.#view.getUint32(0, true) + this.#view.getUint32(4, true) * 2 ** 32;
        return { type: t, data: buf.slice(8, 8 + n) };
      }
      const errno = this.#ffi.errno();
      if (errno === EINTR) continue;
      if (errno === ENOMSG || errno === EAGAIN) return undefined;
      if (errno === E2BIG) {
        throw new MessageTooLargeError(
          `Cannot receive from ${nameOf(this.id)}: the next message exceeds maxSize (${maxSize} bytes); ` +
            `it stays in the queue`,
          -1,
          maxSize,
          { code: "E2BIG" },
        );
      }
      throw this.#error(errno, "receive from");
    }
  }

  /**
   * Sends one message of `type` (>= 1), waiting while the queue is full (retries every <= 20 ms).
   *
   * @throws {RangeError} for a type below 1 or a negative timeout; {@linkcode MessageTooLargeError} over msgmax.
   * @throws {TimeoutError} when `timeout` ran out (nothing was sent); the signal's reason on abort.
   */
  send(type: number, data: Uint8Array, options: SysvSendOptions = {}): Promise<void> {
    try {
      const timeout = checkTimeout(options.timeout, "send");
      this.#checkSend(type, data);
      const copy = data.slice(); // the caller may reuse its buffer while we wait
      const run = () => this.#wait("send to", timeout, options.signal, () => this.#trySend(type, copy) || undefined);
      const p = this.#writeTurn.then(run);
      this.#writeTurn = p.catch(() => {});
      return p.then(() => {});
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Receives the message that `type` selects, waiting while none matches (retries every <= 20 ms). Concurrent
   * `receive()` calls are served in no particular order.
   *
   * @throws {TimeoutError} when `timeout` ran out (no message is lost); the signal's reason on abort.
   * @throws {MessageTooLargeError} when the message exceeds `maxSize` (it stays in the queue).
   */
  receive(options: SysvReceiveOptions = {}): Promise<SysvMessage> {
    try {
      const timeout = checkTimeout(options.timeout, "receive");
      const { type, maxSize } = this.#checkReceive(options);
      return this.#wait("receive from", timeout, options.signal, () => this.#tryReceive(type, maxSize));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #wait<T>(
    what: string,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    attempt: () => T | undefined,
  ): Promise<T> {
    const deadline = Deadline.after(timeout);
    const backoff = new Backoff(POLL);
    for (;;) {
      this.#checkOpen(what);
      if (signal?.aborted) throw abortError(signal);
      const got = attempt();
      if (got !== undefined) return got;
      if (deadline.passed) throw new TimeoutError(`Cannot ${what} ${nameOf(this.id)}: timed out after ${timeout} ms`);
      await delay(Math.min(backoff.next(), deadline.remaining), signal);
    }
  }

  /**
   * Removes the queue (`IPC_RMID`): its messages are discarded, waiting calls everywhere fail. Then closes this
   * handle.
   *
   * @throws {NotFoundError} when the queue does not exist any more (removed by another process).
   * @throws {ClosedError} when this handle already removed it.
   */
  remove(): void {
    if (this.#removed) throw new ClosedError(`Cannot remove ${nameOf(this.id)}: it was removed already`);
    this.#removed = this.#closed = true;
    if (this.#ffi.call.msgctl(this.id, IPC_RMID, null) < 0) {
      const errno = this.#ffi.errno();
      if (errno === EINVAL || errno === EIDRM) unregister("sysv", String(this.id)); // gone already: stale record
      throw this.#error(errno, "remove");
    }
    unregister("sysv", String(this.id));
  }

  /** Forgets this handle; idempotent. The queue itself stays until `remove()`. Waiting calls reject soon. */
  close(): void {
    this.#closed = true;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
