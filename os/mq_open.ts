/**
 * The system calls behind {@linkcode MessageQueue.create}, `open` and `openOrCreate` (`os/mq.ts`; those statics
 * are the public way to make a queue). A creator writes an owner record (`registry.ts`). Each function takes the
 * handle's maker (the class's private constructor), so this module needs nothing from the class that imports it.
 *
 * @module
 */
import { AlreadyExistsError, NotFoundError } from "../errors.ts";
import { O_CREAT, O_EXCL, O_RDONLY, O_RDWR, O_WRONLY } from "../ffi/constants.ts";
import type { Native } from "../ffi/native.ts";
import { prepare, register } from "../registry.ts";
import { checkName, checkSizes, loadNative, nameOf, openError, type QueueSizes } from "./mq_checks.ts";

/** Who may use a queue through this handle. */
export type Access = "read" | "write" | "both";

/** Options of `MessageQueue.create`. */
export type CreateOptions = QueueSizes;

/** Options of `MessageQueue.open`. */
export interface OpenOptions {
  /** Open for reading, writing or both (default). */
  mode?: Access;
}

/** Makes a handle on an open queue descriptor. */
export type MakeQueue<Q> = (ffi: Native, fd: number, name: string, access: Access) => Q;

/** mq_open behind create/open. */
async function mqOpen<Q>(
  make: MakeQueue<Q>,
  name: string,
  flags: number,
  mode: number,
  access: Access,
  sizes?: CreateOptions,
): Promise<Q> {
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
  return make(ffi, fd, name, access);
}

/** Creates the queue `name`, opened for reading and writing (what `MessageQueue.create` documents). */
export function createQueue<Q>(make: MakeQueue<Q>, name: string, options: CreateOptions): Promise<Q> {
  try {
    checkName(name);
    const sizes = checkSizes(name, options);
    return mqOpen(make, name, O_CREAT | O_EXCL | O_RDWR, sizes.mode!, "both", sizes);
  } catch (e) {
    return Promise.reject(e);
  }
}

const ACCESS: Record<Access, number> = { read: O_RDONLY, write: O_WRONLY, both: O_RDWR };

/** Opens the existing queue `name` (what `MessageQueue.open` documents). */
export function openQueue<Q>(make: MakeQueue<Q>, name: string, options: OpenOptions = {}): Promise<Q> {
  try {
    checkName(name);
    const access = options.mode ?? "both";
    if (!(access in ACCESS)) throw new TypeError(`Cannot open ${nameOf(name)}: mode must be "read", "write" or "both"`);
    return mqOpen(make, name, ACCESS[access], 0, access);
  } catch (e) {
    return Promise.reject(e);
  }
}

/** Opens the queue `name`, creating it with `options` when it does not exist (`MessageQueue.openOrCreate`). */
export async function openOrCreateQueue<Q>(make: MakeQueue<Q>, name: string, options: CreateOptions): Promise<Q> {
  for (let i = 0;; i++) {
    try {
      return await createQueue(make, name, options);
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
    }
    try {
      return await openQueue(make, name);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 10) throw e; // removed in between: try again
    }
  }
}
