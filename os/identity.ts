/**
 * Object identity: what tells a named OS object from another one that later took its name. `ipckit clean` removes
 * an object only when it is still the very object its owner record describes; a name alone is not enough (the
 * object may have been removed and another program may have made a new one under the same name).
 *
 * What is recorded, looked up right after the object was made:
 * - **paths** (FIFOs, Unix stream and datagram socket files), **POSIX shared memory** (`fstat` of the `shm_open`
 *   descriptor), **POSIX message queues** (on Linux an `mqd_t` is a descriptor: `fstat` works on it) and **named
 *   semaphores** (`/dev/shm/sem.<name>`): the device, the inode number, the status-change time (ctime, to the
 *   nanosecond) and, where the file system keeps one, the birth time (btime). All come from `statx(2)`, whose layout
 *   is the same on x86-64 and arm64 (`struct stat` is not).
 * - **System V queues**: the queue id, its key and `msg_ctime` (`msgctl(IPC_STAT)`).
 *
 * When an object is the same ({@linkcode sameObject}): device and inode equal, and then
 * - the birth time equal, where both the record and the object have one (it never changes, so nothing an owner does
 *   to its object makes it look like another one);
 * - else the ctime equal, except for kinds whose normal use moves the ctime forward: a message queue's ctime moves
 *   with every send and receive, a System V queue's with `IPC_SET` (`setMaxBytes`). For those the ctime must not be
 *   older than recorded, and the identity rests on numbers the kernel does not hand out again soon: mqueue inode
 *   numbers come from a global counter (reused after 2^32 allocations), a System V id carries a sequence number that
 *   changes each time its slot is reused.
 *
 * A FIFO written to after it was recorded gets a newer ctime; on a file system without birth times it no longer
 * matches and is left alone: the safe side. Times come from the kernel's coarse clock (a few milliseconds), so two
 * objects made on one reused inode within the same tick would match: on tmpfs (`/dev/shm`) inode numbers are not
 * reused that way, on ext4 and xfs the birth time is there but has the same resolution.
 *
 * @module
 */
import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  O_NONBLOCK,
  O_RDONLY,
  STATX_BTIME,
  STATX_SIZE,
  STATX_WANTED,
} from "../ffi/constants.ts";
import { ERRNO } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";

/** The kinds of named objects ipckit records (see `registry.ts`). */
export type ObjectKind = "shm" | "mq" | "sem" | "fifo" | "socket" | "dgram" | "sysv";

/**
 * A recorded identity. Times are `"<seconds>.<9 digits of nanoseconds>"` (System V: whole seconds), device
 * `"<major>:<minor>"`, inode a decimal string (inode numbers may exceed 2^53).
 */
export interface ObjectIdentity {
  readonly dev?: string;
  readonly ino?: string;
  readonly ctime: string;
  readonly btime?: string;
}

/** What a look-up found under a name. */
export type Lookup =
  | { readonly found: "object"; readonly identity: ObjectIdentity; readonly type?: FileType }
  | { readonly found: "none" }
  /** There is something, but it could not be examined (EACCES...): never removed on a guess. */
  | { readonly found: "unknown"; readonly errno: number };

/** The file type of a path-named object, from `stx_mode`. */
export type FileType = "fifo" | "socket" | "other";

const S_IFMT = 0o170000, S_IFIFO = 0o010000, S_IFSOCK = 0o140000;
const IPC_STAT = 2, MSQID_DS = 120, MSG_CTIME = 64;
/** Kinds whose normal use moves the ctime forward (see the module doc). */
const CTIME_MOVES: ReadonlySet<ObjectKind> = new Set(["mq", "sysv"]);

const statxBuffer = new Uint8Array(STATX_SIZE);
const EMPTY = new Uint8Array(1);

function time(v: DataView, at: number): string {
  return `${v.getBigInt64(at, true)}.${String(v.getUint32(at + 8, true)).padStart(9, "0")}`;
}

/** statx of `path` (not followed through a final symlink), or of `fd` when `path` is undefined. */
function statx(ffi: Native, fd: number, path: string | undefined): Lookup {
  const rc = path === undefined
    ? ffi.call.statx(fd, EMPTY, AT_EMPTY_PATH, STATX_WANTED, statxBuffer)
    : ffi.call.statx(AT_FDCWD, ffi.cstring(path), AT_SYMLINK_NOFOLLOW, STATX_WANTED, statxBuffer);
  if (rc !== 0) return gone(ffi.errno());
  const v = new DataView(statxBuffer.buffer, statxBuffer.byteOffset, STATX_SIZE);
  const mode = v.getUint16(28, true) & S_IFMT;
  return {
    found: "object",
    type: mode === S_IFIFO ? "fifo" : mode === S_IFSOCK ? "socket" : "other",
    identity: {
      dev: `${v.getUint32(136, true)}:${v.getUint32(140, true)}`,
      ino: String(v.getBigUint64(32, true)),
      ctime: time(v, 96),
      ...((v.getUint32(0, true) & STATX_BTIME) !== 0 ? { btime: time(v, 80) } : {}),
    },
  };
}

function gone(errno: number): Lookup {
  return errno === ERRNO.ENOENT || errno === ERRNO.ENOTDIR ? { found: "none" } : { found: "unknown", errno };
}

/**
 * Looks up the object named `name` of `kind` now (synchronously: a few system calls).
 *
 * @param name a POSIX name (`/jobs`), an absolute path (FIFOs and sockets), or a System V queue id as a string.
 * @param key System V only: the key the queue must have; another key means another queue now holds the id.
 */
export function lookUp(ffi: Native, kind: ObjectKind, name: string, key?: number): Lookup {
  const { call } = ffi;
  switch (kind) {
    case "shm": {
      const fd = call.shm_open(ffi.cstring(name), O_RDONLY, 0);
      if (fd < 0) {
        const errno = ffi.errno();
        // Not readable by us (a segment made with mode 0200): glibc keeps segments in /dev/shm.
        return errno === ERRNO.EACCES ? statx(ffi, -1, `/dev/shm${name}`) : gone(errno);
      }
      try {
        return statx(ffi, fd, undefined);
      } finally {
        call.close(fd);
      }
    }
    case "mq": {
      const fd = call.mq_open(ffi.cstring(name), O_RDONLY | O_NONBLOCK, 0, null);
      if (fd < 0) return gone(ffi.errno());
      try {
        return statx(ffi, fd, undefined);
      } finally {
        call.mq_close(fd);
      }
    }
    case "sem":
      return statx(ffi, -1, `/dev/shm/sem.${name.slice(1)}`);
    case "sysv": {
      const stat = new Uint8Array(MSQID_DS);
      if (call.msgctl(Number(name), IPC_STAT, stat) < 0) {
        const errno = ffi.errno();
        return errno === ERRNO.EINVAL || errno === ERRNO.EIDRM ? { found: "none" } : { found: "unknown", errno };
      }
      const v = new DataView(stat.buffer);
      // ipc_perm.__key first; msg_ctime after ipc_perm (48 bytes), msg_stime and msg_rtime: on x86-64 and arm64.
      if (key !== undefined && v.getInt32(0, true) !== key) return { found: "none" }; // another queue has the id now
      return { found: "object", identity: { ctime: String(v.getBigInt64(MSG_CTIME, true)) } };
    }
    default:
      return statx(ffi, -1, name);
  }
}

/**
 * The identity of the object `name` of `kind` as it is now, or undefined when it cannot be examined. Creators'
 * records call this right after an exclusive create.
 */
export function identify(ffi: Native, kind: ObjectKind, name: string, key?: number): ObjectIdentity | undefined {
  const found = lookUp(ffi, kind, name, key);
  return found.found === "object" ? found.identity : undefined;
}

/** Nanoseconds of a recorded time. */
function nanos(t: string): bigint {
  const [s, ns = "0"] = t.split(".");
  return BigInt(s!) * 1_000_000_000n + BigInt(ns.padEnd(9, "0"));
}

/**
 * Whether the object found now (`now`) is the one recorded (`recorded`), by the rules of the module doc.
 *
 * @example
 * ```ts
 * import { sameObject } from "./identity.ts";
 * const made = { dev: "0:27", ino: "41", ctime: "1700000000.000000001" };
 * console.log(sameObject("socket", made, made)); // true
 * console.log(sameObject("socket", made, { ...made, ctime: "1700000001.000000000" })); // false: made again
 * console.log(sameObject("mq", made, { ...made, ctime: "1700000001.000000000" })); // true: a send moved it
 * ```
 */
export function sameObject(kind: ObjectKind, recorded: ObjectIdentity, now: ObjectIdentity): boolean {
  if (recorded.dev !== now.dev || recorded.ino !== now.ino) return false;
  if (recorded.btime !== undefined && now.btime !== undefined) return recorded.btime === now.btime;
  return CTIME_MOVES.has(kind) ? nanos(now.ctime) >= nanos(recorded.ctime) : now.ctime === recorded.ctime;
}

const TIME = /^-?\d{1,20}(\.\d{9})?$/;

/** A recorded identity checked field by field (it comes from a file anyone with the user's rights could write). */
export function parseIdentity(value: unknown): ObjectIdentity | undefined {
  if (value === null || typeof value !== "object") return undefined;
  const { dev, ino, ctime, btime } = value as Record<string, unknown>;
  if (typeof ctime !== "string" || !TIME.test(ctime)) return undefined;
  if (btime !== undefined && (typeof btime !== "string" || !TIME.test(btime))) return undefined;
  if ((dev === undefined) !== (ino === undefined)) return undefined;
  if (dev !== undefined && (typeof dev !== "string" || !/^\d{1,10}:\d{1,10}$/.test(dev))) return undefined;
  if (ino !== undefined && (typeof ino !== "string" || !/^\d{1,20}$/.test(ino))) return undefined;
  return {
    ...(dev === undefined ? {} : { dev: dev as string, ino: ino as string }),
    ctime,
    ...(btime === undefined ? {} : { btime: btime as string }),
  };
}
