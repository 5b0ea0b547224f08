/**
 * A durable file queue (a spool directory): many producers append messages to a log, one consumer reads them and
 * acknowledges what it has processed. Messages survive the crash of any process (and, with `fsync: true`, a power
 * loss). Producers and the consumer may be processes of any runtime, or any language that can `flock(2)`, `pread`
 * and `pwrite` (Python's `fcntl.flock` + `struct` + `zlib.crc32` is enough).
 *
 * - {@linkcode create} / {@linkcode open} give a {@linkcode FileQueue}: `send()`, `receive()`, `tryReceive()`,
 *   `ack()`, `close()`.
 * - {@linkcode channel} gives a duplex {@linkcode Channel} over two queues (see "Channel view").
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
 * `os/liveness.ts`), checked while its queue is empty, ends with `ClosedError` within about 50 ms, after delivering
 * what the peer committed.
 *
 * @example
 * ```ts
 * import { fileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-jobs-${rt.pid}`;
 * const q = await fileQueue.create(dir);
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
import { ClosedError, ProtocolError } from "../errors.ts";
import { type Native, native } from "../ffi/native.ts";
import { runtime } from "../runtimes/detect.ts";
import { BaseChannel, type Capabilities, type Channel, type ChannelOptions } from "./channel.ts";
import { DATA, END, HELLO, helloIdentity, helloRecord } from "./records.ts";
import { alive, type Identity } from "../os/liveness.ts";
import {
  appendWith,
  create,
  type FileQueue,
  type FileQueueOptions,
  makeEmptyDir,
  MAX_RECORD,
  open,
  take,
} from "./file_queue.ts";

export {
  crc32,
  create,
  type FileQueue,
  type FileQueueOptions,
  type FileReceiveOptions,
  open,
  type SkippedRecord,
} from "./file_queue.ts";

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

const DATA_PREFIX = new Uint8Array([DATA]);
const MAX_DELAY = 50;
const hello = helloRecord;
const greeting = (m: Uint8Array, dir: string): Identity => helloIdentity(m, `file queue channel "${dir}"`);

/** A Channel over two file queues; see the module doc. */
class FileChannel extends BaseChannel {
  readonly capabilities: Capabilities = capabilities;
  readonly #in: FileQueue;
  readonly #out: FileQueue;
  readonly #ffi: Native;
  readonly #peer: Identity;
  #sendTurn: Promise<unknown> = Promise.resolve();
  #pump: Promise<void>;
  #paused = false;
  #stopping = false;
  #wake: (() => void) | undefined;
  #peerClosed = false;

  constructor(ffi: Native, dir: string, input: FileQueue, output: FileQueue, peer: Identity, o: ChannelOptions) {
    super(`file queue channel "${dir}"`, o, capabilities.maxMessage);
    this.#ffi = ffi;
    this.#in = input;
    this.#out = output;
    this.#peer = peer;
    this.#pump = this.#run();
  }

  #peerAlive(): boolean {
    return alive(this.#peer.id, this.#peer.tag, this.#ffi);
  }

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> {
    const p = this.#out[appendWith](message, DATA_PREFIX, signal);
    this.#sendTurn = p.catch(() => {});
    return p;
  }

  protected override _pause(): void {
    this.#paused = true;
  }

  protected override _resume(): void {
    this.#paused = false;
    this.#wake?.();
  }

  /** Sleeps `ms`, or until close/resume wakes it. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.#wake = undefined;
        resolve();
      }, ms);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** Moves records into the channel until END, the peer's death, a protocol error or close. */
  async #run(): Promise<void> {
    let delay = 1;
    let peerDead = false;
    try {
      while (!this.#stopping) {
        if (this.#paused) {
          await new Promise<void>((r) => (this.#wake = r));
          this.#wake = undefined;
          continue;
        }
        const m = this.#in[take](this.maxMessage + 1);
        if (m === undefined) {
          if (peerDead) {
            return this.end(new ClosedError(`Cannot receive on ${this.description}: the peer process died`));
          }
          // Once dead, look once more: the peer may have committed records (even END) just before dying.
          if (!this.#peerAlive()) peerDead = true;
          else {
            await this.#sleep(delay);
            delay = Math.min(delay * 2, MAX_DELAY);
          }
          continue;
        }
        delay = 1;
        const kind = m[0];
        if (kind === DATA) this.deliver(m.subarray(1));
        else if (kind === END) {
          this.#peerClosed = true;
          return this.end();
        } else if (kind !== HELLO) {
          return this.end(new ProtocolError(`Cannot receive on ${this.description}: unknown record kind ${kind}`));
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
        await this.#out[appendWith](new Uint8Array([END]), undefined);
      } catch { /* nothing to tell */ }
    }
    this.#stopping = true;
    this.#wake?.();
    await this.#pump;
    await this.#in.close();
    await this.#out.close();
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
  const rt = await runtime();
  const ffi = await native();
  const q: FileQueueOptions = options.fsync ? { fsync: true } : {};
  const signal = options.signal ? { signal: options.signal } : {};
  if (options.create) {
    makeEmptyDir(ffi, dir, "file queue channel");
    const made: FileQueue[] = [];
    try {
      made.push(await create(`${dir}/a`, q));
      made.push(await create(`${dir}/b`, q));
      const [output, input] = made as [FileQueue, FileQueue];
      await output[appendWith](hello(rt.pid), undefined);
      const peer = greeting(await input.receive(signal), dir);
      await rt.removeDir(dir);
      return new FileChannel(ffi, dir, input, output, peer, options);
    } catch (e) {
      for (const f of made) await f.close();
      await rt.removeDir(dir).catch(() => {});
      throw e;
    }
  }
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open file queue channel "${dir}": wait must be >= 0 milliseconds`);
  const deadline = Date.now() + wait;
  const opened: FileQueue[] = [];
  try {
    for (const name of ["a", "b"]) {
      for (let delay = 1;; delay = Math.min(delay * 2, MAX_DELAY)) {
        options.signal?.throwIfAborted();
        try {
          opened.push(await open(`${dir}/${name}`, q));
          break;
        } catch (e) {
          if (!(e instanceof Error && e.name === "NotFoundError") || Date.now() >= deadline) throw e;
        }
        await new Promise((r) => setTimeout(r, delay));
      }
    }
    const [input, output] = opened as [FileQueue, FileQueue];
    const peer = greeting(
      await input.receive({ timeout: Math.max(deadline - Date.now(), 10_000), ...signal }),
      dir,
    );
    await output[appendWith](hello(rt.pid), undefined);
    return new FileChannel(ffi, dir, input, output, peer, options);
  } catch (e) {
    for (const f of opened) await f.close();
    throw e;
  }
}
