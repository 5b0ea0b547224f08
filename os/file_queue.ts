/**
 * The durable file queue's OS object: a directory holding an append-only log of CRC-checked records and the offset of
 * its one consumer. Many producers (processes of any runtime or language), one consumer, at-least-once delivery
 * across crashes. The on-disk format is documented byte for byte in `transports/file.ts` (which re-exports this as
 * the `fileQueue` namespace) and encoded in `os/file_queue_format.ts`.
 *
 * Over ~400 lines because the consumer's reading, skipping and resynchronising all work on the handle's private
 * cursor and read-ahead; splitting them would expose that state.
 *
 * @module
 */
import {
  abortError,
  AlreadyExistsError,
  ClosedError,
  MessageTooLargeError,
  NotFoundError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import {
  LOCK_EX,
  LOCK_NB,
  LOCK_UN,
  O_CLOEXEC,
  O_CREAT,
  O_EXCL,
  O_RDONLY,
  O_RDWR,
  O_WRONLY,
  SEEK_END,
} from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { Backoff, Deadline, delay } from "../async/mod.ts";
import {
  crc32,
  encodeLogHeader,
  encodeOffset,
  encodeRecord,
  FILE_HEADER_SIZE,
  fsyncFd,
  fsyncPath,
  LOG_MAGIC,
  LOG_VERSION,
  makeEmptyDir,
  MAX_RECORD,
  OFFSET_FILE_SIZE,
  OFFSET_MAGIC,
  openFile,
  preadAll,
  pwriteAll,
  RECORD_HEADER_SIZE,
  RECORD_MAGIC,
} from "./file_queue_format.ts";

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
/** A record's magic as it is on disk ("IPCR"), for the resync scan. */
const MAGIC_BYTES = new Uint8Array([0x49, 0x50, 0x43, 0x52]);
/** Read-ahead of the consumer, in bytes. */
const CHUNK = 256 * 1024;
/** Options of {@linkcode create} and {@linkcode open}. */
export interface FileQueueOptions {
  /**
   * fsync the log before `send()` resolves and the offset file (and directory) before `ack()` resolves: what was
   * sent or acknowledged then survives a power loss, not just a process crash. Default false.
   */
  fsync?: boolean;
  /**
   * The consumer's policy for a corrupt committed record (bad magic, bad length, bad CRC: damage on disk or a
   * writer that does not follow the protocol). By default (no function) `receive()`/`tryReceive()` reject with a
   * `ProtocolError` and the cursor stays before the record, so nothing is lost silently; call
   * {@linkcode FileQueue.skipCorrupt} to go past it. With a function, the consumer skips each corrupt record at
   * once, reports it here, and goes on with the next good one.
   */
  onCorrupt?: (skipped: SkippedRecord) => void;
}

/** What {@linkcode FileQueue.skipCorrupt} (or the `onCorrupt` policy) skipped. */
export interface SkippedRecord {
  /** The log offset of the corrupt record (where the cursor was). */
  readonly offset: number;
  /**
   * How many bytes were skipped: the record, as its header says, when a good record (or the committed end) follows
   * it; else up to the next offset where a record checks out (magic, length and CRC), or the committed end.
   */
  readonly length: number;
  /** Why the record was refused: `fails its CRC check`, `has a bad magic number`, `runs past the committed end of the log`... */
  readonly reason: string;
}

/** Options of {@linkcode FileQueue.receive}. */
export interface FileReceiveOptions {
  /** Gives up after this many milliseconds with `TimeoutError`. */
  timeout?: number;
  /** Aborts the wait. */
  signal?: AbortSignal;
}

/** Internal: a record's payload with a prefix, in one write (the channel's kind byte). */

function checkOptions(options: FileQueueOptions, dir: string, what: string): void {
  const { onCorrupt } = options;
  if (onCorrupt !== undefined && typeof onCorrupt !== "function") {
    throw new TypeError(`Cannot ${what} file queue "${dir}": onCorrupt must be a function`);
  }
}

function checkDir(dir: unknown, what: string): string {
  if (typeof dir !== "string" || dir.length === 0 || dir.includes("\0")) {
    throw new TypeError(`Cannot ${what} file queue ${JSON.stringify(dir)}: the path must be a non-empty string`);
  }
  return dir;
}

/**
 * Creates the queue directory `dir` (it must not exist, or be an empty directory) with an empty log and the
 * consumer offset at the first record, both mode 0600.
 *
 * @example
 * ```ts
 * import { fileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-spool-${rt.pid}`;
 * const text = new TextEncoder();
 * await using producer = await fileQueue.create(dir, { fsync: true }); // survives a power loss too
 * await producer.send(text.encode("job 1"));
 * await producer.send(text.encode("job 2"));
 *
 * const consumer = await fileQueue.open(dir); // in another process, say
 * await consumer.receive(); // job 1
 * await consumer.ack(); // job 1 never comes again
 * await consumer.receive(); // job 2, not acknowledged...
 * await consumer.close(); // ... as if the consumer crashed here
 *
 * await using restarted = await fileQueue.open(dir);
 * console.log(new TextDecoder().decode(await restarted.receive())); // "job 2" again
 * await rt.removeDir(dir);
 * ```
 * @throws {AlreadyExistsError} when `dir` exists and is not an empty directory.
 */
export async function create(dir: string, options: FileQueueOptions = {}): Promise<FileQueue> {
  checkDir(dir, "create");
  checkOptions(options, dir, "create");
  const ffi = await native();
  makeEmptyDir(ffi, dir, "file queue");
  const fd = openFile(ffi, `${dir}/queue.log`, O_RDWR | O_CREAT | O_EXCL, `create file queue log "${dir}"`);
  try {
    pwriteAll(ffi, fd, encodeLogHeader(FILE_HEADER_SIZE), 0, `write file queue log "${dir}"`);
    if (options.fsync) await fsyncFd(ffi, fd, `file queue log "${dir}"`);
  } finally {
    ffi.call.close(fd);
  }
  // The offset file comes last (by rename): its presence says the queue is complete.
  await writeOffset(ffi, dir, FILE_HEADER_SIZE, options.fsync === true);
  return open(dir, options);
}

async function writeOffset(ffi: Native, dir: string, offset: number, sync: boolean): Promise<void> {
  const tmp = `${dir}/consumer.offset.tmp`;
  const fd = openFile(ffi, tmp, O_WRONLY | O_CREAT, `write consumer offset of "${dir}"`);
  try {
    pwriteAll(ffi, fd, encodeOffset(offset), 0, `write consumer offset of "${dir}"`);
    if (sync) await fsyncFd(ffi, fd, `consumer offset of "${dir}"`);
  } finally {
    ffi.call.close(fd);
  }
  if (ffi.call.rename(ffi.cstring(tmp), ffi.cstring(`${dir}/consumer.offset`)) !== 0) {
    throw errnoError(ffi.errno(), `rename consumer offset of "${dir}"`);
  }
  if (sync) await fsyncPath(ffi, dir, `directory "${dir}"`);
}

/**
 * Opens the existing queue directory `dir`.
 *
 * @throws {NotFoundError} when `dir` holds no complete queue.
 * @throws {ProtocolError} when the log is not an ipckit file queue log.
 *
 * @example
 * ```ts
 * import { fileQueue, NotFoundError, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-open-${rt.pid}`;
 * try {
 *   await fileQueue.open(dir);
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true: nothing there yet
 * }
 * await (await fileQueue.create(dir)).close();
 * await using q = await fileQueue.open(dir);
 * console.log(q.path === dir); // true
 * await rt.removeDir(dir);
 * ```
 */
export async function open(dir: string, options: FileQueueOptions = {}): Promise<FileQueue> {
  checkDir(dir, "open");
  checkOptions(options, dir, "open");
  const ffi = await native();
  const offsetFd = ffi.call.open(ffi.cstring(`${dir}/consumer.offset`), O_RDONLY | O_CLOEXEC, 0);
  if (offsetFd < 0) {
    const errno = ffi.errno();
    if (errno === ERRNO.ENOENT) {
      throw new NotFoundError(`Cannot open file queue "${dir}": it does not exist`, { code: "ENOENT" });
    }
    throw errnoError(errno, `open file queue "${dir}"`);
  }
  ffi.call.close(offsetFd);
  const fd = openFile(ffi, `${dir}/queue.log`, O_RDWR, `open file queue "${dir}"`);
  try {
    return makeQueue(ffi, dir, fd, options.fsync === true, options.onCorrupt);
  } catch (e) {
    // The descriptor goes: a log refused here (a hostile or damaged header) must not leak one per attempt.
    ffi.call.close(fd);
    throw e;
  }
}

/** Makes a handle (and reads the log header strictly); set by the class, whose constructor is private. */
let makeQueue: (
  ffi: Native,
  path: string,
  fd: number,
  fsync: boolean,
  onCorrupt: ((skipped: SkippedRecord) => void) | undefined,
) => FileQueue;

/**
 * Internal (for the channel port, not part of the `fileQueue` namespace): takes the next record whose payload is at
 * most `limit` bytes, without waiting, as `tryReceive()` does.
 */
export let takeRecord: (queue: FileQueue, limit: number) => Uint8Array | undefined;

/**
 * A handle on a queue directory: any number of handles may `send()`, one (per queue, across all processes) may
 * `receive()` and `ack()`. See `transports/file.ts` for the format and guarantees.
 *
 * @example
 * ```ts
 * import { fileQueue, runtime } from "ipckit";
 * const rt = await runtime();
 * const dir = `/tmp/ipckit-queue-${rt.pid}`;
 * await using q = await fileQueue.create(dir);
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
  #committed = FILE_HEADER_SIZE;
  /** The log file's size as last seen: no read is sized past it (a hostile header may claim any committed end). */
  #size = FILE_HEADER_SIZE;
  #cache = new Uint8Array(0);
  #cacheAt = 0;
  /** Aborted by close(): ends the waits of receive() and of the append lock. */
  readonly #closing = new AbortController();

  static {
    makeQueue = (ffi, path, fd, fsync, onCorrupt) => {
      const q = new FileQueue(ffi, path, fd, fsync, onCorrupt);
      q.#readCommitted(true);
      return q;
    };
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
   * The committed end of the log, from its header. A header torn by a concurrent write (its CRC does not match)
   * keeps the last value, unless `strict` (under the lock, or on open), when it is a `ProtocolError`.
   */
  #readCommitted(strict = false): number {
    const h = new Uint8Array(FILE_HEADER_SIZE);
    if (!preadAll(this.#ffi, this.#fd, h, 0, `read file queue "${this.path}"`)) {
      throw new ProtocolError(`Cannot read file queue "${this.path}": the log has no header`);
    }
    const v = new DataView(h.buffer);
    if (v.getUint32(0, true) !== LOG_MAGIC || v.getUint32(4, true) !== LOG_VERSION) {
      throw new ProtocolError(`Cannot read file queue "${this.path}": the log is not an ipckit file queue (v1)`);
    }
    if (v.getUint32(16, true) !== crc32(h.subarray(8, 16))) {
      if (strict) throw new ProtocolError(`Cannot read file queue "${this.path}": the log header is corrupt`);
      return this.#committed;
    }
    return (this.#committed = Number(v.getBigUint64(8, true)));
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
      const end = this.#readCommitted(true);
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

  /** Bytes of the log at `at`, from the read-ahead when possible; undefined past the end of the file. */
  #bytes(at: number, n: number, limit: number): Uint8Array | undefined {
    if (at >= this.#cacheAt && at + n <= this.#cacheAt + this.#cache.byteLength) {
      return this.#cache.subarray(at - this.#cacheAt, at - this.#cacheAt + n);
    }
    const what = `read file queue "${this.path}"`;
    if (n >= CHUNK) {
      const buf = new Uint8Array(n);
      return preadAll(this.#ffi, this.#fd, buf, at, what) ? buf : undefined;
    }
    const buf = new Uint8Array(Math.max(n, Math.min(CHUNK, limit - at)));
    if (!preadAll(this.#ffi, this.#fd, buf, at, what)) return undefined;
    this.#cache = buf;
    this.#cacheAt = at;
    return buf.subarray(0, n);
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
      const end = this.#end(at);
      if (at >= end) return undefined;
      const found = this.#record(at, end, limit);
      if (found instanceof Uint8Array) {
        this.#cursor = at + RECORD_HEADER_SIZE + found.byteLength;
        return found.buffer === this.#cache.buffer ? found.slice() : found;
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
   * import { fileQueue, ProtocolError, runtime } from "ipckit";
   * const rt = await runtime();
   * const dir = `/tmp/ipckit-skip-${rt.pid}`;
   * await using q = await fileQueue.create(dir);
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
    const end = this.#end(at);
    if (at >= end) return undefined;
    const found = this.#record(at, end, MAX_RECORD);
    return typeof found === "string" ? this.#skip(at, end, found) : undefined;
  }

  /**
   * Where the readable log ends for a reader at `at`: the committed end from the header (re-read once the reader
   * caught up with it), but never past the file's real size.
   */
  #end(at: number): number {
    if (at >= this.#committed) this.#readCommitted();
    if (this.#committed > this.#size) this.#size = Math.max(this.#size, this.#fileSize());
    return Math.min(this.#committed, this.#size);
  }

  #fileSize(): number {
    const size = this.#ffi.call.lseek(this.#fd, 0, SEEK_END);
    if (size < 0) throw errnoError(this.#ffi.errno(), `read file queue "${this.path}"`);
    return size;
  }

  /**
   * The record at `at` (before `end`): its payload, or why it is corrupt. A payload over `limit` is a
   * `MessageTooLargeError` (not corruption: the record may be good).
   */
  #record(at: number, end: number, limit: number): Uint8Array | string {
    if (at + RECORD_HEADER_SIZE > end) return "is truncated";
    const h = this.#bytes(at, RECORD_HEADER_SIZE, end);
    if (h === undefined) return "is truncated";
    const v = new DataView(h.buffer, h.byteOffset, RECORD_HEADER_SIZE);
    if (v.getUint32(0, true) !== RECORD_MAGIC) return "has a bad magic number";
    const len = v.getUint32(4, true);
    const crc = v.getUint32(8, true);
    if (at + RECORD_HEADER_SIZE + len > end) return "runs past the committed end of the log";
    if (len > limit) {
      throw new MessageTooLargeError(
        `Cannot receive from file queue "${this.path}": a message of ${len} bytes exceeds the limit (${limit} bytes)`,
        len,
        limit,
      );
    }
    const body = this.#bytes(at + RECORD_HEADER_SIZE, len, end);
    if (body === undefined) return "is truncated";
    return crc32(body) === crc ? body : "fails its CRC check";
  }

  /** Moves the cursor past the corrupt record at `at` (see {@linkcode SkippedRecord.length} for how far). */
  #skip(at: number, end: number, reason: string): SkippedRecord {
    const h = at + RECORD_HEADER_SIZE <= end ? this.#bytes(at, RECORD_HEADER_SIZE, end) : undefined;
    const v = h && new DataView(h.buffer, h.byteOffset, RECORD_HEADER_SIZE);
    const byLength = v && v.getUint32(0, true) === RECORD_MAGIC ? at + RECORD_HEADER_SIZE + v.getUint32(4, true) : -1;
    // Trust the header's length only when it leads to a record boundary: the end, or a record that checks out.
    const next = byLength > at && byLength <= end && (byLength === end || this.#good(byLength, end))
      ? byLength
      : this.#resync(at + 1, end);
    this.#cursor = next;
    return { offset: at, length: next - at, reason };
  }

  #good(at: number, end: number): boolean {
    return this.#record(at, end, MAX_RECORD) instanceof Uint8Array;
  }

  /** The first offset from `from` where a record checks out (its magic, then its length and CRC), else `end`. */
  #resync(from: number, end: number): number {
    for (let p = from; p + RECORD_HEADER_SIZE <= end;) {
      const n = Math.min(CHUNK, end - p);
      const chunk = this.#bytes(p, n, end);
      if (chunk === undefined) return end;
      const copy = chunk.slice(); // #good() below may replace the read-ahead this chunk lives in
      for (let i = copy.indexOf(MAGIC_BYTES[0]!); i >= 0 && i + 4 <= n; i = copy.indexOf(MAGIC_BYTES[0]!, i + 1)) {
        if (copy[i + 1] === MAGIC_BYTES[1] && copy[i + 2] === MAGIC_BYTES[2] && copy[i + 3] === MAGIC_BYTES[3]) {
          if (this.#good(p + i, end)) return p + i;
        }
      }
      if (p + n >= end) break;
      p += n - 3; // chunks overlap by 3 bytes: a magic cut by a chunk's end is whole in the next one
    }
    return end;
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
