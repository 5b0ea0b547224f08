/**
 * Making and finding System V message queues: keys (`ftok(3)` or a number), and the functions that give a
 * {@linkcode SysvQueue} (`os/sysv.ts`): {@linkcode create}, {@linkcode open}, {@linkcode openOrCreate},
 * {@linkcode fromId} and `private()` (`IPC_PRIVATE`). Creators write an owner record (`registry.ts`). The named-object
 * descriptor (look up, remove, list `/proc/sysvipc/msg`) is `os/sysv_name.ts`.
 *
 * @module
 */
import { AlreadyExistsError, type IpcError, NotFoundError } from "../errors.ts";
import { IPC_CREAT, IPC_EXCL, IPC_PRIVATE, IPC_STAT, MSQID_DS } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { prepare, register } from "../registry.ts";
import {
  integer,
  keyName,
  loadNative,
  makeSysvQueue,
  nameOf,
  type SysvCreateOptions,
  type SysvQueue,
} from "./sysv.ts";

const { EIDRM, EINVAL, ENOENT, ENOSPC } = ERRNO as Record<string, number>;

function checkKey(k: unknown): number {
  if (typeof k !== "number" || !Number.isInteger(k) || k < -(2 ** 31) || k > 2 ** 32 - 1 || k === 0) {
    throw new RangeError(
      `Cannot use System V key ${String(k)}: it must be a non-zero 32-bit integer (use sysv.private() for ` +
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

async function make(k: number, flags: number, o: SysvCreateOptions, what: string): Promise<SysvQueue> {
  const { mode, maxBytes } = createOptions(o);
  const ffi = await loadNative();
  await prepare();
  const id = ffi.call.msgget(k, flags | mode);
  if (id < 0) throw getError(ffi.errno(), what);
  register("sysv", String(id), { key: k }); // IPC_EXCL or IPC_PRIVATE: this call made it
  const q = makeSysvQueue(ffi, id);
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

/**
 * Creates the queue with key `k` (`IPC_CREAT | IPC_EXCL`).
 *
 * @throws {AlreadyExistsError} when a queue has that key; {@linkcode PermissionError} for a `maxBytes` above
 * msgmnb without CAP_SYS_RESOURCE (nothing is left behind).
 *
 * @example
 * ```ts
 * import { AlreadyExistsError, runtime, sysv } from "ipckit";
 * const k = await sysv.key((await runtime()).pid); // a number only this process uses
 * using q = await sysv.create(k); // mode 0600
 * try {
 *   await sysv.create(k);
 * } catch (e) {
 *   console.log(e instanceof AlreadyExistsError); // true
 * } finally {
 *   q.remove();
 * }
 * ```
 */
export async function create(k: number, options: SysvCreateOptions = {}): Promise<SysvQueue> {
  k = checkKey(k);
  return await make(k, IPC_CREAT | IPC_EXCL, options, `create ${keyName(k)}`);
}

/**
 * Opens the existing queue with key `k`.
 *
 * @throws {NotFoundError} when there is none; {@linkcode PermissionError} when its mode refuses this user.
 *
 * @example
 * ```ts
 * import { runtime, sysv } from "ipckit";
 * const k = await sysv.key((await runtime()).pid);
 * using owner = await sysv.create(k);
 * using other = await sysv.open(k); // in another process, usually
 * try {
 *   await other.send(1, new TextEncoder().encode("hi"));
 *   console.log(other.id === owner.id, (await owner.receive({ timeout: 1000 })).type); // true 1
 * } finally {
 *   owner.remove();
 * }
 * ```
 */
export async function open(k: number): Promise<SysvQueue> {
  k = checkKey(k);
  const ffi = await loadNative();
  const id = ffi.call.msgget(k, 0);
  if (id < 0) throw getError(ffi.errno(), `open ${keyName(k)}`);
  return makeSysvQueue(ffi, id);
}

/**
 * Opens the queue with key `k`, creating it with `options` when there is none (`maxBytes` only then).
 *
 * @example
 * ```ts
 * import { runtime, sysv } from "ipckit";
 * const k = await sysv.key((await runtime()).pid);
 * using first = await sysv.openOrCreate(k); // creates it
 * using second = await sysv.openOrCreate(k); // opens it
 * console.log(first.id === second.id); // true
 * first.remove();
 * ```
 */
export async function openOrCreate(k: number, options: SysvCreateOptions = {}): Promise<SysvQueue> {
  k = checkKey(k);
  for (let i = 0;; i++) {
    try {
      return await create(k, options);
    } catch (e) {
      if (!(e instanceof AlreadyExistsError)) throw e;
    }
    try {
      return await open(k);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 10) throw e; // removed in between: try again
    }
  }
}

/**
 * Takes the queue `id` (from `queue.id` in another process, or `ipcs -q`).
 *
 * @throws {NotFoundError} when no queue has that id.
 *
 * @example
 * ```ts
 * import { sysv } from "ipckit";
 * using q = await sysv.private();
 * using same = await sysv.fromId(q.id); // another process got the id from us (or from `ipcs -q`)
 * await same.send(5, new Uint8Array([5]));
 * console.log((await q.receive()).type); // 5
 * q.remove();
 * ```
 */
export async function fromId(id: number): Promise<SysvQueue> {
  integer(id, "queue id", 0, 2 ** 31 - 1);
  const ffi = await loadNative();
  if (ffi.call.msgctl(id, IPC_STAT, new BigInt64Array(MSQID_DS / 8)) < 0) {
    const errno = ffi.errno();
    if (errno === EINVAL || errno === EIDRM || errno === ENOENT) {
      throw new NotFoundError(`Cannot open ${nameOf(id)}: it does not exist`, { code: "EINVAL" });
    }
    throw errnoError(errno, `open ${nameOf(id)}`);
  }
  return makeSysvQueue(ffi, id);
}

/**
 * Creates a new queue without a key (`IPC_PRIVATE`): share its `id` with the processes that should use it.
 *
 * @example
 * ```ts
 * import { sysv } from "ipckit";
 * using q = await sysv.private({ maxBytes: 8192 }); // no key: nobody finds it without its id
 * console.log(q.id >= 0, q.info.maxBytes); // true 8192
 * q.remove();
 * ```
 */
function privateQueue(options: SysvCreateOptions = {}): Promise<SysvQueue> {
  return make(IPC_PRIVATE, IPC_CREAT, options, "create a private System V message queue");
}
export { privateQueue as private };
