/**
 * System V message queues: the `sysv` namespace. The queue itself ({@linkcode SysvQueue}, made by
 * `SysvQueue.create` / `open` / `openOrCreate` / `fromId` / `private`; {@linkcode key}, {@linkcode limits}) is the
 * OS object of `os/sysv.ts` and `os/sysv_open.ts`, re-exported here (the namespace's `create`, `open`,
 * `openOrCreate`, `fromId` and `private` are deprecated spellings of the statics); this file adds
 * {@linkcode channel}, a duplex {@linkcode Channel} over one queue: a port of the record channel
 * (`transports/record_channel.ts`, which documents the records, the handshake and the wait policy). Message types
 * separate the directions and the greetings:
 *
 * ```text
 * type 1  creator → opener    type 3  creator's HELLO (taken by exactly one opener)
 * type 2  opener → creator    type 4  opener's HELLO
 * ```
 *
 * Every queue message is one record (kind byte first; pieces are msgmax - 1 bytes at most); HELLO records go on
 * types 3 and 4 only. msgrcv cannot wait with a timeout, so the pump polls (the record channel's backoff, up to
 * 20 ms) and keeps the queue, 16 KiB by default, draining while the application is busy.
 *
 * **Who removes the queue.** A queue has no name to unlink early, and `IPC_RMID` discards unread messages, so it
 * is removed by the side that knows both sides are done: the side that closes second (it has read the peer's END,
 * or finds it while draining after its own END), or a side that sees its peer process dead. If one side closed
 * and the other then dies without closing, the queue stays (`ipcs -q`; `ipcrm -q <id>`).
 *
 * The creator asks for a 1 MiB queue (`msg_qbytes`) when it may (root or CAP_SYS_RESOURCE), else keeps msgmnb.
 * Both directions share the queue's bytes: a side that stops reading past `highWaterMark` also makes its own
 * sends wait once the queue is full.
 *
 * @module
 */
import { ClosedError, NotFoundError, PermissionError } from "../errors.ts";
import { SysvQueue } from "../os/sysv.ts";
import type { SysvCreateOptions } from "../os/sysv_open.ts";
import type { Capabilities, Channel, ChannelOptions } from "./channel.ts";
import { MAX_FRAME } from "./framing.ts";
import { connect, type RecordPort } from "./record_channel.ts";
import { END, HELLO } from "./records.ts";

export {
  type Limits,
  limits,
  type SysvCreateOptions,
  type SysvInfo,
  type SysvMessage,
  SysvQueue,
  type SysvReceiveOptions,
  type SysvSendOptions,
} from "../os/sysv.ts";
export { key } from "../os/sysv_open.ts";

/**
 * Creates a System V queue: the old spelling of {@linkcode SysvQueue.create}.
 *
 * @deprecated Use SysvQueue.create; removed in the next release.
 * @example
 * ```ts
 * import { runtime, sysv, SysvQueue } from "ipckit";
 * using q = await SysvQueue.create(await sysv.key((await runtime()).pid + 0x01000000)); // was: sysv.create(k)
 * q.remove();
 * ```
 */
export const create = (k: number, options?: SysvCreateOptions): Promise<SysvQueue> => SysvQueue.create(k, options);

/**
 * Opens a System V queue: the old spelling of {@linkcode SysvQueue.open}.
 *
 * @deprecated Use SysvQueue.open; removed in the next release.
 * @example
 * ```ts
 * import { runtime, sysv, SysvQueue } from "ipckit";
 * const k = await sysv.key((await runtime()).pid + 0x02000000);
 * using owner = await SysvQueue.create(k);
 * using q = await SysvQueue.open(k); // was: sysv.open(k)
 * console.log(q.id === owner.id); // true
 * owner.remove();
 * ```
 */
export const open = (k: number): Promise<SysvQueue> => SysvQueue.open(k);

/**
 * Opens or creates a System V queue: the old spelling of {@linkcode SysvQueue.openOrCreate}.
 *
 * @deprecated Use SysvQueue.openOrCreate; removed in the next release.
 * @example
 * ```ts
 * import { runtime, sysv, SysvQueue } from "ipckit";
 * using q = await SysvQueue.openOrCreate(await sysv.key((await runtime()).pid + 0x03000000)); // was: sysv.openOrCreate
 * q.remove();
 * ```
 */
export const openOrCreate = (k: number, options?: SysvCreateOptions): Promise<SysvQueue> =>
  SysvQueue.openOrCreate(k, options);

/**
 * Takes a System V queue by id: the old spelling of {@linkcode SysvQueue.fromId}.
 *
 * @deprecated Use SysvQueue.fromId; removed in the next release.
 * @example
 * ```ts
 * import { SysvQueue } from "ipckit";
 * using q = await SysvQueue.private();
 * using same = await SysvQueue.fromId(q.id); // was: sysv.fromId(id)
 * console.log(same.id === q.id); // true
 * q.remove();
 * ```
 */
export const fromId = (id: number): Promise<SysvQueue> => SysvQueue.fromId(id);

/**
 * Creates a System V queue without a key: the old spelling of {@linkcode SysvQueue.private}.
 *
 * @deprecated Use SysvQueue.private; removed in the next release.
 * @example
 * ```ts
 * import { SysvQueue } from "ipckit";
 * using q = await SysvQueue.private(); // was: sysv.private()
 * q.remove();
 * ```
 */
const privateQueue = (options?: SysvCreateOptions): Promise<SysvQueue> => SysvQueue.private(options);
export { privateQueue as private };

/**
 * What a SysV channel promises. Messages of any size up to 4 GiB - 1 (sent in pieces).
 *
 * @example
 * ```ts
 * import { sysv } from "ipckit";
 * console.log(sysv.capabilities.ordered); // true
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
export interface SysvChannelOptions extends ChannelOptions {
  /** true: create the queue and wait for the peer; false (default): open the creator's. */
  create?: boolean;
  /** Permission bits of the queue (creator). Default 0o600. */
  mode?: number;
  /** The queue's capacity in bytes (creator). Default 1 MiB when permitted, else msgmnb. */
  queueBytes?: number;
  /** Opener: how long to wait for the creator's queue, in milliseconds. Default 0. */
  wait?: number;
  /** Aborts waiting for the peer. */
  signal?: AbortSignal;
}

const TO_OPENER = 1, TO_CREATOR = 2, HELLO_TO_OPENER = 3, HELLO_TO_CREATOR = 4;
const WANTED_QUEUE_BYTES = 1024 * 1024;
/**
 * How long an opener waits for the greeting of a queue that exists, at least, in milliseconds. The creator posts
 * its greeting right after creating the queue (no await in between), so a queue without one has its peer already;
 * the floor only covers a creator descheduled in that instant.
 */
const GREETING_WAIT = 2000;

/** The record port over one queue; this side reads `inType` (and its greeting type) and writes `outType`. */
class SysvPort implements RecordPort {
  readonly recordSize: number;
  readonly #q: SysvQueue;
  readonly #creator: boolean;
  readonly #what: string;

  constructor(q: SysvQueue, creator: boolean, what: string) {
    this.#q = q;
    this.#creator = creator;
    this.#what = what;
    this.recordSize = q.maxMessage;
  }

  tryTake(_limit: number, greeting: boolean): Uint8Array | undefined {
    const c = this.#creator;
    const type = greeting ? (c ? HELLO_TO_CREATOR : HELLO_TO_OPENER) : (c ? TO_CREATOR : TO_OPENER);
    return this.#removedIsClosed("receive on", () => this.#q.tryReceive({ type })?.data);
  }

  tryPut(record: Uint8Array): boolean {
    const c = this.#creator;
    const type = record[0] === HELLO ? (c ? HELLO_TO_OPENER : HELLO_TO_CREATOR) : (c ? TO_OPENER : TO_CREATOR);
    return this.#removedIsClosed("send on", () => this.#q.trySend(type, record));
  }

  #removedIsClosed<T>(what: string, call: () => T): T {
    try {
      return call();
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      throw new ClosedError(`Cannot ${what} ${this.#what}: the queue was removed`, { cause: e });
    }
  }

  /** Nobody else will read or remove the queue: everything for us was read. */
  peerDied(): void {
    this.#remove();
  }

  /** The side that closes second removes the queue (see the module doc); the first leaves it to its peer. */
  release(end: { peerClosed: boolean; peerAlive: boolean }): void {
    // Has the peer closed too? Look for its END among what is left for us (discarded: we are closed).
    let peerClosed = end.peerClosed;
    try {
      for (let r = this.tryTake(0, false); !peerClosed && r !== undefined; r = this.tryTake(0, false)) {
        peerClosed = r[0] === END;
      }
    } catch { /* the queue is gone */ }
    if (peerClosed || !end.peerAlive) this.#remove();
    else this.#q.close();
  }

  abandon(): void {
    if (this.#creator) this.#remove();
    else this.#q.close();
  }

  #remove(): void {
    try {
      this.#q.remove();
    } catch { /* removed already (by the peer, or twice here) */ }
  }
}

/**
 * A duplex {@linkcode Channel} over the System V queue with key `k`. With `create: true`, creates it (mode 0600)
 * and waits for one peer; otherwise opens the creator's queue (waiting up to `wait` ms for it to appear).
 *
 * @example
 * ```ts
 * import { runtime, sysv } from "ipckit";
 * const k = await sysv.key((await runtime()).pid);
 * // Usually two processes: the creator waits for the opener; the last to close removes the queue.
 * const [a, b] = await Promise.all([sysv.channel(k, { create: true }), sysv.channel(k, { wait: 10_000 })]);
 * await b.send(new TextEncoder().encode("over one System V queue"));
 * console.log(new TextDecoder().decode(await a.receive())); // "over one System V queue"
 * await a.close();
 * await b.close();
 * ```
 * @throws {AlreadyExistsError} (create) when a queue has that key; (open) when the channel has its peer already.
 * @throws {NotFoundError} (open) when no queue appears within `wait`; the signal's reason when aborted (the creator
 * then removes the queue).
 */
export async function channel(k: number, options: SysvChannelOptions = {}): Promise<Channel> {
  const what = `System V channel with key 0x${(k >>> 0).toString(16)}`;
  return await connect({
    description: what,
    capabilities,
    greetingWait: GREETING_WAIT,
    create: async () => new SysvPort(await createQueue(k, options), true, what),
    open: async () => new SysvPort(await SysvQueue.open(k), false, what),
  }, options);
}

/** Creates the channel's queue, 1 MiB when permitted (or `queueBytes`). */
async function createQueue(k: number, options: SysvChannelOptions): Promise<SysvQueue> {
  const mode = options.mode ?? 0o600;
  if (options.queueBytes !== undefined) return await SysvQueue.create(k, { mode, maxBytes: options.queueBytes });
  const q = await SysvQueue.create(k, { mode });
  try {
    if (q.info.maxBytes < WANTED_QUEUE_BYTES) q.setMaxBytes(WANTED_QUEUE_BYTES);
  } catch (e) {
    if (!(e instanceof PermissionError)) {
      q.remove();
      throw e;
    }
  }
  return q;
}
