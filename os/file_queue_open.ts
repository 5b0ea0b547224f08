/**
 * Making and opening file queues: the file work behind `FileQueue.create` and `FileQueue.open` (`os/file_queue.ts`;
 * those statics are the public way to get a queue). Each function takes the handle's maker (the class's private
 * constructor), so this module needs nothing from the class that imports it. The directory layout and the order in
 * which a queue's files appear are documented in `transports/file_queue.ts`.
 *
 * @module
 */
import { NotFoundError } from "../errors.ts";
import { O_CLOEXEC, O_CREAT, O_EXCL, O_RDONLY, O_RDWR } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import {
  encodeLogHeader,
  FILE_HEADER_SIZE,
  fsyncFd,
  makeEmptyDir,
  openFile,
  pwriteAll,
  writeOffset,
} from "./file_queue_format.ts";
import type { SkippedRecord } from "./file_queue_reader.ts";

/** Options of `FileQueue.create` and `FileQueue.open`. */
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
   * `FileQueue.skipCorrupt()` to go past it. With a function, the consumer skips each corrupt record at
   * once, reports it here, and goes on with the next good one.
   */
  onCorrupt?: (skipped: SkippedRecord) => void;
}

/** Makes a handle on an open log; it may throw (a refused log header), and the caller then closes `fd`. */
export type MakeFileQueue<Q> = (
  ffi: Native,
  path: string,
  fd: number,
  fsync: boolean,
  onCorrupt: ((skipped: SkippedRecord) => void) | undefined,
) => Q;

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

/** Creates the queue directory `dir` (what `FileQueue.create` documents), then opens it. */
export async function createQueue<Q>(make: MakeFileQueue<Q>, dir: string, options: FileQueueOptions = {}): Promise<Q> {
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
  return openQueue(make, dir, options);
}

/** Opens the existing queue directory `dir` (what `FileQueue.open` documents). */
export async function openQueue<Q>(make: MakeFileQueue<Q>, dir: string, options: FileQueueOptions = {}): Promise<Q> {
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
    return make(ffi, dir, fd, options.fsync === true, options.onCorrupt);
  } catch (e) {
    // The descriptor goes: a log refused here (a hostile or damaged header) must not leak one per attempt.
    ffi.call.close(fd);
    throw e;
  }
}
