/**
 * Making and opening file queues: {@linkcode create} and {@linkcode open} give a {@linkcode FileQueue}
 * (`os/file_queue.ts`). The directory layout and the order in which a queue's files appear are documented in
 * `transports/file_queue.ts`.
 *
 * @module
 */
import { NotFoundError } from "../errors.ts";
import { O_CLOEXEC, O_CREAT, O_EXCL, O_RDONLY, O_RDWR } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { native } from "../ffi/native.ts";
import { type FileQueue, type FileQueueOptions, makeQueue } from "./file_queue.ts";
import {
  encodeLogHeader,
  FILE_HEADER_SIZE,
  fsyncFd,
  makeEmptyDir,
  openFile,
  pwriteAll,
  writeOffset,
} from "./file_queue_format.ts";

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
