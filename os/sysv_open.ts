/**
 * Making and finding System V message queues: keys (`ftok(3)` or a number), and the system calls behind
 * `SysvQueue.create`, `open`, `openOrCreate`, `fromId` and `private` (`os/sysv.ts`; those statics are the public way
 * to get a queue). Creators write an owner record (`registry.ts`). Each function takes the handle's maker (the
 * class's private constructor), so this module needs nothing from the class that imports it. The named-object
 * descriptor (look up, remove, list `/proc/sysvipc/msg`) is `os/sysv_name.ts`.
 *
 * @module
 */
import { AlreadyExistsError, type IpcError, NotFoundError, UnsupportedError } from "../errors.ts";
import { IPC_CREAT, IPC_EXCL, IPC_PRIVATE, IPC_STAT, MSQID_DS } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { prepare, register } from "../registry.ts";

const { EIDRM, EINVAL, ENOENT, ENOSPC } = ERRNO as Record<string, number>;

/** Options of `SysvQueue.create`, `SysvQueue.openOrCreate` and `SysvQueue.private`. */
export interface SysvCreateOptions {
  /** Permission bits. Default 0o600. */
  mode?: number;
  /** The queue's capacity in bytes (`msg_qbytes`); above `msgmnb` needs CAP_SYS_RESOURCE. Default msgmnb. */
  maxBytes?: number;
}

/** What a new queue's `maxBytes` needs of its handle. */
type Queue = { setMaxBytes(bytes: number): void; remove(): void };

/** Makes a handle on the queue `id`. */
export type MakeSysvQueue<Q extends Queue> = (ffi: Native, id: number) => Q;

/** The loaded libc, or UnsupportedError where there are no System V queues. */
export async function loadNative(): Promise<Native> {
  const ffi = await native();
  if (typeof ffi.call.msgget !== "function") {
    throw new UnsupportedError("Cannot use System V message queues: this platform has no msgget");
  }
  return ffi;
}

/** How messages name a queue. */
export const nameOf = (id: number): string => `System V message queue ${id}`;
/** How messages name a key. */
export const keyName = (key: number): string => `System V message queue with key 0x${(key >>> 0).toString(16)}`;

/** Checks an integer argument: RangeError outside `min..max`. */
export function integer(value: unknown, what: string, min: number, max: number): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new RangeError(`Cannot use ${what} ${String(value)}: it must be an integer from ${min} to ${max}`);
  }
  return value;
}

function checkKey(k: unknown): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k < -(2 ** 31) || k > 2 ** 32 - 1 || k === 0) {
    throw new RangeError(
      `Cannot use System V key ${String(k)}: it must be a non-zero 32-bit integer (use SysvQueue.private() for ` +
        `IPC_PRIVATE)`,
    );
  }
  return k | 0;
}

/**
 * A key: `ftok(path, projectId)` for a path (the file must exist; keys follow its inode), or a number as is.
 *
 * @param pathOrNumber an existing path, or a non-zero 32-bit integer.
 * @param projectId 1 to 255 (default 1), for a path.
 * @returns the key, a signed 32-bit integer.
 * @throws {NotFoundError} when the path does not exist; {@linkcode RangeError} for a bad number or projectId.
 * @example
 * ```ts
 * import { sysv } from "ipckit";
 * const fromPath = await sysv.key("/tmp", 7); // ftok(3): the same path and id give the same key everywhere
 * const fromNumber = await sysv.key(0x1234); // or a number both sides agree on
 * console.log(typeof fromPath, fromNumber); // "number" 4660
 * ```
 */
export async function key(pathOrNumber: string | number, projectId = 1): Promise<number> {
  if (typeof pathOrNumber === "number") return checkKey(pathOrNumber);
  if (typeof pathOrNumber !== "string" || pathOrNumber === "" || pathOrNumber.includes("\0")) {
    throw new TypeError(`Cannot make a System V key from ${JSON.stringify(pathOrNumber)}: not a path`);
  }
  integer(projectId, "projectId", 1, 255);
  const ffi = await loadNative();
  const k = ffi.call.ftok(ffi.cstring(pathOrNumber), projectId);
  if (k === -1) throw errnoError(ffi.errno(), `make a System V key from "${pathOrNumber}"`);
  return k;
}

function createOptions(o: SysvCreateOptions): { mode: number; maxBytes: number | undefined } {
  const mode = o.mode === undefined ? 0o600 : integer(o.mode, "mode", 0, 0o777);
  const maxBytes = o.maxBytes === undefined ? undefined : integer(o.maxBytes, "maxBytes", 1, 2 ** 31 - 1);
  return { mode, maxBytes };
}

function getError(errno: number, what: string): IpcError {
  const e = errnoError(errno, what);
  if (errno === ENOSPC) {
    e.message = `Cannot ${what}: the system-wide number of queues reached /proc/sys/kernel/msgmni`;
  }
  return e;
}

async function make<Q extends Queue>(
  maker: MakeSysvQueue<Q>,
  k: number,
  flags: number,
  o: SysvCreateOptions,
  what: string,
): Promise<Q> {
  const { mode, maxBytes } = createOptions(o);
  const ffi = await loadNative();
  await prepare();
  const id = ffi.call.msgget(k, flags | mode);
  if (id < 0) throw getError(ffi.errno(), what);
  register("sysv", String(id), { key: k }); // IPC_EXCL or IPC_PRIVATE: this call made it
  const q = maker(ffi, id);
  if (maxBytes !== undefined) {
    try {
      q.setMaxBytes(maxBytes);
    } catch (e) {
      q.remove();
      throw e;
    }
  }
  return q;
}

/** Creates the queue with key `k` (`IPC_CREAT | IPC_EXCL`): what `SysvQueue.create` documents. */
export async function createQueue<Q extends Queue>(
  maker: MakeSysvQueue<Q>,
  k: number,
  options: SysvCreateOptions = {},
): Promise<Q> {
  k = checkKey(k);
  return await make(maker, k, IPC_CREAT | IPC_EXCL, options, `create ${keyName(k)}`);
}

/** Opens the existing queue with key `k`: what `SysvQueue.open` documents. */
export async function openQueue<Q extends Queue>(maker: MakeSysvQueue<Q>, k: number): Promise<Q> {
  k = checkKey(k);
  const ffi = await loadNative();
  const id = ffi.call.msgget(k, 0);
  if (id < 0) throw getError(ffi.errno(), `open ${keyName(k)}`);
  return maker(ffi, id);
}

/** Opens the queue with key `k`, creating it when there is none: what `SysvQueue.openOrCreate` documents. */
export async function openOrCreateQueue<Q extends Queue>(
  maker: MakeSysvQueue<Q>,
  k: number,
  options: SysvCreateOptions = {},
): Promise<Q> {
  k = checkKey(k);
  for (let i = 0;; i++) {
    try {
      return await createQueue(maker, k, options);
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
    }
    try {
      return await openQueue(maker, k);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 10) throw e; // removed in between: try again
    }
  }
}

/** Takes the queue `id`: what `SysvQueue.fromId` documents. */
export async function fromIdQueue<Q extends Queue>(maker: MakeSysvQueue<Q>, id: number): Promise<Q> {
  integer(id, "queue id", 0, 2 ** 31 - 1);
  const ffi = await loadNative();
  if (ffi.call.msgctl(id, IPC_STAT, new BigInt64Array(MSQID_DS / 8)) < 0) {
    const errno = ffi.errno();
    if (errno === EINVAL || errno === EIDRM || errno === ENOENT) {
      throw new NotFoundError(`Cannot open ${nameOf(id)}: it does not exist`, { code: "EINVAL" });
    }
    throw errnoError(errno, `open ${nameOf(id)}`);
  }
  return maker(ffi, id);
}

/** Creates a new queue without a key (`IPC_PRIVATE`): what `SysvQueue.private` documents. */
export function privateQueue<Q extends Queue>(maker: MakeSysvQueue<Q>, options: SysvCreateOptions = {}): Promise<Q> {
  return make(maker, IPC_PRIVATE, IPC_CREAT, options, "create a private System V message queue");
}
