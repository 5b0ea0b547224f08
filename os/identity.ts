/**
 * Object identity: what tells a named OS object from another one that later took its name. `ipckit clean` removes
 * an object only when it is still the very object its owner record describes; a name alone is not enough (the
 * object may have been removed and another program may have made a new one under the same name).
 *
 * What is recorded, looked up right after the object was made by the kind's descriptor (`lookUp` of `os/named.ts`,
 * one per kind in `os/named_kinds.ts`):
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
import type { Native } from "../ffi/native.ts";
import type { Lookup, ObjectIdentity } from "./named.ts";
import { type Kind, namedKind } from "./named_kinds.ts";

export type { FileType, Lookup, ObjectIdentity } from "./named.ts";

/** The kinds of named objects ipckit records (see `os/named_kinds.ts`). */
export type ObjectKind = Kind;

function descriptor(kind: ObjectKind) {
  const d = namedKind(kind as string);
  if (d === undefined) throw new TypeError(`Cannot look up a named object of kind "${kind}": no such kind`);
  return d;
}

/**
 * Looks up the object named `name` of `kind` now (synchronously: a few system calls), through the kind's
 * descriptor (`os/named.ts`).
 *
 * @param name a POSIX name (`/jobs`), an absolute path (FIFOs and sockets), or a System V queue id as a string.
 * @param key System V only: the key the queue must have; another key means another queue now holds the id.
 * @throws {TypeError} for an unknown kind, or a name that is not one of the kind's naming.
 */
export function lookUp(ffi: Native, kind: ObjectKind, name: string, key?: number): Lookup {
  return descriptor(kind).lookUp(ffi, name, key);
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
 * console.log(sameObject("unix", made, made)); // true
 * console.log(sameObject("unix", made, { ...made, ctime: "1700000001.000000000" })); // false: made again
 * console.log(sameObject("mq", made, { ...made, ctime: "1700000001.000000000" })); // true: a send moved it
 * ```
 */
export function sameObject(kind: ObjectKind, recorded: ObjectIdentity, now: ObjectIdentity): boolean {
  if (recorded.dev !== now.dev || recorded.ino !== now.ino) return false;
  if (recorded.btime !== undefined && now.btime !== undefined) return recorded.btime === now.btime;
  return descriptor(kind).ctimeMoves ? nanos(now.ctime) >= nanos(recorded.ctime) : now.ctime === recorded.ctime;
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
