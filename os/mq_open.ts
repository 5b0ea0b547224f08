/**
 * Making and opening POSIX message queues: {@linkcode create}, {@linkcode open} and {@linkcode openOrCreate} give a
 * {@linkcode MessageQueue} (`os/mq.ts`). A creator writes an owner record (`registry.ts`).
 *
 * @module
 */
import { AlreadyExistsError, NotFoundError } from "../errors.ts";
import { O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY } from "../ffi/constants.ts";
import { prepare, register } from "../registry.ts";
import { type Access, type CreateOptions, makeQueue, type MessageQueue, type OpenOptions } from "./mq.ts";
import { checkName, checkSizes, loadNative, nameOf, openError } from "./mq_checks.ts";

/** mq_open behind create/open. */
async function openQueue(
  name: string,
  flags: number,
  mode: number,
  access: Access,
  sizes?: CreateOptions,
): Promise<MessageQueue> {
  const ffi = await loadNative();
  const creating = (flags & O_CREAT) !== 0;
  if (creating) await prepare();
  let attr: BigInt64Array | null = null;
  if (sizes) {
    attr = new BigInt64Array(8); // struct mq_attr: flags, maxmsg, msgsize, curmsgs, 4 reserved longs
    attr[1] = BigInt(sizes.maxMessages);
    attr[2] = BigInt(sizes.messageSize);
  }
  const fd = ffi.call.mq_open(ffi.cstring(name), flags, mode, attr);
  if (fd < 0) {
    const errno = ffi.errno();
    throw openError(errno, `${sizes ? "create" : "open"} ${nameOf(name)}`, sizes);
  }
  if (creating) register("mq", name); // create() passes O_EXCL: this call made it
  return makeQueue(ffi, fd, name, access);
}

/**
 * Creates the queue `name` (`"/"` then 1 to 254 bytes without `"/"`), opened for reading and writing.
 *
 * @throws {TypeError} for a bad name; {@linkcode RangeError} for sizes that are not positive integers.
 * @throws {AlreadyExistsError} when the name exists.
 * @throws {IpcError} naming the kernel limit when the sizes exceed it.
 *
 * @example
 * ```ts
 * import { AlreadyExistsError, mq, runtime } from "ipckit";
 * const name = `/ipckit-create-${(await runtime()).pid}`;
 * using q = await mq.create(name, { maxMessages: 10, messageSize: 256 }); // mode 0600
 * try {
 *   await mq.create(name, { maxMessages: 10, messageSize: 256 });
 * } catch (e) {
 *   console.log(e instanceof AlreadyExistsError); // true
 * } finally {
 *   q.unlink();
 * }
 * ```
 */
export function create(name: string, options: CreateOptions): Promise<MessageQueue> {
  try {
    checkName(name);
    const sizes = checkSizes(name, options);
    return openQueue(name, O_CREAT | O_EXCL | O_RDWR, sizes.mode!, "both", sizes);
  } catch (e) {
    return Promise.reject(e);
  }
}

const ACCESS: Record<Access, number> = { read: O_RDONLY, write: O_WRONLY, both: O_RDWR };

/**
 * Opens the existing queue `name`.
 *
 * @throws {NotFoundError} when it does not exist.
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * const name = `/ipckit-open-${(await runtime()).pid}`;
 * using owner = await mq.create(name, { maxMessages: 10, messageSize: 256 });
 * using writer = await mq.open(name, { mode: "write" }); // in another process, usually
 * try {
 *   writer.trySend(new TextEncoder().encode("from the writer"));
 *   console.log(new TextDecoder().decode((await owner.receive({ timeout: 1000 })).data)); // "from the writer"
 * } finally {
 *   owner.unlink();
 * }
 * ```
 */
export function open(name: string, options: OpenOptions = {}): Promise<MessageQueue> {
  try {
    checkName(name);
    const access = options.mode ?? "both";
    if (!(access in ACCESS)) throw new TypeError(`Cannot open ${nameOf(name)}: mode must be "read", "write" or "both"`);
    return openQueue(name, ACCESS[access], 0, access);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * Opens the queue `name`, creating it with `options` when it does not exist.
 *
 * @example
 * ```ts
 * import { mq, runtime } from "ipckit";
 * const name = `/ipckit-either-${(await runtime()).pid}`;
 * // Whoever comes first creates the queue; the sizes apply only then.
 * using a = await mq.openOrCreate(name, { maxMessages: 5, messageSize: 128 });
 * using b = await mq.openOrCreate(name, { maxMessages: 5, messageSize: 128 });
 * console.log(a.maxMessages, b.messageSize); // 5 128
 * a.unlink();
 * ```
 */
export async function openOrCreate(name: string, options: CreateOptions): Promise<MessageQueue> {
  for (let i = 0;; i++) {
    try {
      return await create(name, options);
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
    }
    try {
      return await open(name);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 10) throw e; // removed in between: try again
    }
  }
}
