/**
 * POSIX message queues (Linux): named kernel queues of whole messages with priorities, usable from any process
 * (C, Python, another runtime) that calls `mq_open(3)`.
 *
 * - {@linkcode create} / {@linkcode open} / {@linkcode openOrCreate} give a {@linkcode MessageQueue}: raw
 *   messages with priorities (0..31, highest first, FIFO within a priority), waiting and non-waiting
 *   send/receive, attributes, close and unlink.
 * - {@linkcode channel} gives a duplex {@linkcode Channel} over two queues, `<name>-0` (creator → opener) and
 *   `<name>-1` (opener → creator).
 *
 * Waits never freeze the event loop: they run `mq_timedsend`/`mq_timedreceive` off the main thread in slices of
 * at most 100 ms (so a process can always exit), checking between slices for close, abort, timeout and (channels)
 * the peer's death.
 *
 * ## Channel wire format
 *
 * Every queue message of a channel starts with one kind byte; all go at priority 0, so they keep their order:
 *
 * ```text
 * 0  DATA   the rest is the last (or only) piece of a user message (a 0-byte message is just this byte)
 * 1  MORE   the rest is a piece of a user message, more pieces follow (messages over messageSize - 1 bytes)
 * 2  END    the sender closed: the receiver has every message, then ClosedError
 * 3  HELLO  then the sender's pid and start-time tag (`os/liveness.ts`), each u32 little-endian: sent once by each
 *           side when connecting (a 5-byte HELLO, pid only, is accepted too)
 * ```
 *
 * The END marker is in band, after the data, so a user message can never be taken for it and a close never
 * overtakes data. A side whose peer process died (checked with `os/liveness.ts`, pid and start time, while its queue
 * is empty) ends with `ClosedError` within about 100 ms. The creator removes both queue names once the opener
 * attached, so a crash later leaves nothing behind.
 *
 * @module
 */
import {
  abortError,
  AlreadyExistsError,
  ClosedError,
  type IpcError,
  MessageTooLargeError,
  NotFoundError,
  ProtocolError,
  TimeoutError,
  UnsupportedError,
} from "../errors.ts";
import { O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { runtime } from "../runtimes/detect.ts";
import { prepare, register, unregister } from "../registry.ts";
import { BaseChannel, type Capabilities, type Channel, type ChannelOptions } from "./channel.ts";
import { MAX_FRAME } from "./framing.ts";
import { DATA, END, HELLO, helloIdentity, helloRecord, MORE, Reassembler, writeRecords } from "./records.ts";
import { alive, type Identity } from "../os/liveness.ts";

/** The longest native wait, in milliseconds: a blocked thread cannot be stopped, so it must return by itself. */
const SLICE_MS = 100;
/**
 * The highest message priority ipckit accepts (POSIX guarantees 32 levels).
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * using q = await mq.create(`/ipckit-prio-${(await runtime()).pid}`, { maxMessages: 4, messageSize: 64 });
 * q.unlink();
 * await q.send(new TextEncoder().encode("now!"), { priority: mq.MAX_PRIORITY });
 * console.log((await q.receive()).priority); // 31
 * ```
 */
export const MAX_PRIORITY = 31;
/** Linux defaults of /proc/sys/fs/mqueue (what an unprivileged process may use unless an admin raised them). */
const DEFAULT_LIMITS = { msg_max: 10, msgsize_max: 8192, queues_max: 256 };
/** Limits no process can exceed, privileged or not (include/linux/ipc_namespace.h). */
const HARD_MSGMAX = 65536, HARD_MSGSIZEMAX = 16 * 1024 * 1024;
const { EINTR, EAGAIN, ETIMEDOUT, EINVAL, EMFILE, ENOSPC, ENOMEM } = ERRNO as Record<string, number>;

/** Who may use a queue through this handle. */
export type Access = "read" | "write" | "both";

/** Options of {@linkcode create}. */
export interface CreateOptions {
  /** How many messages the queue holds before `send()` waits (mq_maxmsg). */
  maxMessages: number;
  /** The largest message in bytes (mq_msgsize). */
  messageSize: number;
  /** Permission bits of the new queue. Default 0o600. */
  mode?: number;
}

/** Options of {@linkcode open}. */
export interface OpenOptions {
  /** Open for reading, writing or both (default). */
  mode?: Access;
}

/** Options of {@linkcode MessageQueue.send}. */
export interface MqSendOptions {
  /** 0 (default) to 31; higher priorities are received first. */
  priority?: number;
  /** Gives up after this many milliseconds with `TimeoutError` while the queue is full. */
  timeout?: number;
  /** Aborts the wait (checked at least every 100 ms). */
  signal?: AbortSignal;
}

/** Options of {@linkcode MessageQueue.receive}. */
export interface MqReceiveOptions {
  /** Gives up after this many milliseconds with `TimeoutError` while the queue is empty. */
  timeout?: number;
  /** Aborts the wait (checked at least every 100 ms). */
  signal?: AbortSignal;
}

/** A received message. */
export interface MqMessage {
  data: Uint8Array;
  priority: number;
}

/** What `mq_getattr` reports. */
export interface Attributes {
  maxMessages: number;
  messageSize: number;
  currentMessages: number;
}

/** Internal: one wait slice, for the channel's pump. */
const slice = Symbol("slice");
/** Internal: mq_open behind create/open. */
const openQueue = Symbol("openQueue");
/** Internal: a waiting send that also runs `check` between slices. */
const sendChecked = Symbol("sendChecked");

const PAST = new BigInt64Array(2); // 1970: an absolute timeout that has passed, for non-waiting calls
const encoder = new TextEncoder();

function checkName(name: unknown, suffix = 0): string {
  if (typeof name !== "string") throw new TypeError(`Cannot use message queue name ${String(name)}: not a string`);
  const bytes = encoder.encode(name).byteLength + suffix;
  if (!name.startsWith("/") || name.indexOf("/", 1) >= 0 || name.includes("\0") || bytes < 2 || bytes > 255) {
    throw new TypeError(
      `Cannot use message queue name "${name}": it must be "/" then 1 to ${254 - suffix} bytes without "/" or NUL`,
    );
  }
  return name;
}

function positive(value: unknown, what: string, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Cannot create message queue "${name}": ${what} must be a positive integer, got ${value}`);
  }
  return value;
}

function checkPriority(p: unknown): number {
  if (p === undefined) return 0;
  if (typeof p !== "number" || !Number.isInteger(p) || p < 0 || p > MAX_PRIORITY) {
    throw new RangeError(`Cannot send with priority ${p}: it must be an integer from 0 to ${MAX_PRIORITY}`);
  }
  return p;
}

function checkTimeout(t: unknown, what: string): number | undefined {
  if (t === undefined) return undefined;
  if (typeof t !== "number" || !(t >= 0)) throw new RangeError(`Cannot ${what} with timeout ${t}: it must be >= 0`);
  return t;
}

async function loadNative(): Promise<Native> {
  const ffi = await native();
  if (typeof ffi.call.mq_open !== "function") {
    throw new UnsupportedError("Cannot use POSIX message queues: this platform has none (macOS lacks mq_open)");
  }
  return ffi;
}

/** The error of a failed mq_open, naming the kernel limit that refused it. */
function openError(errno: number, what: string, sizes?: { maxMessages: number; messageSize: number }): IpcError {
  const e = errnoError(errno, what);
  const limit = (key: keyof typeof DEFAULT_LIMITS) =>
    `the kernel limit ${
      DEFAULT_LIMITS[key]
    } (/proc/sys/fs/mqueue/${key}, the Linux default; privileged processes may go higher)`;
  let detail: string | undefined;
  if (errno === EINVAL && sizes) {
    const over = [];
    if (sizes.messageSize > HARD_MSGSIZEMAX) {
      over.push(`messageSize ${sizes.messageSize} exceeds the hard kernel limit ${HARD_MSGSIZEMAX} (HARD_MSGSIZEMAX)`);
    } else if (sizes.messageSize > DEFAULT_LIMITS.msgsize_max) {
      over.push(`messageSize ${sizes.messageSize} exceeds ${limit("msgsize_max")}`);
    }
    if (sizes.maxMessages > HARD_MSGMAX) {
      over.push(`maxMessages ${sizes.maxMessages} exceeds the hard kernel limit ${HARD_MSGMAX} (HARD_MSGMAX)`);
    } else if (sizes.maxMessages > DEFAULT_LIMITS.msg_max) {
      over.push(`maxMessages ${sizes.maxMessages} exceeds ${limit("msg_max")}`);
    }
    if (over.length) detail = over.join("; ");
  } else if (errno === EMFILE && sizes) {
    detail = `maxMessages × messageSize (${sizes.maxMessages * sizes.messageSize} bytes plus overhead) with this ` +
      `user's other queues exceeds RLIMIT_MSGQUEUE (\`ulimit -q\`, 819200 bytes by default), or too many open files`;
  } else if (errno === ENOSPC) {
    detail = `the system-wide number of queues reached ${limit("queues_max")}`;
  } else if (errno === ENOMEM) {
    detail = "out of memory for the queue";
  }
  if (detail === undefined) return e;
  e.message = `Cannot ${what}: ${detail}`;
  return e;
}

function nameOf(name: string): string {
  return `message queue "${name}"`;
}

/**
 * A handle to a POSIX message queue. `close()` releases this handle; `unlink()` removes the name.
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * using q = await mq.create(`/ipckit-jobs-${(await runtime()).pid}`, { maxMessages: 10, messageSize: 1024 });
 * try {
 *   await q.send(new TextEncoder().encode("low"), { priority: 1 });
 *   await q.send(new TextEncoder().encode("urgent"), { priority: 9 });
 *   console.log(q.attributes.currentMessages); // 2
 *   console.log((await q.receive()).priority); // 9: the highest priority first
 *   console.log(new TextDecoder().decode(q.tryReceive()!.data)); // "low"
 *   console.log(q.tryReceive()); // undefined: empty, and tryReceive never waits
 * } finally {
 *   q.unlink(); // close() (here by `using`) releases the handle, unlink() removes the name
 * }
 * ```
 */
export class MessageQueue implements Disposable {
  /** The queue's name. */
  readonly name: string;
  /** The largest message, in bytes. */
  readonly messageSize: number;
  /** How many messages the queue holds. */
  readonly maxMessages: number;
  /** What this handle may do. */
  readonly access: Access;
  readonly #ffi: Native;
  readonly #fd: number;
  readonly #buffer: Uint8Array;
  readonly #priority = new Uint32Array(1);
  #closed = false;
  #released = false;
  /** Calls in flight whose native half may still use the descriptor: mq_close waits for them. */
  #busy = 0;
  #readTurn: Promise<unknown> = Promise.resolve();
  #writeTurn: Promise<unknown> = Promise.resolve();

  private constructor(ffi: Native, fd: number, name: string, access: Access) {
    this.#ffi = ffi;
    this.#fd = fd;
    this.name = name;
    this.access = access;
    const a = this.#getattr();
    this.maxMessages = Number(a[1]);
    this.messageSize = Number(a[2]);
    this.#buffer = new Uint8Array(this.messageSize);
  }

  /** @internal Opens or creates; used by the module functions. */
  static async [openQueue](
    name: string,
    flags: number,
    mode: number,
    access: Access,
    sizes?: CreateOptions,
  ): Promise<MessageQueue> {
    const ffi = await loadNative();
    const creating = (flags & O_CREAT) !== 0;
    if (creating) await prepare();
    let attr: BigInt64Array | null = null;
    if (sizes) {
      attr = new BigInt64Array(8); // struct mq_attr: flags, maxmsg, msgsize, curmsgs, 4 reserved longs
      attr[1] = BigInt(sizes.maxMessages);
      attr[2] = BigInt(sizes.messageSize);
    }
    const fd = ffi.call.mq_open(ffi.cstring(name), flags, mode, attr);
    if (fd < 0) {
      const errno = ffi.errno();
      throw openError(errno, `${sizes ? "create" : "open"} ${nameOf(name)}`, sizes);
    }
    if (creating) register("mq", name); // create() passes O_EXCL: this call made it
    return new MessageQueue(ffi, fd, name, access);
  }

  #getattr(): BigInt64Array {
    const a = new BigInt64Array(8);
    if (this.#ffi.call.mq_getattr(this.#fd, a) !== 0) throw errnoError(this.#ffi.errno(), `query ${nameOf(this.name)}`);
    return a;
  }

  /** The queue's attributes now (`currentMessages` changes as messages come and go). */
  get attributes(): Attributes {
    this.#checkOpen("query");
    const a = this.#getattr();
    return { maxMessages: Number(a[1]), messageSize: Number(a[2]), currentMessages: Number(a[3]) };
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  #checkOpen(what: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${what} ${nameOf(this.name)}: it is closed`);
  }

  #checkSend(message: Uint8Array): void {
    if (!(message instanceof Uint8Array)) {
      throw new TypeError(`Cannot send to ${nameOf(this.name)}: the message must be a Uint8Array`);
    }
    this.#checkOpen("send to");
    if (this.access === "read") throw new TypeError(`Cannot send to ${nameOf(this.name)}: it was opened for reading`);
    if (message.byteLength > this.messageSize) {
      throw new MessageTooLargeError(
        `Cannot send a message of ${message.byteLength} bytes to ${
          nameOf(this.name)
        }: it exceeds messageSize (${this.messageSize} bytes)`,
        message.byteLength,
        this.messageSize,
      );
    }
  }

  #checkReceive(): void {
    this.#checkOpen("receive from");
    if (this.access === "write") {
      throw new TypeError(`Cannot receive from ${nameOf(this.name)}: it was opened for writing`);
    }
  }

  /**
   * Sends without waiting. Returns false when the queue is full.
   *
   * @throws {MessageTooLargeError} when the message exceeds `messageSize`.
   * @throws {ClosedError} after `close()`.
   */
  trySend(message: Uint8Array, options: { priority?: number } = {}): boolean {
    const priority = checkPriority(options.priority);
    this.#checkSend(message);
    return this.#trySend(message, priority);
  }

  #trySend(message: Uint8Array, priority: number): boolean {
    for (;;) {
      if (this.#ffi.call.mq_timedsend(this.#fd, message, message.byteLength, priority, PAST) === 0) return true;
      const errno = this.#ffi.errno();
      if (errno === EINTR) continue;
      if (errno === ETIMEDOUT || errno === EAGAIN) return false;
      throw errnoError(errno, `send to ${nameOf(this.name)}`);
    }
  }

  /**
   * Receives without waiting: the oldest message of the highest priority, or undefined when the queue is empty.
   *
   * @throws {ClosedError} after `close()`.
   */
  tryReceive(): MqMessage | undefined {
    this.#checkReceive();
    return this.#tryReceive();
  }

  #tryReceive(): MqMessage | undefined {
    const buf = this.#buffer;
    for (;;) {
      const n = this.#ffi.call.mq_timedreceive(this.#fd, buf, buf.byteLength, this.#priority, PAST);
      if (n >= 0) return { data: buf.slice(0, n), priority: this.#priority[0]! };
      const errno = this.#ffi.errno();
      if (errno === EINTR) continue;
      if (errno === ETIMEDOUT || errno === EAGAIN) return undefined;
      throw errnoError(errno, `receive from ${nameOf(this.name)}`);
    }
  }

  /**
   * Sends one message, waiting while the queue is full.
   *
   * @throws {RangeError} for a priority outside 0..31 or a negative timeout.
   * @throws {MessageTooLargeError} when the message exceeds `messageSize` (nothing is sent).
   * @throws {TimeoutError} when `timeout` ran out; {@linkcode ClosedError} when the handle was closed.
   */
  send(message: Uint8Array, options: MqSendOptions = {}): Promise<void> {
    try {
      const priority = checkPriority(options.priority);
      const timeout = checkTimeout(options.timeout, "send");
      this.#checkSend(message);
      return this[sendChecked](message, priority, timeout, options.signal, undefined);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** @internal A validated send; `check` runs between waits and may throw to give up. */
  [sendChecked](
    message: Uint8Array,
    priority: number,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    check: (() => void) | undefined,
  ): Promise<void> {
    const run = () =>
      this.#loop(
        `send to ${nameOf(this.name)}`,
        timeout,
        signal,
        check,
        () => this.#trySend(message, priority) || undefined,
        async (abs) => {
          const r = await this.#ffi.callAsync.mq_timedsend(this.#fd, message, message.byteLength, priority, abs);
          return r === 0 || undefined;
        },
      );
    const p = this.#writeTurn.then(run);
    this.#writeTurn = p.catch(() => {});
    return p.then(() => {});
  }

  /**
   * Receives the oldest message of the highest priority, waiting while the queue is empty.
   *
   * @throws {TimeoutError} when `timeout` ran out (no message is lost: it stays for the next receive).
   * @throws {ClosedError} when the handle is or gets closed.
   */
  receive(options: MqReceiveOptions = {}): Promise<MqMessage> {
    try {
      const timeout = checkTimeout(options.timeout, "receive");
      this.#checkReceive();
      const run = () =>
        this.#loop(
          `receive from ${nameOf(this.name)}`,
          timeout,
          options.signal,
          undefined,
          () => this.#tryReceive(),
          (abs) => this.#receiveAsync(abs),
        );
      const p = this.#readTurn.then(run);
      this.#readTurn = p.catch(() => {});
      return p;
    } catch (e) {
      return Promise.reject(e);
    }
  }

  async #receiveAsync(abs: BigInt64Array): Promise<MqMessage | undefined> {
    const buf = this.#buffer;
    const n = await this.#ffi.callAsync.mq_timedreceive(this.#fd, buf, buf.byteLength, this.#priority, abs);
    // errno is unreliable here: a failure (timeout, EINTR) just means "try again"; the synchronous attempt of the
    // next round reports real errors.
    return n >= 0 ? { data: buf.slice(0, n), priority: this.#priority[0]! } : undefined;
  }

  /** @internal One wait of at most `ms` (the channel's pump is the only reader, so no turn is taken). */
  async [slice](ms: number): Promise<MqMessage | undefined> {
    this.#checkReceive();
    this.#busy++;
    try {
      return await this.#receiveAsync(deadlineIn(this.#ffi, ms));
    } finally {
      this.#done();
    }
  }

  async #loop<T>(
    what: string,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    check: (() => void) | undefined,
    attempt: () => T | undefined,
    block: (abs: BigInt64Array) => Promise<T | undefined>,
  ): Promise<T> {
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    this.#busy++;
    try {
      for (;;) {
        if (this.#closed) throw new ClosedError(`Cannot ${what}: it is closed`);
        if (signal?.aborted) throw abortError(signal);
        const got = attempt();
        if (got !== undefined) return got;
        check?.();
        const left = deadline - Date.now();
        if (left <= 0) throw new TimeoutError(`Cannot ${what}: timed out after ${timeout} ms`);
        const blocked = await block(deadlineIn(this.#ffi, Math.min(left, SLICE_MS)));
        if (blocked !== undefined) return blocked;
      }
    } finally {
      this.#done();
    }
  }

  #done(): void {
    if (--this.#busy === 0 && this.#closed) this.#release();
  }

  #release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#ffi.call.mq_close(this.#fd);
  }

  /**
   * Closes this handle; idempotent. Pending calls reject with `ClosedError` (within 100 ms); the descriptor is
   * released once no native call uses it. The queue itself lives on until unlinked.
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#busy === 0) this.#release();
  }

  /**
   * Removes the queue's name (handles stay usable until closed).
   *
   * @throws {NotFoundError} when the name is already gone.
   */
  unlink(): void {
    unlinkName(this.#ffi, this.name);
  }

  /**
   * Removes the queue `name`.
   *
   * @throws {NotFoundError} when it does not exist.
   */
  static async unlink(name: string): Promise<void> {
    checkName(name);
    unlinkName(await loadNative(), name);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** mq_unlink, and the owner record with it (also when the name was gone already: the record is stale then). */
function unlinkName(ffi: Native, name: string): void {
  if (ffi.call.mq_unlink(ffi.cstring(name)) !== 0) {
    const errno = ffi.errno();
    if (errno === ERRNO.ENOENT) unregister("mq", name);
    throw errnoError(errno, `unlink ${nameOf(name)}`);
  }
  unregister("mq", name);
}

/** An absolute CLOCK_REALTIME time `ms` from now, as a struct timespec. */
function deadlineIn(ffi: Native, ms: number): BigInt64Array {
  const ts = new BigInt64Array(2);
  ffi.call.clock_gettime(0, ts);
  const ns = ts[1]! + BigInt(Math.max(0, Math.round(ms * 1e6)));
  ts[0] = ts[0]! + ns / 1_000_000_000n;
  ts[1] = ns % 1_000_000_000n;
  return ts;
}

function checkSizes(name: string, options: CreateOptions): CreateOptions {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Cannot create ${nameOf(name)}: options { maxMessages, messageSize } are required`);
  }
  const mode = options.mode ?? 0o600;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new RangeError(`Cannot create ${nameOf(name)}: mode must be from 0 to 0o777`);
  }
  return {
    maxMessages: positive(options.maxMessages, "maxMessages", name),
    messageSize: positive(options.messageSize, "messageSize", name),
    mode,
  };
}

/**
 * Creates the queue `name` (`"/"` then 1 to 254 bytes without `"/"`), opened for reading and writing.
 *
 * @throws {TypeError} for a bad name; {@linkcode RangeError} for sizes that are not positive integers.
 * @throws {AlreadyExistsError} when the name exists.
 * @throws {IpcError} naming the kernel limit when the sizes exceed it.
 *
 * @example
 * ```ts
 * import { AlreadyExistsError, mq, runtime } from "ipckit";
 * const name = `/ipckit-create-${(await runtime()).pid}`;
 * using q = await mq.create(name, { maxMessages: 10, messageSize: 256 }); // mode 0600
 * try {
 *   await mq.create(name, { maxMessages: 10, messageSize: 256 });
 * } catch (e) {
 *   console.log(e instanceof AlreadyExistsError); // true
 * } finally {
 *   q.unlink();
 * }
 * ```
 */
export function create(name: string, options: CreateOptions): Promise<MessageQueue> {
  try {
    checkName(name);
    const sizes = checkSizes(name, options);
    return MessageQueue[openQueue](name, O_CREAT | O_EXCL | O_RDWR, sizes.mode!, "both", sizes);
  } catch (e) {
    return Promise.reject(e);
  }
}

const ACCESS: Record<Access, number> = { read: O_RDONLY, write: O_WRONLY, both: O_RDWR };

/**
 * Opens the existing queue `name`.
 *
 * @throws {NotFoundError} when it does not exist.
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * const name = `/ipckit-open-${(await runtime()).pid}`;
 * using owner = await mq.create(name, { maxMessages: 10, messageSize: 256 });
 * using writer = await mq.open(name, { mode: "write" }); // in another process, usually
 * try {
 *   writer.trySend(new TextEncoder().encode("from the writer"));
 *   console.log(new TextDecoder().decode((await owner.receive({ timeout: 1000 })).data)); // "from the writer"
 * } finally {
 *   owner.unlink();
 * }
 * ```
 */
export function open(name: string, options: OpenOptions = {}): Promise<MessageQueue> {
  try {
    checkName(name);
    const access = options.mode ?? "both";
    if (!(access in ACCESS)) throw new TypeError(`Cannot open ${nameOf(name)}: mode must be "read", "write" or "both"`);
    return MessageQueue[openQueue](name, ACCESS[access], 0, access);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * Opens the queue `name`, creating it with `options` when it does not exist.
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * const name = `/ipckit-either-${(await runtime()).pid}`;
 * // Whoever comes first creates the queue; the sizes apply only then.
 * using a = await mq.openOrCreate(name, { maxMessages: 5, messageSize: 128 });
 * using b = await mq.openOrCreate(name, { maxMessages: 5, messageSize: 128 });
 * console.log(a.maxMessages, b.messageSize); // 5 128
 * a.unlink();
 * ```
 */
export async function openOrCreate(name: string, options: CreateOptions): Promise<MessageQueue> {
  for (let i = 0;; i++) {
    try {
      return await create(name, options);
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
    }
    try {
      return await open(name);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 10) throw e; // removed in between: try again
    }
  }
}

/**
 * What an mq channel promises. Messages of any size up to 4 GiB - 1 (chunked into queue messages).
 *
 * @example
 * ```ts
 * import { mq } from "ipckit";
 * console.log(mq.capabilities.maxMessage); // 4294967295: larger messages go in pieces
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_FRAME,
  crossHost: false,
  datagram: false,
};

/** Options of {@linkcode channel}. */
export interface MqChannelOptions extends ChannelOptions {
  /** true: create the two queues and wait for the peer; false (default): open the peer's. */
  create?: boolean;
  /** Queue depth of each direction (creator only). Default 10, the Linux default limit. */
  maxMessages?: number;
  /** Queue message size (creator only); larger user messages are sent in pieces. Default 8192. */
  messageSize?: number;
  /** Permission bits of the queues (creator only). Default 0o600. */
  mode?: number;
  /** Opener: how long to wait for the creator's queues, in milliseconds. Default 0. */
  wait?: number;
  /** Aborts waiting for the peer. */
  signal?: AbortSignal;
}

const hello = helloRecord;
const greeting = (m: MqMessage, name: string): Identity => helloIdentity(m.data, `mq channel "${name}"`);

/** A Channel over two message queues; see the module doc. */
class MqChannel extends BaseChannel {
  readonly capabilities: Capabilities = capabilities;
  readonly #in: MessageQueue;
  readonly #out: MessageQueue;
  readonly #ffi: Native;
  readonly #peer: Identity;
  #sendTurn: Promise<unknown> = Promise.resolve();
  #pump: Promise<void>;
  #paused = false;
  #stopping = false;
  #wake: (() => void) | undefined;
  #peerClosed = false;

  constructor(
    ffi: Native,
    name: string,
    input: MessageQueue,
    output: MessageQueue,
    peer: Identity,
    o: ChannelOptions,
  ) {
    super(`mq channel "${name}"`, o);
    this.#ffi = ffi;
    this.#in = input;
    this.#out = output;
    this.#peer = peer;
    this.#pump = this.#run();
  }

  #peerAlive(): boolean {
    return alive(this.#peer.id, this.#peer.tag, this.#ffi);
  }

  #check = (): void => {
    if (this.#peerClosed) throw new ClosedError(`Cannot send on ${this.description}: the peer closed it`);
    if (!this.#peerAlive()) throw new ClosedError(`Cannot send on ${this.description}: the peer process died`);
  };

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> {
    const p = this.#sendTurn.then(() =>
      writeRecords(message, this.#out.messageSize, (r, s) => this.#put(r, s), signal)
    );
    this.#sendTurn = p.catch(() => {});
    return p;
  }

  #put(chunk: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#out.trySend(chunk)) return undefined;
    return this.#out[sendChecked](chunk, 0, undefined, signal, this.#check);
  }

  protected override _pause(): void {
    this.#paused = true;
  }

  protected override _resume(): void {
    this.#paused = false;
    this.#wake?.();
  }

  /** Moves queue messages into the channel until END, the peer's death, a protocol error or close. */
  async #run(): Promise<void> {
    const assembler = new Reassembler(this.maxMessage, this.description);
    try {
      while (!this.#stopping) {
        if (this.#paused) {
          await new Promise<void>((r) => (this.#wake = r));
          this.#wake = undefined;
          continue;
        }
        let m = this.#in.tryReceive();
        if (m === undefined) {
          if (!this.#peerAlive()) {
            return this.end(new ClosedError(`Cannot receive on ${this.description}: the peer process died`));
          }
          m = await this.#in[slice](SLICE_MS);
          if (m === undefined) continue;
        }
        const kind = m.data[0];
        if (kind === DATA || kind === MORE) {
          let whole: Uint8Array | undefined;
          try {
            whole = assembler.take(m.data);
          } catch (e) {
            return this.end(e as Error);
          }
          if (whole !== undefined) this.deliver(whole);
        } else if (kind === END) {
          this.#peerClosed = true;
          return this.end();
        } else if (kind !== HELLO) {
          return this.end(new ProtocolError(`Cannot receive on ${this.description}: unknown message kind ${kind}`));
        }
      }
    } catch (e) {
      if (!this.#stopping) this.end(e as Error);
    }
  }

  protected async _close(): Promise<void> {
    await this.#sendTurn;
    if (!this.#peerClosed) {
      try {
        await this.#put(new Uint8Array([END]));
      } catch { /* the peer is gone or closed: nobody to tell */ }
    }
    this.#stopping = true;
    this.#wake?.();
    await this.#pump;
    this.#in.close();
    this.#out.close();
  }
}

/**
 * A duplex {@linkcode Channel} over two message queues `<name>-0` and `<name>-1`. With `create: true`, creates
 * them and waits for one peer to open them (then removes their names); otherwise opens the peer's.
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * const name = `/ipckit-chan-${(await runtime()).pid}`;
 * // Usually two processes: the creator makes <name>-0 and <name>-1 and removes them once the peer is there.
 * const [a, b] = await Promise.all([
 *   mq.channel(name, { create: true }),
 *   mq.channel(name, { wait: 10_000 }),
 * ]);
 * await a.send(new Uint8Array(20_000)); // more than a queue message holds: sent in pieces
 * console.log((await b.receive()).byteLength); // 20000
 * await a.close();
 * await b.close();
 * ```
 * @throws {AlreadyExistsError} (create) when the queues exist; {@linkcode NotFoundError} (open) when they do
 * not after `wait` milliseconds.
 */
export async function channel(name: string, options: MqChannelOptions = {}): Promise<Channel> {
  checkName(name, 2);
  const pid = (await runtime()).pid;
  const ffi = await loadNative();
  return options.create ? await createChannel(ffi, name, pid, options) : await openChannel(ffi, name, pid, options);
}

async function createChannel(ffi: Native, name: string, pid: number, options: MqChannelOptions): Promise<Channel> {
  const sizes: CreateOptions = {
    maxMessages: options.maxMessages ?? DEFAULT_LIMITS.msg_max,
    messageSize: options.messageSize ?? DEFAULT_LIMITS.msgsize_max,
    mode: options.mode ?? 0o600,
  };
  if (!(sizes.messageSize >= 8)) throw new RangeError(`Cannot create mq channel "${name}": messageSize must be >= 8`);
  const input = await create(`${name}-1`, sizes);
  let output: MessageQueue | undefined;
  let unlinked = false;
  try {
    output = await create(`${name}-0`, sizes);
    output.trySend(hello(pid));
    const peer = greeting(await input.receive(options.signal ? { signal: options.signal } : {}), name);
    input.unlink();
    output.unlink();
    unlinked = true;
    return new MqChannel(ffi, name, input, output, peer, options);
  } catch (e) {
    if (!unlinked) {
      for (const q of [input, output]) {
        try {
          q?.unlink();
        } catch { /* already gone */ }
      }
    }
    input.close();
    output?.close();
    throw e;
  }
}

async function openChannel(ffi: Native, name: string, pid: number, options: MqChannelOptions): Promise<Channel> {
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open mq channel "${name}": wait must be >= 0 milliseconds`);
  const deadline = Date.now() + wait;
  const queues: MessageQueue[] = [];
  try {
    for (const suffix of ["-0", "-1"]) {
      for (let delay = 1;; delay = Math.min(delay * 2, 50)) {
        options.signal?.throwIfAborted();
        try {
          queues.push(await open(`${name}${suffix}`));
          break;
        } catch (e) {
          if (!(e instanceof NotFoundError) || Date.now() >= deadline) throw e;
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    const [input, output] = queues as [MessageQueue, MessageQueue];
    const greetingMessage = await input.receive({
      timeout: Math.max(deadline - Date.now(), 10_000),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const peer = greeting(greetingMessage, name);
    if (!output.trySend(hello(pid))) {
      throw new AlreadyExistsError(`Cannot open mq channel "${name}": it already has its peer`);
    }
    return new MqChannel(ffi, name, input, output, peer, options);
  } catch (e) {
    for (const q of queues) q.close();
    throw e;
  }
}
