/**
 * A durable file queue (a spool directory): many producers append messages to a log, one consumer reads them and
 * acknowledges what it has processed. Messages survive the crash of any process (and, with `fsync: true`, a power
 * loss). Producers and the consumer may be processes of any runtime, or any language that can `flock(2)`, `pread`
 * and `pwrite` (Python's `fcntl.flock` + `struct` + `zlib.crc32` is enough).
 *
 * - `FileQueue.create` / `FileQueue.open` give a {@linkcode FileQueue}: `send()`, `receive()`, `tryReceive()`,
 *   `ack()`, `close()` (the namespace's `create` and `open` are deprecated spellings of these).
 * - {@linkcode channel} gives a duplex {@linkcode Channel} over two queues (see "Channel view"): a port of the
 *   record channel (`transports/record_channel.ts`, which documents the handshake and the wait policy).
 *
 * The queue itself is the OS object of `os/file_queue.ts` (made by `os/file_queue_open.ts`, read through
 * `os/file_queue_reader.ts`, its format in `os/file_queue_format.ts`),
 * re-exported here as the `fileQueue` namespace.
 *
 * ## Delivery: at-least-once, receive then ack
 *
 * `receive()` returns the next record after the consumer's cursor and moves the cursor in memory; `ack()`
 * persists the cursor (all messages received so far are acknowledged). After a crash of the consumer, a reopened
 * queue starts at the last acknowledged offset: acknowledged messages are never delivered again, received but
 * unacknowledged ones are delivered again, none is lost. A message whose `send()` resolved is in the log; a
 * producer that dies before its `send()` resolved may or may not have appended it (never half of it).
 *
 * There is one consumer per queue: the first handle that receives takes an exclusive `flock` on the queue
 * directory (released by `close()` or the death of its process); another handle's `receive()` then rejects with
 * `AlreadyExistsError`. Any number of handles may send.
 *
 * ## Directory
 *
 * ```text
 * <dir>/queue.log         the log (mode 0600)
 * <dir>/consumer.offset   the consumer's acknowledged offset (mode 0600), replaced atomically by rename(2)
 * <dir>/consumer.offset.tmp   exists only while an ack is being written
 * ```
 *
 * `create()` makes `<dir>` (mode 0700); an existing empty directory is accepted (it is removed and made again),
 * anything else is `AlreadyExistsError`. `open()` needs both files (`NotFoundError` otherwise): `consumer.offset`
 * is written last, so a half-created queue is not found.
 *
 * ## Log format (all integers little-endian)
 *
 * ```text
 * file header, 24 bytes at offset 0:
 *   0  u32  magic 0x51435049 ("IPCQ")
 *   4  u32  version 1
 *   8  u64  committed: the offset just after the last complete record (24 when empty)
 *  16  u32  CRC-32 of bytes 8..15 (the committed field)
 *  20  u32  reserved, 0
 * then records, back to back from offset 24:
 *   0  u32  magic 0x52435049 ("IPCR")
 *   4  u32  payload length n
 *   8  u32  CRC-32 of the payload
 *  12  n    payload
 * ```
 *
 * CRC-32 is the IEEE/zlib one (`zlib.crc32` in Python). The consumer offset file is 16 bytes: u32 magic
 * 0x4f435049 ("IPCO"), u64 offset (a log offset at a record boundary), u32 CRC-32 of bytes 0..11.
 *
 * ## Appending (several producers)
 *
 * A producer appends under an exclusive `flock(LOCK_EX)` on `queue.log`:
 *
 * 1. read the header's `committed` (a bad magic or CRC is a `ProtocolError`);
 * 2. if the file is longer than `committed`, truncate it to `committed` (the torn tail of a dead producer);
 * 3. `pwrite` the whole record at `committed` (then `fsync` with `fsync: true`);
 * 4. `pwrite` the header with `committed + 12 + n` (then `fsync`), and unlock.
 *
 * Why a lock and a commit field, not O_APPEND alone: an O_APPEND `write()` is atomic with respect to the file
 * offset on Linux local filesystems, so records of several producers never interleave, but a producer killed
 * mid-write (SIGKILL can cut a large write short) or a power loss leaves a torn record in the middle of the log,
 * and the next producer appends after it. With the lock, a producer sees a consistent end; with the commit field,
 * a consumer never sees an uncommitted byte, and the next producer removes a torn tail. A reader that finds a
 * committed record with a bad magic, a bad length or a bad CRC (corruption, not a crash of a producer that
 * followed this protocol) rejects with `ProtocolError` and never delivers it; the cursor stays before it until the
 * consumer calls `skipCorrupt()` (which skips that record alone and says what it skipped), or skips by itself with
 * the `onCorrupt` option.
 * The header is read without the lock: a read torn by a concurrent header write fails its CRC and is retried at
 * the next poll. Producers that do not take the lock are not supported.
 *
 * ## Waiting
 *
 * A consumer polls the header (one 24-byte `pread`) with a backoff from 1 ms doubling to 50 ms, reset by every
 * record: nothing blocks the event loop or a thread, and a waiting process can always exit. The latency of a
 * message that arrives after a quiet period is up to 50 ms; under load, records are read back to back (with a
 * 256 KiB read-ahead). The log grows until the queue is removed (no compaction).
 *
 * ## Channel view
 *
 * `channel(dir, { create: true })` makes `<dir>` and two queues in it, `<dir>/a` (creator → opener) and `<dir>/b`
 * (opener → creator); `channel(dir, { wait })` opens them. Every record's payload starts with a kind byte:
 *
 * ```text
 * 0  DATA   the rest is one user message (a 0-byte message is just this byte)
 * 2  END    the sender closed: the receiver has every message, then ClosedError
 * 3  HELLO  then the sender's pid and start-time tag (`os/liveness.ts`), each u32 little-endian: sent once by each
 *           side when connecting (a 5-byte HELLO, pid only, is accepted too)
 * ```
 *
 * The creator sends HELLO on `a`; the opener receives it (becoming `a`'s consumer, so a second opener gets
 * `AlreadyExistsError`) and answers HELLO on `b`. Then the creator removes `<dir>`: both sides hold their files
 * open, so the channel works on and nothing is left behind after a crash. The channel is exactly-once while both
 * sides live (the pump is the only consumer and hands every record to the channel once; nothing is acked, as
 * nothing outlives the session). A side whose peer process died (gone, a zombie, or its pid taken by another process:
 * `os/liveness.ts`), checked while its queue is empty, ends with `ClosedError` within about 100 ms, after
 * delivering what the peer committed.
 *
 * @example
 * ```ts
 * import { FileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-jobs-${rt.pid}`;
 * const q = await FileQueue.create(dir);
 * await q.send(new TextEncoder().encode("job 1"));
 * const job = await q.receive({ timeout: 1000 });
 * console.log(new TextDecoder().decode(job)); // "job 1"
 * await q.ack();
 * await q.close();
 * await rt.removeDir(dir); // the queue lives until its directory is removed
 * ```
 *
 * @module
 */
import { FileQueue, type FileQueueOptions, MAX_RECORD, takeRecord } from "../os/file_queue.ts";
import { makeEmptyDir } from "../os/file_queue_format.ts";
import { native } from "../ffi/native.ts";
import { runtime } from "../runtimes/detect.ts";
import type { Capabilities, Channel, ChannelOptions } from "./channel.ts";
import { connect, type RecordPort } from "./record_channel.ts";

export {
  crc32,
  FileQueue,
  type FileQueueOptions,
  type FileReceiveOptions,
  type SkippedRecord,
} from "../os/file_queue.ts";

/**
 * Creates a file queue: the old spelling of {@linkcode FileQueue.create}.
 *
 * @deprecated Use FileQueue.create; removed in the next release.
 * @example
 * ```ts
 * import { FileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-old-create-${rt.pid}`;
 * await (await FileQueue.create(dir)).close(); // was: await fileQueue.create(dir)
 * await rt.removeDir(dir);
 * ```
 */
export const create = (dir: string, options?: FileQueueOptions): Promise<FileQueue> => FileQueue.create(dir, options);

/**
 * Opens a file queue: the old spelling of {@linkcode FileQueue.open}.
 *
 * @deprecated Use FileQueue.open; removed in the next release.
 * @example
 * ```ts
 * import { FileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-old-open-${rt.pid}`;
 * await (await FileQueue.create(dir)).close();
 * await (await FileQueue.open(dir)).close(); // was: await fileQueue.open(dir)
 * await rt.removeDir(dir);
 * ```
 */
export const open = (dir: string, options?: FileQueueOptions): Promise<FileQueue> => FileQueue.open(dir, options);

/**
 * What the file queue channel promises.
 *
 * @example
 * ```ts
 * import { fileQueue } from "ipckit";
 * console.log(fileQueue.capabilities.reliable); // true
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_RECORD - 1,
  crossHost: false,
  datagram: false,
};

/** Options of {@linkcode channel}. */
export interface FileChannelOptions extends ChannelOptions, FileQueueOptions {
  /** true: make the directory and the queues and wait for the peer; false (default): open the peer's. */
  create?: boolean;
  /** Opener: how long to wait for the creator's queues, in milliseconds. Default 0. */
  wait?: number;
  /** Aborts waiting for the peer. */
  signal?: AbortSignal;
}

/** The record port over two file queues: this side consumes `input` and appends to `output`. */
class FilePort implements RecordPort {
  /** One record holds a whole message: nothing is cut into pieces. */
  readonly recordSize = MAX_RECORD;
  readonly #input: FileQueue;
  readonly #output: FileQueue;
  /** The creator's directory, removed once connected or abandoned; undefined for an opener. */
  readonly #dir: string | undefined;

  constructor(input: FileQueue, output: FileQueue, dir: string | undefined) {
    this.#input = input;
    this.#output = output;
    this.#dir = dir;
  }

  tryTake(limit: number): Uint8Array | undefined {
    return takeRecord(this.#input, limit);
  }

  /** Appends under the log's lock: the file queue is never full. */
  async tryPut(record: Uint8Array): Promise<boolean> {
    await this.#output.send(record);
    return true;
  }

  /** Both sides hold their files open: the directory can go, so a crash later leaves nothing behind. */
  async connected(): Promise<void> {
    if (this.#dir !== undefined) await (await runtime()).removeDir(this.#dir);
  }

  async release(): Promise<void> {
    await this.#input.close();
    await this.#output.close();
  }

  async abandon(): Promise<void> {
    await this.release();
    if (this.#dir !== undefined) await (await runtime()).removeDir(this.#dir).catch(() => {});
  }
}

/**
 * A duplex {@linkcode Channel} over two file queues in `dir`. With `create: true`, makes `dir` (absent or empty)
 * and waits for one peer, then removes `dir`; otherwise opens the peer's (waiting up to `wait` ms for it).
 *
 * @example
 * ```ts
 * import { fileQueue, runtime } from "ipckit";
 * const dir = `/tmp/ipckit-chan-${(await runtime()).pid}`;
 * // Usually two processes; the creator removes dir once the opener is there.
 * const [a, b] = await Promise.all([
 *   fileQueue.channel(dir, { create: true }),
 *   fileQueue.channel(dir, { wait: 10_000 }),
 * ]);
 * await a.send(new TextEncoder().encode("over the file system"));
 * console.log(new TextDecoder().decode(await b.receive())); // "over the file system"
 * await a.close();
 * await b.close();
 * ```
 * @throws {AlreadyExistsError} (create) when `dir` is not empty; (open) when the channel has its peer already.
 * @throws {NotFoundError} (open) when the queues do not exist after `wait` milliseconds.
 */
export async function channel(dir: string, options: FileChannelOptions = {}): Promise<Channel> {
  if (typeof dir !== "string" || dir.length === 0 || dir.includes("\0")) {
    throw new TypeError(`Cannot use file queue channel ${JSON.stringify(dir)}: the path must be a non-empty string`);
  }
  const q: FileQueueOptions = options.fsync ? { fsync: true } : {};
  return await connect({
    description: `file queue channel "${dir}"`,
    capabilities,
    async create() {
      makeEmptyDir(await native(), dir, "file queue channel");
      const made: FileQueue[] = [];
      try {
        made.push(await FileQueue.create(`${dir}/a`, q));
        made.push(await FileQueue.create(`${dir}/b`, q));
      } catch (e) {
        for (const f of made) await f.close();
        await (await runtime()).removeDir(dir).catch(() => {});
        throw e;
      }
      return new FilePort(made[1]!, made[0]!, dir);
    },
    async open() {
      const input = await FileQueue.open(`${dir}/a`, q);
      try {
        return new FilePort(input, await FileQueue.open(`${dir}/b`, q), undefined);
      } catch (e) {
        await input.close();
        throw e;
      }
    },
  }, options);
}
