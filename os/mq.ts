/**
 * POSIX message queues (Linux): named kernel queues of whole messages with priorities, usable from any process
 * (C, Python, another runtime) that calls `mq_open(3)`. This is the OS object only; the channel over two queues is
 * `transports/mq.ts`, which re-exports this module as the `mq` namespace.
 *
 * - `MessageQueue.create` / `open` / `openOrCreate` (their system calls are in `os/mq_open.ts`) give a
 *   {@linkcode MessageQueue}: raw messages with priorities (0..31, highest first, FIFO within a priority), waiting
 *   and non-waiting send/receive, attributes, close and unlink.
 *
 * The named-object descriptor of the kind (`mq` records: look up by name, remove, list `/dev/mqueue`) is
 * {@linkcode mqName}, re-exported from `os/mq_name.ts`.
 *
 * Waits never freeze the event loop: they run `mq_timedsend`/`mq_timedreceive` off the main thread in slices of
 * at most 100 ms (so a process can always exit), checking between slices for close, abort and timeout.
 *
 * Over ~400 lines: the handle alone (its waits, turns and descriptor release share private state), with the
 * documented statics that make it (their system calls are in `os/mq_open.ts`).
 *
 * @module
 */
import { abortError, ClosedError, MessageTooLargeError, TimeoutError } from "../errors.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import { unregister } from "../registry.ts";
import { checkName, loadNative, nameOf } from "./mq_checks.ts";
import {
  type Access,
  type CreateOptions,
  createQueue,
  type MakeQueue,
  type OpenOptions,
  openOrCreateQueue,
  openQueue,
} from "./mq_open.ts";

export type { Access, CreateOptions, OpenOptions } from "./mq_open.ts";

/** The named-object descriptor of POSIX queues (look up, remove, list `/dev/mqueue`), defined in `os/mq_name.ts`. */
export { mqName } from "./mq_name.ts";

/** The longest native wait, in milliseconds: a blocked thread cannot be stopped, so it must return by itself. */
const SLICE_MS = 100;
/**
 * The highest message priority ipckit accepts (POSIX guarantees 32 levels).
 *
 * @example
 * ```ts
 * import { MessageQueue, mq, runtime } from "ipckit";
 * using q = await MessageQueue.create(`/ipckit-prio-${(await runtime()).pid}`, { maxMessages: 4, messageSize: 64 });
 * q.unlink();
 * await q.send(new TextEncoder().encode("now!"), { priority: mq.MAX_PRIORITY });
 * console.log((await q.receive()).priority); // 31
 * ```
 */
export const MAX_PRIORITY = 31;
const { EINTR, EAGAIN, ETIMEDOUT } = ERRNO as Record<string, number>;

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

const PAST = new BigInt64Array(2); // 1970: an absolute timeout that has passed, for non-waiting calls

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

/**
 * Internal (for the channel port; not part of the `mq` namespace): one native wait of at most `ms` for a message.
 * The port's pump is the queue's only reader, so no turn is taken.
 */
export let receiveFor: (queue: MessageQueue, ms: number) => Promise<MqMessage | undefined>;
/** Internal: one native wait of at most `ms` to send a checked message at priority 0; false when still full. */
export let sendFor: (queue: MessageQueue, message: Uint8Array, ms: number) => Promise<boolean>;

/**
 * A handle to a POSIX message queue. `close()` releases this handle; `unlink()` removes the name.
 *
 * @example
 * ```ts
 * import { MessageQueue, runtime } from "ipckit";
 * using q = await MessageQueue.create(`/ipckit-jobs-${(await runtime()).pid}`, { maxMessages: 10, messageSize: 1024 });
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

  /** The maker `os/mq_open.ts` calls: the constructor is private. */
  static readonly #make: MakeQueue<MessageQueue> = (ffi, fd, name, access) => new MessageQueue(ffi, fd, name, access);

  /**
   * Creates the queue `name` (`"/"` then 1 to 254 bytes without `"/"`), opened for reading and writing.
   *
   * @throws {TypeError} for a bad name; {@linkcode RangeError} for sizes that are not positive integers.
   * @throws {AlreadyExistsError} when the name exists.
   * @throws {IpcError} naming the kernel limit when the sizes exceed it.
   *
   * @example
   * ```ts
   * import { AlreadyExistsError, MessageQueue, runtime } from "ipckit";
   * const name = `/ipckit-create-${(await runtime()).pid}`;
   * using q = await MessageQueue.create(name, { maxMessages: 10, messageSize: 256 }); // mode 0600
   * try {
   *   await MessageQueue.create(name, { maxMessages: 10, messageSize: 256 });
   * } catch (e) {
   *   console.log(e instanceof AlreadyExistsError); // true
   * } finally {
   *   q.unlink();
   * }
   * ```
   */
  static create(name: string, options: CreateOptions): Promise<MessageQueue> {
    return createQueue(MessageQueue.#make, name, options);
  }

  /**
   * Opens the existing queue `name`.
   *
   * @throws {NotFoundError} when it does not exist.
   *
   * @example
   * ```ts
   * import { MessageQueue, runtime } from "ipckit";
   * const name = `/ipckit-open-${(await runtime()).pid}`;
   * using owner = await MessageQueue.create(name, { maxMessages: 10, messageSize: 256 });
   * using writer = await MessageQueue.open(name, { mode: "write" }); // in another process, usually
   * try {
   *   writer.trySend(new TextEncoder().encode("from the writer"));
   *   console.log(new TextDecoder().decode((await owner.receive({ timeout: 1000 })).data)); // "from the writer"
   * } finally {
   *   owner.unlink();
   * }
   * ```
   */
  static open(name: string, options: OpenOptions = {}): Promise<MessageQueue> {
    return openQueue(MessageQueue.#make, name, options);
  }

  /**
   * Opens the queue `name`, creating it with `options` when it does not exist.
   *
   * @example
   * ```ts
   * import { MessageQueue, runtime } from "ipckit";
   * const name = `/ipckit-either-${(await runtime()).pid}`;
   * // Whoever comes first creates the queue; the sizes apply only then.
   * using a = await MessageQueue.openOrCreate(name, { maxMessages: 5, messageSize: 128 });
   * using b = await MessageQueue.openOrCreate(name, { maxMessages: 5, messageSize: 128 });
   * console.log(a.maxMessages, b.messageSize); // 5 128
   * a.unlink();
   * ```
   */
  static openOrCreate(name: string, options: CreateOptions): Promise<MessageQueue> {
    return openOrCreateQueue(MessageQueue.#make, name, options);
  }

  static {
    receiveFor = (q, ms) => q.#receiveSlice(ms);
    sendFor = (q, message, ms) => q.#sendSlice(message, ms);
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
      const run = () =>
        this.#loop(
          `send to ${nameOf(this.name)}`,
          timeout,
          options.signal,
          () => this.#trySend(message, priority) || undefined,
          async (abs) => {
            const r = await this.#ffi.callAsync.mq_timedsend(this.#fd, message, message.byteLength, priority, abs);
            return r === 0 || undefined;
          },
        );
      const p = this.#writeTurn.then(run);
      this.#writeTurn = p.catch(() => {});
      return p.then(() => {});
    } catch (e) {
      return Promise.reject(e);
    }
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

  /** One wait of at most `ms` (see `receiveFor`). */
  async #receiveSlice(ms: number): Promise<MqMessage | undefined> {
    this.#checkReceive();
    this.#busy++;
    try {
      return await this.#receiveAsync(deadlineIn(this.#ffi, ms));
    } finally {
      this.#done();
    }
  }

  /** One wait of at most `ms` to send (see `sendFor`). */
  async #sendSlice(message: Uint8Array, ms: number): Promise<boolean> {
    this.#checkSend(message);
    this.#busy++;
    try {
      const abs = deadlineIn(this.#ffi, ms);
      return await this.#ffi.callAsync.mq_timedsend(this.#fd, message, message.byteLength, 0, abs) === 0;
    } finally {
      this.#done();
    }
  }

  async #loop<T>(
    what: string,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
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
   * Removes the queue `name` (handles open on it stay usable until closed).
   *
   * @throws {NotFoundError} when it does not exist.
   *
   * @example
   * ```ts
   * import { MessageQueue, NotFoundError, runtime } from "ipckit";
   * const name = `/ipckit-unlink-${(await runtime()).pid}`;
   * (await MessageQueue.create(name, { maxMessages: 1, messageSize: 8 })).close(); // closed, the name stays...
   * await MessageQueue.unlink(name); // ...until removed
   * await MessageQueue.unlink(name).catch((e) => console.log(e instanceof NotFoundError)); // true: gone already
   * ```
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
