/**
 * The durable file queue's on-disk format and file helpers: the sizes and magic numbers, CRC-32, the encoders of the
 * log header, records and the consumer offset, and whole-buffer `pread`/`pwrite`/`fsync` with EINTR retried. The
 * format is documented byte for byte in `transports/file_queue.ts`; the queue handle is `os/file_queue.ts`.
 *
 * @module
 */
import { AlreadyExistsError, IpcError } from "../errors.ts";
import { O_CLOEXEC, O_CREAT, O_RDONLY, O_WRONLY } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";

/** Size of the log's file header. */
export const FILE_HEADER_SIZE = 24;
/** Size of a record header. */
export const RECORD_HEADER_SIZE = 12;
/** Size of the consumer offset file. */
export const OFFSET_FILE_SIZE = 16;
/** "IPCQ": the log's magic. */
export const LOG_MAGIC = 0x51435049;
/** "IPCR": every record's magic. */
export const RECORD_MAGIC = 0x52435049;
/** "IPCO": the offset file's magic. */
export const OFFSET_MAGIC = 0x4f435049;
/** The log format version. */
export const LOG_VERSION = 1;
/** The largest record payload (the length is a u32). */
export const MAX_RECORD = 0xffff_ffff;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/**
 * CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the one of zlib, gzip, PNG and Python's `zlib.crc32`.
 *
 * @example
 * ```ts
 * import { fileQueue } from "ipckit";
 * console.log(fileQueue.crc32(new TextEncoder().encode("123456789")).toString(16)); // "cbf43926"
 * ```
 */
export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** The log's file header with `committed` as the end of the last complete record. */
export function encodeLogHeader(committed: number): Uint8Array {
  const h = new Uint8Array(FILE_HEADER_SIZE);
  const v = new DataView(h.buffer);
  v.setUint32(0, LOG_MAGIC, true);
  v.setUint32(4, LOG_VERSION, true);
  v.setBigUint64(8, BigInt(committed), true);
  v.setUint32(16, crc32(h.subarray(8, 16)), true);
  return h;
}

/** One record: header + `prefix` + `body` (the channel view puts its kind byte in `prefix`). */
export function encodeRecord(body: Uint8Array, prefix?: Uint8Array): Uint8Array {
  const p = prefix?.byteLength ?? 0;
  const r = new Uint8Array(RECORD_HEADER_SIZE + p + body.byteLength);
  if (prefix) r.set(prefix, RECORD_HEADER_SIZE);
  r.set(body, RECORD_HEADER_SIZE + p);
  const v = new DataView(r.buffer);
  v.setUint32(0, RECORD_MAGIC, true);
  v.setUint32(4, p + body.byteLength, true);
  v.setUint32(8, crc32(r.subarray(RECORD_HEADER_SIZE)), true);
  return r;
}

/** The consumer offset file's bytes for `offset`. */
export function encodeOffset(offset: number): Uint8Array {
  const o = new Uint8Array(OFFSET_FILE_SIZE);
  const v = new DataView(o.buffer);
  v.setUint32(0, OFFSET_MAGIC, true);
  v.setBigUint64(4, BigInt(offset), true);
  v.setUint32(12, crc32(o.subarray(0, 12)), true);
  return o;
}

/**
 * Makes `dir` (mode 0700) or accepts it when it exists and is empty (it is then removed and made again).
 *
 * @throws {AlreadyExistsError} when `dir` exists and is not an empty directory.
 */
export function makeEmptyDir(ffi: Native, dir: string, what: string): void {
  const path = ffi.cstring(dir);
  if (ffi.call.mkdir(path, 0o700) === 0) return;
  let errno = ffi.errno();
  if (errno === ERRNO.EEXIST) {
    if (ffi.call.rmdir(path) === 0 && ffi.call.mkdir(path, 0o700) === 0) return;
    errno = ffi.errno();
    if (errno === ERRNO.ENOTEMPTY || errno === ERRNO.EEXIST || errno === ERRNO.ENOTDIR) {
      throw new AlreadyExistsError(`Cannot create ${what} "${dir}": it exists and is not an empty directory`, {
        code: "EEXIST",
      });
    }
  }
  throw errnoError(errno, `create ${what} "${dir}"`);
}

/** open(2) with O_CLOEXEC (a child must not inherit our descriptors, nor a flock through them), mode 0600. */
export function openFile(ffi: Native, path: string, flags: number, what: string): number {
  const fd = ffi.call.open(ffi.cstring(path), flags | O_CLOEXEC, 0o600);
  if (fd < 0) throw errnoError(ffi.errno(), what);
  return fd;
}

/** Writes all of `bytes` at `at`. */
export function pwriteAll(ffi: Native, fd: number, bytes: Uint8Array, at: number, what: string): void {
  for (let done = 0; done < bytes.byteLength;) {
    const n = ffi.call.pwrite(fd, done === 0 ? bytes : bytes.subarray(done), bytes.byteLength - done, at + done);
    if (n < 0) {
      const errno = ffi.errno();
      if (errno === ERRNO.EINTR) continue;
      throw errnoError(errno, what);
    }
    done += n;
  }
}

/** Reads exactly `buf.byteLength` bytes at `at`; false when the file ends first. */
export function preadAll(ffi: Native, fd: number, buf: Uint8Array, at: number, what: string): boolean {
  for (let done = 0; done < buf.byteLength;) {
    const n = ffi.call.pread(fd, done === 0 ? buf : buf.subarray(done), buf.byteLength - done, at + done);
    if (n < 0) {
      const errno = ffi.errno();
      if (errno === ERRNO.EINTR) continue;
      throw errnoError(errno, what);
    }
    if (n === 0) return false;
    done += n;
  }
  return true;
}

/** fsync(2), off the main thread. */
export async function fsyncFd(ffi: Native, fd: number, what: string): Promise<void> {
  // Off the main thread: an fsync can take milliseconds. errno is unreliable after an off-thread call.
  if (await ffi.callAsync.fsync(fd) !== 0) throw new IpcError(`Cannot fsync ${what}: the call failed`);
}

/** fsync(2) of the file or directory at `path`. */
export async function fsyncPath(ffi: Native, path: string, what: string): Promise<void> {
  const fd = openFile(ffi, path, O_RDONLY, `open ${what} for fsync`);
  try {
    await fsyncFd(ffi, fd, what);
  } finally {
    ffi.call.close(fd);
  }
}

/**
 * Writes the consumer offset file atomically: a temporary file renamed over `consumer.offset` (with `sync`, the file
 * and then the directory are synced too).
 */
export async function writeOffset(ffi: Native, dir: string, offset: number, sync: boolean): Promise<void> {
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
