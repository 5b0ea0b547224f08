/**
 * POSIX message queues (Linux): the `mq` namespace. The queue itself ({@linkcode MessageQueue}, made by
 * `MessageQueue.create` / `open` / `openOrCreate`) is the OS object of `os/mq.ts`, re-exported here; this file adds
 * {@linkcode channel}, a duplex {@linkcode Channel} over two queues: a port of the record channel
 * (`transports/record_channel.ts`, which documents the records, the handshake and the wait policy). The namespace's
 * `create`, `open` and `openOrCreate` are deprecated spellings of the statics.
 *
 * The two queues are `<name>-0` (creator → opener) and `<name>-1` (opener → creator); every record goes at priority
 * 0, so records keep their order. Waits use `mq_timedreceive`/`mq_timedsend` off the main thread, so a record is
 * noticed at once. The creator removes both queue names once the opener attached, so a crash later leaves nothing
 * behind.
 *
 * @module
 */
import { type CreateOptions, MessageQueue, type OpenOptions, receiveFor, sendFor } from "../os/mq.ts";
import { checkName, DEFAULT_LIMITS } from "../os/mq_checks.ts";
import type { Capabilities, Channel, ChannelOptions } from "./channel.ts";
import { MAX_FRAME } from "./framing.ts";
import { connect, type RecordPort } from "./record_channel.ts";

export {
  type Access,
  type Attributes,
  type CreateOptions,
  MAX_PRIORITY,
  MessageQueue,
  type MqMessage,
  type MqReceiveOptions,
  type MqSendOptions,
  type OpenOptions,
} from "../os/mq.ts";

/**
 * Creates a POSIX message queue: the old spelling of {@linkcode MessageQueue.create}.
 *
 * @deprecated Use MessageQueue.create; removed in the next release.
 * @example
 * ```ts
 * import { MessageQueue, runtime } from "ipckit";
 * const name = `/ipckit-old-create-${(await runtime()).pid}`;
 * using q = await MessageQueue.create(name, { maxMessages: 1, messageSize: 8 }); // was: await mq.create(name, ...)
 * q.unlink();
 * ```
 */
export const create = (name: string, options: CreateOptions): Promise<MessageQueue> =>
  MessageQueue.create(name, options);

/**
 * Opens a POSIX message queue: the old spelling of {@linkcode MessageQueue.open}.
 *
 * @deprecated Use MessageQueue.open; removed in the next release.
 * @example
 * ```ts
 * import { MessageQueue, runtime } from "ipckit";
 * const name = `/ipckit-old-open-${(await runtime()).pid}`;
 * using owner = await MessageQueue.create(name, { maxMessages: 1, messageSize: 8 });
 * using q = await MessageQueue.open(name); // was: await mq.open(name)
 * console.log(q.name === owner.name); // true
 * owner.unlink();
 * ```
 */
export const open = (name: string, options?: OpenOptions): Promise<MessageQueue> => MessageQueue.open(name, options);

/**
 * Opens or creates a POSIX message queue: the old spelling of {@linkcode MessageQueue.openOrCreate}.
 *
 * @deprecated Use MessageQueue.openOrCreate; removed in the next release.
 * @example
 * ```ts
 * import { MessageQueue, runtime } from "ipckit";
 * const name = `/ipckit-old-either-${(await runtime()).pid}`;
 * using q = await MessageQueue.openOrCreate(name, { maxMessages: 1, messageSize: 8 }); // was: mq.openOrCreate
 * q.unlink();
 * ```
 */
export const openOrCreate = (name: string, options: CreateOptions): Promise<MessageQueue> =>
  MessageQueue.openOrCreate(name, options);

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

/** The record port over two queues: `input` is read by this side, `output` by the peer. */
class MqPort implements RecordPort {
  readonly recordSize: number;
  readonly #input: MessageQueue;
  readonly #output: MessageQueue;
  readonly #creator: boolean;

  constructor(input: MessageQueue, output: MessageQueue, creator: boolean) {
    this.#input = input;
    this.#output = output;
    this.#creator = creator;
    this.recordSize = output.messageSize;
  }

  tryTake(): Uint8Array | undefined {
    return this.#input.tryReceive()?.data;
  }

  async take(ms: number): Promise<Uint8Array | undefined> {
    return (await receiveFor(this.#input, ms))?.data;
  }

  tryPut(record: Uint8Array): boolean {
    return this.#output.trySend(record);
  }

  put(record: Uint8Array, ms: number): Promise<boolean> {
    return sendFor(this.#output, record, ms);
  }

  /** Both sides hold their queues open: the names can go, so a crash later leaves nothing behind. */
  connected(): void {
    if (this.#creator) this.#unlink();
  }

  release(): void {
    this.#input.close();
    this.#output.close();
  }

  abandon(): void {
    if (this.#creator) this.#unlink();
    this.release();
  }

  #unlink(): void {
    for (const q of [this.#input, this.#output]) {
      try {
        q.unlink();
      } catch { /* already gone */ }
    }
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
 * @throws {AlreadyExistsError} (create) when the queues exist; (open) when the channel has its peer already.
 * @throws {NotFoundError} (open) when the queues do not exist after `wait` milliseconds.
 */
export async function channel(name: string, options: MqChannelOptions = {}): Promise<Channel> {
  checkName(name, 2);
  const sizes = {
    maxMessages: options.maxMessages ?? DEFAULT_LIMITS.msg_max,
    messageSize: options.messageSize ?? DEFAULT_LIMITS.msgsize_max,
    mode: options.mode ?? 0o600,
  };
  if (options.create && !(sizes.messageSize >= 8)) {
    throw new RangeError(`Cannot create mq channel "${name}": messageSize must be >= 8`);
  }
  return await connect({
    description: `mq channel "${name}"`,
    capabilities,
    async create() {
      const input = await MessageQueue.create(`${name}-1`, sizes);
      try {
        return new MqPort(input, await MessageQueue.create(`${name}-0`, sizes), true);
      } catch (e) {
        input.unlink();
        input.close();
        throw e;
      }
    },
    async open() {
      const input = await MessageQueue.open(`${name}-0`);
      try {
        return new MqPort(input, await MessageQueue.open(`${name}-1`), false);
      } catch (e) {
        input.close();
        throw e;
      }
    },
  }, options);
}
