/**
 * Liveness: whether the process (or thread) that a record, a ring header, a HELLO or a lock word names is still the
 * one that wrote it. One check for the whole library: channels use it to notice a dead peer, the robust Mutex to
 * notice a dead owner, `ipckit clean` to tell a dead creator from a live one.
 *
 * `kill(pid, 0)` alone is not enough, and this module exists to say why:
 * - a **zombie** (a killed process its parent has not reaped yet) still answers `kill(pid, 0)`, though it will
 *   never write again;
 * - a **reused pid** answers for an unrelated process: pids wrap (at `pid_max`, 32768 by default), so a peer that
 *   died may be "alive" under someone else's name.
 *
 * So an identity is a pair: the id (a pid, or a thread's tid: `/proc/<tid>` exists for threads too) and its **start
 * time** (field 22 of `/proc/<id>/stat`, clock ticks after boot), which no two processes that held the same id share.
 * In shared memory and in wire records the start time travels as a 32-bit **tag**: the start time modulo 2^32, with
 * 0 read as "unknown" (a start time that is 0 modulo 2^32 is stored as 1). At 100 ticks a second, 2^32 ticks are 497
 * days: two processes with the same id and the same tag would have to start that far apart.
 *
 * The check, `alive(id, tag)`:
 * 1. `/proc/<id>/stat` cannot be opened because it does not exist: dead.
 * 2. Its state is `Z` (zombie) or `X` (dead): dead.
 * 3. A tag was given and the process's start time does not match it: dead (the id was reused).
 * 4. Otherwise alive. Where there is no `/proc` (macOS) or it cannot be read (a `hidepid` mount), `kill(id, 0)`
 *    decides, as before: zombies and reused pids are then not told apart.
 *
 * Cost: an open, a read and a close (a few microseconds); callers check on their slow path only (a queue found
 * empty, a lock found held, at most every 100-250 ms while they wait).
 *
 * @module
 */
import { ESRCH, O_CLOEXEC, O_RDONLY, SYS_gettid } from "../ffi/constants.ts";
import { ERRNO } from "../ffi/errno.ts";
import { loadedNative, type Native, native } from "../ffi/native.ts";
import { NotFoundError, UnsupportedError } from "../errors.ts";

/** A process or thread, as liveness checks see it. */
export interface Identity {
  /** The pid, or a thread's tid. */
  readonly id: number;
  /** The start-time tag (see the module doc); 0 when unknown. */
  readonly tag: number;
}

/** What `/proc/<id>/stat` says of a process or thread. */
export interface ProcStat {
  /** The state letter: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead)... */
  readonly state: string;
  /** Start time in clock ticks after boot. */
  readonly start: number;
}

const TWO_32 = 2 ** 32;

/**
 * The state letter and start time in the text of `/proc/<id>/stat`, or undefined when the text is not one. The
 * command name (field 2) may hold spaces and parentheses: the fields after it start after the last `)`.
 */
export function parseStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).split(" "); // fields 3 (state) onwards
  const start = Number(fields[19]);
  return fields[0] && Number.isSafeInteger(start) && start >= 0 ? { state: fields[0], start } : undefined;
}

/** The 32-bit tag of a start time (never 0: 0 means unknown). */
export function tagOf(start: number): number {
  return start % TWO_32 || 1;
}

const statBuffer = new Uint8Array(1024);
const latin1 = new TextDecoder("latin1");

/**
 * Reads `/proc/<id>/stat`: the stat, `null` when there is no such process or thread, `undefined` when it cannot
 * tell (no `/proc`, not readable).
 */
export function readStat(ffi: Native, id: number): ProcStat | null | undefined {
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  const fd = ffi.call.open(ffi.cstring(`/proc/${id}/stat`), O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) {
    const errno = ffi.errno();
    // ENOENT: no such process, or no /proc at all (told apart once). EACCES and the rest: cannot tell.
    return errno === ERRNO.ENOENT || errno === ESRCH ? (procMounted(ffi) ? null : undefined) : undefined;
  }
  try {
    const n = ffi.call.read(fd, statBuffer, statBuffer.byteLength);
    // ESRCH on read: the process ended between the open and the read.
    if (n <= 0) return n === 0 ? undefined : ffi.errno() === ESRCH ? null : undefined;
    return parseStat(latin1.decode(statBuffer.subarray(0, n))) ?? undefined;
  } finally {
    ffi.call.close(fd);
  }
}

let proc: boolean | undefined;

function procMounted(ffi: Native): boolean {
  if (proc === undefined) {
    const fd = ffi.call.open(ffi.cstring("/proc/self/stat"), O_RDONLY | O_CLOEXEC, 0);
    proc = fd >= 0;
    if (fd >= 0) ffi.call.close(fd);
  }
  return proc;
}

/** The loaded FFI, or a clear error: the synchronous checks cannot load it themselves. */
function loaded(ffi: Native | undefined): Native {
  const f = ffi ?? loadedNative();
  if (f === undefined) {
    throw new UnsupportedError("Cannot check liveness: FFI is not loaded yet (use `await liveness.identify()` first)");
  }
  return f;
}

/**
 * Whether `id` (a pid or tid) still names the process or thread tagged `tag` (0: any process with that id), and it
 * is not a zombie. See the module doc for the rules. Synchronous, for the library's slow paths; the async
 * {@linkcode isAlive} loads FFI itself.
 *
 * @throws {UnsupportedError} when FFI is not loaded yet.
 */
export function alive(id: number, tag = 0, ffi?: Native): boolean {
  const f = loaded(ffi);
  const stat = readStat(f, id);
  if (stat === null) return false;
  if (stat === undefined) return f.call.kill(id, 0) === 0 || f.errno() !== ESRCH;
  if (stat.state === "Z" || stat.state === "X") return false;
  return tag === 0 || tagOf(stat.start) === tag;
}

/**
 * Who process `pid` is now (this process when omitted): its pid and start-time tag, to store beside the pid and check
 * later with {@linkcode isAlive}.
 *
 * @throws {NotFoundError} when there is no such process.
 * @throws {RangeError} when `pid` is not a positive integer.
 *
 * @example
 * ```ts
 * import { liveness } from "ipckit";
 * const me = await liveness.identify();
 * console.log(await liveness.isAlive(me)); // true
 * console.log(await liveness.isAlive({ id: me.id, tag: me.tag + 1 })); // false: an earlier process with this pid
 * ```
 */
export async function identify(pid?: number): Promise<Identity> {
  const ffi = await native();
  if (pid === undefined) return self(ffi);
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new RangeError(`Cannot identify pid ${pid}: it must be positive`);
  const stat = readStat(ffi, pid);
  if (stat === null) throw new NotFoundError(`Cannot identify pid ${pid}: there is no such process`);
  return { id: pid, tag: stat ? tagOf(stat.start) : 0 };
}

/**
 * Whether a process (or thread) still lives: a pid alone (then a zombie counts as dead, a reused pid as alive), or
 * an {@linkcode Identity} from {@linkcode identify} (then a reused pid counts as dead too).
 *
 * @example
 * ```ts
 * import { liveness } from "ipckit";
 * console.log(await liveness.isAlive(1)); // true: init always runs
 * ```
 */
export async function isAlive(who: Identity | number): Promise<boolean> {
  const ffi = await native();
  return typeof who === "number" ? alive(who, 0, ffi) : alive(who.id, who.tag, ffi);
}

let selfCache: { pid: number; identity: Identity } | undefined;

/**
 * This process: its pid and start-time tag (tag 0 where there is no `/proc`).
 *
 * @throws {UnsupportedError} when FFI is not loaded yet (callers have a mapped segment or an open queue, so it is).
 */
export function self(ffi?: Native): Identity {
  const f = loaded(ffi);
  const pid = f.call.getpid();
  if (selfCache?.pid !== pid) {
    const stat = readStat(f, pid);
    selfCache = { pid, identity: { id: pid, tag: stat ? tagOf(stat.start) : 0 } };
  }
  return selfCache.identity;
}

let threadCache: { pid: number; identity: Identity } | undefined;

/**
 * This thread: its kernel tid (the pid on a main thread) and start-time tag. Each worker thread has its own, so a
 * lock held by a terminated worker is told from one held by its live siblings.
 *
 * @throws {UnsupportedError} when FFI is not loaded yet.
 */
export function selfThread(ffi?: Native): Identity {
  const f = loaded(ffi);
  const pid = f.call.getpid();
  if (threadCache?.pid !== pid) {
    const tid = Number(f.call.syscall(SYS_gettid, null, 0, 0, null, null, 0));
    const id = tid > 0 ? tid : pid;
    const stat = readStat(f, id);
    threadCache = { pid, identity: { id, tag: stat ? tagOf(stat.start) : 0 } };
  }
  return threadCache.identity;
}

/**
 * The start-time tag of process or thread `id` now (0 when it does not exist or cannot be read): what a peer
 * stores beside an id it was told.
 *
 * @throws {UnsupportedError} when FFI is not loaded yet.
 */
export function tagOfId(id: number, ffi?: Native): number {
  const stat = readStat(loaded(ffi), id);
  return stat ? tagOf(stat.start) : 0;
}
