/**
 * The reading side of a file queue log (`os/file_queue.ts`): the committed end from the header, the file's real
 * size, a read-ahead, and the checking, skipping and resynchronising of records. A hostile or damaged log can claim
 * any committed end and any record length: nothing here reads past the file or trusts a length it has not checked.
 * Internal: the queue handle owns one and keeps the cursor.
 *
 * @module
 */
import { MessageTooLargeError, ProtocolError } from "../errors.ts";
import { SEEK_END } from "../ffi/constants.ts";
import { errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import {
  crc32,
  FILE_HEADER_SIZE,
  LOG_MAGIC,
  LOG_VERSION,
  MAX_RECORD,
  preadAll,
  RECORD_HEADER_SIZE,
  RECORD_MAGIC,
} from "./file_queue_format.ts";

/** What a consumer skipped over: see `FileQueue.skipCorrupt`. */
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

/** A record's magic as it is on disk ("IPCR"), for the resync scan. */
const MAGIC_BYTES = new Uint8Array([0x49, 0x50, 0x43, 0x52]);
/** Read-ahead of the consumer, in bytes. */
const CHUNK = 256 * 1024;

/** The reader of one log file (see the module doc). */
export class LogReader {
  readonly #ffi: Native;
  readonly #fd: number;
  readonly #path: string;
  #committed = FILE_HEADER_SIZE;
  /** The log file's size as last seen: no read is sized past it (a hostile header may claim any committed end). */
  #size = FILE_HEADER_SIZE;
  #cache = new Uint8Array(0);
  #cacheAt = 0;

  constructor(ffi: Native, fd: number, path: string) {
    this.#ffi = ffi;
    this.#fd = fd;
    this.#path = path;
  }

  /** Whether `bytes` lives in the read-ahead (a caller that keeps it must copy it). */
  cached(bytes: Uint8Array): boolean {
    return bytes.buffer === this.#cache.buffer;
  }

  /**
   * The committed end of the log, from its header. A header torn by a concurrent write (its CRC does not match)
   * keeps the last value, unless `strict` (under the lock, or on open), when it is a `ProtocolError`.
   */
  readCommitted(strict = false): number {
    const h = new Uint8Array(FILE_HEADER_SIZE);
    if (!preadAll(this.#ffi, this.#fd, h, 0, `read file queue "${this.#path}"`)) {
      throw new ProtocolError(`Cannot read file queue "${this.#path}": the log has no header`);
    }
    const v = new DataView(h.buffer);
    if (v.getUint32(0, true) !== LOG_MAGIC || v.getUint32(4, true) !== LOG_VERSION) {
      throw new ProtocolError(`Cannot read file queue "${this.#path}": the log is not an ipckit file queue (v1)`);
    }
    if (v.getUint32(16, true) !== crc32(h.subarray(8, 16))) {
      if (strict) throw new ProtocolError(`Cannot read file queue "${this.#path}": the log header is corrupt`);
      return this.#committed;
    }
    return (this.#committed = Number(v.getBigUint64(8, true)));
  }

  /** Bytes of the log at `at`, from the read-ahead when possible; undefined past the end of the file. */
  #bytes(at: number, n: number, limit: number): Uint8Array | undefined {
    if (at >= this.#cacheAt && at + n <= this.#cacheAt + this.#cache.byteLength) {
      return this.#cache.subarray(at - this.#cacheAt, at - this.#cacheAt + n);
    }
    const what = `read file queue "${this.#path}"`;
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
   * Where the readable log ends for a reader at `at`: the committed end from the header (re-read once the reader
   * caught up with it), but never past the file's real size.
   */
  end(at: number): number {
    if (at >= this.#committed) this.readCommitted();
    if (this.#committed > this.#size) this.#size = Math.max(this.#size, this.#fileSize());
    return Math.min(this.#committed, this.#size);
  }

  #fileSize(): number {
    const size = this.#ffi.call.lseek(this.#fd, 0, SEEK_END);
    if (size < 0) throw errnoError(this.#ffi.errno(), `read file queue "${this.#path}"`);
    return size;
  }

  /**
   * The record at `at` (before `end`): its payload, or why it is corrupt. A payload over `limit` is a
   * `MessageTooLargeError` (not corruption: the record may be good).
   */
  record(at: number, end: number, limit: number): Uint8Array | string {
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
        `Cannot receive from file queue "${this.#path}": a message of ${len} bytes exceeds the limit (${limit} bytes)`,
        len,
        limit,
      );
    }
    const body = this.#bytes(at + RECORD_HEADER_SIZE, len, end);
    if (body === undefined) return "is truncated";
    return crc32(body) === crc ? body : "fails its CRC check";
  }

  /** What skipping the corrupt record at `at` means: how far the cursor moves (see `SkippedRecord.length`). */
  skip(at: number, end: number, reason: string): SkippedRecord {
    const h = at + RECORD_HEADER_SIZE <= end ? this.#bytes(at, RECORD_HEADER_SIZE, end) : undefined;
    const v = h && new DataView(h.buffer, h.byteOffset, RECORD_HEADER_SIZE);
    const byLength = v && v.getUint32(0, true) === RECORD_MAGIC ? at + RECORD_HEADER_SIZE + v.getUint32(4, true) : -1;
    // Trust the header's length only when it leads to a record boundary: the end, or a record that checks out.
    const next = byLength > at && byLength <= end && (byLength === end || this.#good(byLength, end))
      ? byLength
      : this.#resync(at + 1, end);
    return { offset: at, length: next - at, reason };
  }

  #good(at: number, end: number): boolean {
    return this.record(at, end, MAX_RECORD) instanceof Uint8Array;
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
}
