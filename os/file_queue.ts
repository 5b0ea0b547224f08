/**
 * The durable file queue's OS object: a directory holding an append-only log of CRC-checked records and the offset of
 * its one consumer. Many producers (processes of any runtime or language), one consumer, at-least-once delivery
 * across crashes. The on-disk format is documented byte for byte in `transports/file_queue.ts` (which re-exports
 * this in the `fileQueue` namespace) and encoded in `os/file_queue_format.ts`; the log is read through
 * `os/file_queue_reader.ts`, and `os/file_queue_open.ts` makes and opens queues.
 *
 * Over ~400 lines: the handle alone (its producer and consumer halves share its descriptors and turns), with the
 * documented statics that make it (their file work is in `os/file_queue_open.ts`).
 *
 * @module
 */
import {
  abortError,
  AlreadyExistsError,
  ClosedError,
  MessageTooLargeError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import { LOCK_EX, LOCK_NB, LOCK_UN, O_RDONLY, SEEK_END } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import { Backoff, Deadline, delay } from "../async/mod.ts";
import {
  crc32,
  encodeLogHeader,
  encodeRecord,
  FILE_HEADER_SIZE,
  fsyncFd,
  MAX_RECORD,
  OFFSET_FILE_SIZE,
  OFFSET_MAGIC,
  openFile,
  preadAll,
  pwriteAll,
  RECORD_HEADER_SIZE,
  writeOffset,
} from "./file_queue_format.ts";
import { LogReader, type SkippedRecord } from "./file_queue_reader.ts";
import { createQueue, type FileQueueOptions, type MakeFileQueue, openQueue } from "./file_queue_open.ts";

export type { FileQueueOptions } from "./file_queue_open.ts";

export type { SkippedRecord } from "./file_queue_reader.ts";
export {
  crc32,
  encodeLogHeader,
  encodeRecord,
  FILE_HEADER_SIZE,
  LOG_MAGIC,
  LOG_VERSION,
  makeEmptyDir,
  MAX_RECORD,
  OFFSET_FILE_SIZE,
  OFFSET_MAGIC,
  RECORD_HEADER_SIZE,
  RECORD_MAGIC,
} from "./file_queue_format.ts";

/** Polling backoff while waiting for records, in milliseconds. */
const POLL = { first: 1, max: 50 };
/** Options of {@linkcode FileQueue.receive}. */
export interface FileReceiveOptions {
  /** Gives up after this many milliseconds with `TimeoutError`. */
  timeout?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/** Internal: a record's payload with a prefix, in one write (the channel's kind byte). */

/**
 * Internal (for the channel port, not part of the `fileQueue` namespace): takes the next record whose payload is at
 * most `limit` bytes, without waiting, as `tryReceive()` does.
 */
export let takeRecord: (queue: FileQueue, limit: number) => Uint8Array | undefined;

/**
 * A handle on a queue directory: any number of handles may `send()`, one (per queue, across all processes) may
 * `receive()` and `ack()`. See `transports/file_queue.ts` for the format and guarantees.
 *
 * @example
 * ```ts
 * import { FileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-queue-${rt.pid}`;
 * await using q = await FileQueue.create(dir);
 * console.log(q.tryReceive()); // undefined: nothing sent yet
 * await q.send(new Uint8Array([1]));
 * await q.send(new Uint8Array([2]));
 * console.log(q.tryReceive(), await q.receive({ timeout: 1000 })); // Uint8Array [1] Uint8Array [2]
 * await q.ack(); // both acknowledged
 * await rt.removeDir(dir);
 * ```
 */
export class FileQueue implements AsyncDisposable {
  /** The queue directory. */
  readonly path: string;
  readonly #ffi: Native;
  readonly #fd: number;
  readonly #fsync: boolean;
  readonly #onCorrupt: ((skipped: SkippedRecord) => void) | undefined;
  #closed = false;
  #sendTurn: Promise<unknown> = Promise.resolve();
  #ackTurn: Promise<unknown> = Promise.resolve();
  /** Consumer state: the directory fd holding the consumer flock (-1 until the first receive). */
  #dirFd = -1;
  #cursor = 0;
  #acked = 0;
  readonly #log: LogReader;
  /** Aborted by close(): ends the waits of receive() and of the append lock. */
  readonly #closing = new AbortController();

  /** The maker `os/file_queue_open.ts` calls (the constructor is private): it reads the log header strictly. */
  static readonly #make: MakeFileQueue<FileQueue> = (ffi, path, fd, fsync, onCorrupt) => {
    const q = new FileQueue(ffi, path, fd, fsync, onCorrupt);
    q.#log.readCommitted(true);
    return q;
  };

  /**
   * Creates the queue directory `dir` (it must not exist, or be an empty directory) with an empty log and the
   * consumer offset at the first record, both mode 0600.
   *
   * @example
   * ```ts
   * import { FileQueue, runtime } from "ipckit";
   * const rt = await runtime();
   * const dir = `/tmp/ipckit-spool-${rt.pid}`;
   * const text = new TextEncoder();
   * await using producer = await FileQueue.create(dir, { fsync: true }); // survives a power loss too
   * await producer.send(text.encode("job 1"));
   * await producer.send(text.encode("job 2"));
   *
   * const consumer = await FileQueue.open(dir); // in another process, say
   * await consumer.receive(); // job 1
   * await consumer.ack(); // job 1 never comes again
   * await consumer.receive(); // job 2, not acknowledged...
   * await consumer.close(); // ... as if the consumer crashed here
   *
   * await using restarted = await FileQueue.open(dir);
   * console.log(new TextDecoder().decode(await restarted.receive())); // "job 2" again
   * await rt.removeDir(dir);
   * ```
   * @throws {AlreadyExistsError} when `dir` exists and is not an empty directory.
   */
  static create(dir: string, options: FileQueueOptions = {}): Promise<FileQueue> {
    return createQueue(FileQueue.#make, dir, options);
  }

  /**
   * Opens the existing queue directory `dir`.
   *
   * @throws {NotFoundError} when `dir` holds no complete queue.
   * @throws {ProtocolError} when the log is not an ipckit file queue log.
   *
   * @example
   * ```ts
   * import { FileQueue, NotFoundError, runtime } from "ipckit";
   * const rt = await runtime();
   * const dir = `/tmp/ipckit-open-${rt.pid}`;
   * try {
   *   await FileQueue.open(dir);
   * } catch (e) {
   *   console.log(e instanceof NotFoundError); // true: nothing there yet
   * }
   * await (await FileQueue.create(dir)).close();
   * await using q = await FileQueue.open(dir);
   * console.log(q.path === dir); // true
   * await rt.removeDir(dir);
   * ```
   */
  static open(dir: string, options: FileQueueOptions = {}): Promise<FileQueue> {
    return openQueue(FileQueue.#make, dir, options);
  }

  static {
    takeRecord = (q, limit) => q.#take(limit);
  }

  private constructor(
    ffi: Native,
    path: string,
    fd: number,
    fsync: boolean,
    onCorrupt: ((skipped: SkippedRecord) => void) | undefined,
  ) {
    this.#ffi = ffi;
    this.path = path;
    this.#fd = fd;
    this.#fsync = fsync;
    this.#onCorrupt = onCorrupt;
    this.#log = new LogReader(ffi, fd, path);
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Where the next `receive()` reads (a log offset; consumer only, after the first receive). */
  get cursor(): number {
    return this.#cursor;
  }

  /**
   * Appends one message to the log. Resolves once it is in the log (and on disk, with `fsync`); the consumer may
   * then receive it, even if this process dies.
   *
   * @throws {TypeError} when `message` is not a Uint8Array.
   * @throws {ClosedError} when the handle is closed.
   */
  send(message: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (!(message instanceof Uint8Array)) {
      return Promise.reject(
        new TypeError(`Cannot send on file queue "${this.path}": the message must be a Uint8Array`),
      );
    }
    const { signal } = options;
    if (this.#closed) return Promise.reject(new ClosedError(`Cannot send on file queue "${this.path}": it is closed`));
    const size = message.byteLength;
    if (size > MAX_RECORD) {
      return Promise.reject(
        new MessageTooLargeError(
          `Cannot send a message of ${size} bytes on file queue "${this.path}": it exceeds ${MAX_RECORD} bytes`,
          size,
          MAX_RECORD,
        ),
      );
    }
    const record = encodeRecord(message); // copied now: the caller may reuse its buffer
    const p = this.#sendTurn.then(() => this.#append(record, signal));
    this.#sendTurn = p.catch(() => {});
    return p;
  }

  async #append(record: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    const what = `append to file queue "${this.path}"`;
    await this.#lockLog(signal);
    try {
      const end = this.#log.readCommitted(true);
      // Bytes past the committed end are a torn record of a producer that died while appending: drop them.
      const size = this.#ffi.call.lseek(this.#fd, 0, SEEK_END);
      if (size > end && this.#ffi.call.ftruncate(this.#fd, end) !== 0) throw errnoError(this.#ffi.errno(), what);
      pwriteAll(this.#ffi, this.#fd, record, end, what);
      if (this.#fsync) await fsyncFd(this.#ffi, this.#fd, `file queue log "${this.path}"`);
      // Commit: only now can a consumer see the record.
      pwriteAll(this.#ffi, this.#fd, encodeLogHeader(end + record.byteLength), 0, what);
      if (this.#fsync) await fsyncFd(this.#ffi, this.#fd, `file queue log "${this.path}"`);
    } finally {
      this.#flock(LOCK_UN);
    }
  }

  /**
   * Takes the exclusive flock on the log (this handle's own open file description, so other handles and processes
   * exclude it), polling with `LOCK_NB` and a backoff of 1 ms doubling to 50 ms: a blocking flock could not be
   * aborted and would hold a thread. Sends of one handle take turns, so only other handles compete here.
   */
  async #lockLog(signal: AbortSignal | undefined): Promise<void> {
    const backoff = new Backoff({ first: 1, max: 50 });
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      if (this.#flock(LOCK_EX | LOCK_NB)) return;
      await delay(backoff.next(), signal);
    }
  }

  /** One flock(2) on the log; false when another holder has it. Retries on EINTR. */
  #flock(op: number): boolean {
    for (;;) {
      if (this.#ffi.call.flock(this.#fd, op) === 0) return true;
      const errno = this.#ffi.errno();
      if (errno === ERRNO.EINTR) continue;
      if (errno === ERRNO.EAGAIN) return false; // EWOULDBLOCK
      throw errnoError(errno, `lock file queue "${this.path}"`);
    }
  }

  /**
   * Becomes the consumer: takes the exclusive flock on the directory (released when this handle closes or its
   * process dies) and reads the acknowledged offset.
   */
  #consume(): void {
    if (this.#dirFd >= 0) return;
    const ffi = this.#ffi;
    const fd = openFile(ffi, this.path, O_RDONLY, `open file queue "${this.path}"`);
    if (ffi.call.flock(fd, LOCK_EX | LOCK_NB) !== 0) {
      const errno = ffi.errno();
      ffi.call.close(fd);
      if (errno === ERRNO.EAGAIN) {
        throw new AlreadyExistsError(`Cannot receive from file queue "${this.path}": another handle is its consumer`);
      }
      throw errnoError(errno, `lock file queue "${this.path}"`);
    }
    try {
      const ofd = openFile(ffi, `${this.path}/consumer.offset`, O_RDONLY, `open consumer offset of "${this.path}"`);
      const o = new Uint8Array(OFFSET_FILE_SIZE);
      let ok: boolean;
      try {
        ok = preadAll(ffi, ofd, o, 0, `read consumer offset of "${this.path}"`);
      } finally {
        ffi.call.close(ofd);
      }
      const v = new DataView(o.buffer);
      if (!ok || v.getUint32(0, true) !== OFFSET_MAGIC || v.getUint32(12, true) !== crc32(o.subarray(0, 12))) {
        throw new ProtocolError(`Cannot read consumer offset of file queue "${this.path}": the file is corrupt`);
      }
      const offset = v.getBigUint64(4, true);
      if (offset < FILE_HEADER_SIZE || offset > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new ProtocolError(
          `Cannot read consumer offset of file queue "${this.path}": ${offset} is not in the log`,
        );
      }
      this.#cursor = this.#acked = Number(offset);
    } catch (e) {
      ffi.call.close(fd);
      throw e;
    }
    this.#dirFd = fd;
  }

  /**
   * Takes the next committed record if there is one, without waiting. It counts as received: `ack()` then
   * acknowledges it.
   *
   * @returns The message, or undefined when the log has nothing new.
   * @throws {ProtocolError} when the record is corrupt (it is never delivered; the consumer stays before it until
   *   {@linkcode FileQueue.skipCorrupt}; with the `onCorrupt` option it is skipped instead).
   * @throws {AlreadyExistsError} when another handle is the queue's consumer.
   */
  tryReceive(): Uint8Array | undefined {
    return this.#take(MAX_RECORD);
  }

  #take(limit: number): Uint8Array | undefined {
    if (this.#closed) throw new ClosedError(`Cannot receive from file queue "${this.path}": it is closed`);
    this.#consume();
    for (;;) {
      const at = this.#cursor;
      const end = this.#log.end(at);
      if (at >= end) return undefined;
      const found = this.#log.record(at, end, limit);
      if (found instanceof Uint8Array) {
        this.#cursor = at + RECORD_HEADER_SIZE + found.byteLength;
        return this.#log.cached(found) ? found.slice() : found;
      }
      if (this.#onCorrupt === undefined) {
        throw new ProtocolError(`Cannot receive from file queue "${this.path}": the record at offset ${at} ${found}`);
      }
      this.#onCorrupt(this.#skip(at, end, found));
    }
  }

  /**
   * Skips the corrupt record at the cursor, if the next record is corrupt (the one `receive()` rejected with a
   * `ProtocolError`): only that record is lost, the consumer then gets every later good record. The skip is in
   * memory, like a receive: the next `ack()` persists it.
   *
   * @returns What was skipped, or undefined when the next record is not corrupt (or there is none yet): a good
   *   record is never skipped.
   * @throws {ClosedError} when the handle is closed.
   * @throws {AlreadyExistsError} when another handle is the queue's consumer.
   *
   * @example
   * ```ts
   * import { FileQueue, ProtocolError, runtime } from "ipckit";
   * const rt = await runtime();
   * const dir = `/tmp/ipckit-skip-${rt.pid}`;
   * await using q = await FileQueue.create(dir);
   * await q.send(new Uint8Array([1]));
   * await q.send(new Uint8Array([2]));
   * // Damage the first record's payload on disk (offset 24 + 12-byte header).
   * const { openSync, writeSync, closeSync } = await import("node:fs");
   * const fd = openSync(`${dir}/queue.log`, "r+");
   * writeSync(fd, new Uint8Array([0xff]), 0, 1, 36);
   * closeSync(fd);
   * try {
   *   await q.receive({ timeout: 1000 });
   * } catch (e) {
   *   console.log(e instanceof ProtocolError); // true: "the record at offset 24 fails its CRC check"
   *   console.log(q.skipCorrupt()); // { offset: 24, length: 13, reason: "fails its CRC check" }
   * }
   * console.log(await q.receive({ timeout: 1000 })); // Uint8Array [2]
   * await q.ack(); // the skip is persisted with the ack
   * await rt.removeDir(dir);
   * ```
   */
  skipCorrupt(): SkippedRecord | undefined {
    if (this.#closed) throw new ClosedError(`Cannot skip on file queue "${this.path}": it is closed`);
    this.#consume();
    const at = this.#cursor;
    const end = this.#log.end(at);
    if (at >= end) return undefined;
    const found = this.#log.record(at, end, MAX_RECORD);
    return typeof found === "string" ? this.#skip(at, end, found) : undefined;
  }

  /** Moves the cursor past the corrupt record at `at` (see {@linkcode SkippedRecord.length} for how far). */
  #skip(at: number, end: number, reason: string): SkippedRecord {
    const skipped = this.#log.skip(at, end, reason);
    this.#cursor = at + skipped.length;
    return skipped;
  }

  /**
   * Waits for the next record (polling the log with a backoff of 1 ms doubling to 50 ms; the event loop stays
   * free). It counts as received: `ack()` then acknowledges it; without an ack it comes again after a reopen.
   *
   * @throws {TimeoutError} after `timeout` milliseconds.
   * @throws {ClosedError} when the handle is or gets closed.
   * @throws {ProtocolError} when the next record is corrupt (see {@linkcode FileQueue.skipCorrupt} and the
   *   `onCorrupt` option).
   * @throws {AlreadyExistsError} when another handle is the queue's consumer.
   */
  async receive(options: FileReceiveOptions = {}): Promise<Uint8Array> {
    const { signal, timeout } = options;
    if (timeout !== undefined && !(timeout >= 0)) {
      throw new RangeError(`Cannot receive with timeout ${timeout}: it must be >= 0 milliseconds`);
    }
    const deadline = Deadline.after(timeout);
    const backoff = new Backoff(POLL);
    const stop = signal ? AbortSignal.any([signal, this.#closing.signal]) : this.#closing.signal;
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const m = this.tryReceive(); // throws ClosedError once closed
      if (m !== undefined) return m;
      if (deadline.passed) {
        throw new TimeoutError(`Cannot receive from file queue "${this.path}": timed out after ${timeout} ms`);
      }
      await delay(Math.min(backoff.next(), deadline.remaining), stop);
    }
  }

  /**
   * Acknowledges every message received so far: persists the consumer offset atomically (a temporary file renamed
   * over `consumer.offset`; with `fsync`, the file and the directory are synced first). Acknowledged messages are
   * never delivered again, also after a crash.
   *
   * @throws {ClosedError} when the handle is closed.
   */
  ack(): Promise<void> {
    if (this.#closed) return Promise.reject(new ClosedError(`Cannot ack on file queue "${this.path}": it is closed`));
    const p = this.#ackTurn.then(async () => {
      const offset = this.#cursor;
      if (this.#dirFd < 0 || offset === this.#acked) return;
      await writeOffset(this.#ffi, this.path, offset, this.#fsync);
      this.#acked = offset;
    });
    this.#ackTurn = p.catch(() => {});
    return p;
  }

  /**
   * Closes this handle after its pending sends and acks; pending receives reject with `ClosedError`. It does not
   * acknowledge anything: unacknowledged messages come again. Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#closing.abort();
    await this.#sendTurn;
    await this.#ackTurn;
    this.#ffi.call.close(this.#fd);
    if (this.#dirFd >= 0) this.#ffi.call.close(this.#dirFd);
    this.#dirFd = -1;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
