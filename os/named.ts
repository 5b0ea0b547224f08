/**
 * The named-object descriptor: what every kind of named OS object ipckit makes (a shared memory segment, a POSIX or
 * System V message queue, a named semaphore, a FIFO, a socket file) tells the rest of the library about itself, so
 * that the owner records (`registry.ts`), their checks (`os/identity.ts`) and `ipckit ls` / `ipckit clean`
 * (`resources.ts`) loop over one list (`os/named_kinds.ts`) instead of switching on the kind in three places.
 *
 * Modelled on iceoryx2's `NamedConceptMgmt` (`does_exist`, `remove`, `list` per concept). Each OS-level module
 * exports one {@linkcode NamedKind}; the descriptor works on names only and needs no handle, so a process can look
 * up or remove what another process (of any runtime, or a dead one) left behind.
 *
 * The contract every descriptor keeps:
 * - `lookUp` is synchronous (a few system calls), never throws for a missing object (`{ found: "none" }`), and
 *   reports something it cannot examine (EACCES...) as `{ found: "unknown" }`: such an object is never removed on a
 *   guess. For path kinds it does not follow a final symbolic link, and it reports the file type found.
 * - `remove` removes the name (never through a handle), returns false when nothing was there (ENOENT, or EINVAL /
 *   EIDRM for a System V id), and throws the `errnoError` of anything else (`Cannot unlink ...: ...`).
 * - `lookUp` and `remove` throw a `TypeError` for a name that is not of the kind's naming ({@linkcode defineNamedKind}
 *   adds that check), before any system call.
 * - `list`, where the OS can enumerate the kind, returns the names as `lookUp` and `remove` take them; it is absent
 *   where it cannot (a path may be anywhere in the file system).
 *
 * Adding a named kind: one module exporting its descriptor, one entry in `os/named_kinds.ts`, one fixture line in
 * `tests/named.test.ts`.
 *
 * @module
 */
import { errnoError, errnoName } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import type { Runtime } from "../runtimes/runtime.ts";

/**
 * A recorded identity. Times are `"<seconds>.<9 digits of nanoseconds>"` (System V: whole seconds), device
 * `"<major>:<minor>"`, inode a decimal string (inode numbers may exceed 2^53). See `os/identity.ts` for when two
 * identities are the same object.
 */
export interface ObjectIdentity {
  readonly dev?: string;
  readonly ino?: string;
  readonly ctime: string;
  readonly btime?: string;
}

/** The file type of a path-named object, from `stx_mode`. */
export type FileType = "fifo" | "socket" | "other";

/** What a look-up found under a name. */
export type Lookup =
  | {
    readonly found: "object";
    readonly identity: ObjectIdentity;
    /** The file type, for objects that are files (path kinds, segments, queues, semaphores). */
    readonly type?: FileType;
    /** The permission bits (`0o600`...), where the OS reports them. */
    readonly mode?: number;
  }
  | { readonly found: "none" }
  /** There is something, but it could not be examined (EACCES...): never removed on a guess. */
  | { readonly found: "unknown"; readonly errno: number };

/**
 * How the objects of a kind are named:
 * - `posix`: a POSIX IPC name, `/` then 1 to 254 characters without another `/` (`/jobs`);
 * - `path`: a file-system path, absolute in records (relative ones are resolved against the current directory);
 * - `sysv`: a System V id as a decimal string, checked against the key it was made with.
 */
export type Naming = "posix" | "path" | "sysv";

/**
 * One kind of named OS object, described once by the module that owns the object.
 *
 * @example
 * ```ts
 * import { native } from "../ffi/native.ts";
 * import { shmName } from "./shm_name.ts";
 * const ffi = await native();
 * console.log(shmName.label, shmName.exists(ffi, "/surely-not-there")); // shared memory segment false
 * ```
 */
export interface NamedKind<K extends string = string> {
  /** The record kind: a short stable word, part of record file names and of `ipckit ls` output (`shm`, `mq`...). */
  readonly kind: K;
  /** What the object is called in messages and listings (`shared memory segment`, `FIFO`...). */
  readonly label: string;
  /** How its objects are named; see {@linkcode Naming}. */
  readonly naming: Naming;
  /**
   * Path kinds: the file type a path must have to be this kind's object (another type under the path means another
   * object took the name).
   */
  readonly fileType?: FileType;
  /**
   * Whether normal use moves the object's ctime forward (a message queue's moves with every send and receive): the
   * identity check then accepts a newer ctime (see `os/identity.ts`).
   */
  readonly ctimeMoves: boolean;
  /**
   * Looks up the object named `name` now: its identity, file type and mode, or that there is none.
   *
   * @param key System V only: the key the queue must have; another key means another queue now holds the id.
   * @throws {TypeError} for a name that is not of this kind's naming.
   */
  lookUp(ffi: Native, name: string, key?: number): Lookup;
  /**
   * Whether there is an object under `name` now (also one that cannot be examined): a look-up that found something.
   *
   * @throws {TypeError} for a name that is not of this kind's naming.
   */
  exists(ffi: Native, name: string, key?: number): boolean;
  /**
   * Removes the object named `name` (its name: open handles elsewhere keep working where the OS allows it).
   *
   * @returns true when it removed something, false when nothing was there.
   * @throws {IpcError} the errno's error class (`PermissionError`...) when the OS refuses.
   * @throws {TypeError} for a name that is not of this kind's naming.
   */
  remove(ffi: Native, name: string): boolean;
  /**
   * The names of all objects of this kind the OS shows (of every user), where it can enumerate them; absent where
   * it cannot. Never rejects: an OS without the directory lists nothing.
   */
  list?(rt: Runtime): Promise<string[]>;
}

/**
 * Whether `name` is a valid POSIX IPC name: `/`, then 1 to 254 characters without `/` or NUL.
 *
 * @example
 * ```ts
 * import { validPosixName } from "./named.ts";
 * console.log(validPosixName("/jobs"), validPosixName("jobs"), validPosixName("/a/b")); // true false false
 * ```
 */
export function validPosixName(name: string): boolean {
  return name.length >= 2 && name.length <= 255 && name.startsWith("/") && name.indexOf("/", 1) < 0 &&
    !name.includes("\0");
}

/** Why `name` is not a valid name of `naming`, or "" when it is one (paths may be relative here). */
function nameProblem(naming: Naming, name: string): string {
  if (typeof name !== "string") return "the name is not a string";
  if (name === "" || name.includes("\0")) return "the name is empty or holds a NUL byte";
  switch (naming) {
    case "posix":
      return validPosixName(name) ? "" : 'not a POSIX name ("/" then 1 to 254 characters without "/")';
    case "path":
      return "";
    case "sysv":
      return /^(0|[1-9]\d{0,9})$/.test(name) && Number(name) <= 0x7fffffff ? "" : "not a System V queue id";
  }
}

/**
 * Whether `name` is well-formed for `kind`'s naming, as a record holds it: a POSIX name, an absolute path, or a
 * System V id (a non-negative decimal integer).
 */
export function validRecordedName(kind: NamedKind, name: string): boolean {
  return nameProblem(kind.naming, name) === "" && (kind.naming !== "path" || name.startsWith("/"));
}

/** What a descriptor's module writes: {@linkcode defineNamedKind} adds `exists` and the name checks. */
export type NamedKindSpec<K extends string> = Omit<NamedKind<K>, "exists">;

/**
 * A descriptor whose `lookUp` and `remove` first check the name against its naming, so that a bad name is a
 * `TypeError` (and never, say, a System V id of `NaN` that the FFI would pass as queue 0).
 *
 * @example
 * ```ts
 * import { defineNamedKind } from "./named.ts";
 * import { statPath } from "./stat.ts";
 * const logName = defineNamedKind({
 *   kind: "log",
 *   label: "log file",
 *   naming: "path",
 *   ctimeMoves: true,
 *   lookUp: (ffi, name) => statPath(ffi, name),
 *   remove: () => false,
 * });
 * console.log(logName.label); // "log file"
 * ```
 *
 * @throws {TypeError} from `lookUp` and `remove`, for a name that is not one of this naming.
 */
export function defineNamedKind<K extends string>(spec: NamedKindSpec<K>): NamedKind<K> {
  const check = (what: string, name: string) => {
    const problem = nameProblem(spec.naming, name);
    if (problem !== "") throw new TypeError(`Cannot ${what} ${spec.label} ${JSON.stringify(String(name))}: ${problem}`);
  };
  return Object.freeze({
    ...spec,
    lookUp(ffi: Native, name: string, key?: number): Lookup {
      check("look up", name);
      return spec.lookUp(ffi, name, key);
    },
    exists(ffi: Native, name: string, key?: number): boolean {
      check("look up", name);
      return spec.lookUp(ffi, name, key).found !== "none";
    },
    remove(ffi: Native, name: string): boolean {
      check("remove", name);
      return spec.remove(ffi, name);
    },
  });
}

/**
 * The outcome of an unlink-like call for a descriptor's `remove`: true when it removed something, false when
 * nothing was there (the `absent` errno names, ENOENT by default).
 *
 * @param rc the call's result (0 or -1).
 * @param what the message's action, `unlink shared memory "/jobs"` (the error reads `Cannot <what>: <reason>`).
 * @throws {IpcError} the errno's error class for any other failure.
 */
export function removed(ffi: Native, rc: number, what: string, absent: readonly string[] = ["ENOENT"]): boolean {
  if (rc === 0) return true;
  const errno = ffi.errno();
  if (absent.includes(errnoName(errno))) return false;
  throw errnoError(errno, what);
}

/**
 * The entries of directory `dir` that `pick` maps to a name (undefined skips the entry), sorted; nothing when the
 * directory cannot be read (not mounted, another OS).
 */
export async function listDir(
  rt: Runtime,
  dir: string,
  pick: (entry: string) => string | undefined,
): Promise<string[]> {
  let entries: string[];
  try {
    entries = await rt.readDir(dir);
  } catch {
    return [];
  }
  const names: string[] = [];
  for (const entry of entries) {
    const name = pick(entry);
    if (name !== undefined) names.push(name);
  }
  return names.sort();
}
