/**
 * Owner records: a registry of the named OS objects ipckit creates (shared memory segments, message queues,
 * semaphores, FIFOs, socket files, System V queues), so that `ipckit ls` and `ipckit clean` can find what a process
 * that died left behind, and tell it from what a live process still uses.
 *
 * Each object gets one small JSON file in the registry directory, written when ipckit creates (or binds) the object
 * and removed by whichever process removes the object. A record holds the kind, the name or absolute path, the
 * creator's pid and its start time (field 22 of `/proc/<pid>/stat` on Linux, so a reused pid is not taken for the
 * owner), the runtime and the creation time. Its file name is the kind and a hash of the name.
 *
 * The directory: `IPCKIT_REGISTRY` when set (`off` turns records off), else `$XDG_RUNTIME_DIR/ipckit`, else
 * `<tmpdir>/ipckit-<uid>`; the default ones are made with mode 0700 and used only if they are real directories
 * owned by this user and writable by no one else. Writing or removing a record is a few synchronous system calls at
 * create/remove time only (never on a send or receive path), and a failure there never fails the create.
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * for (const r of await resources.list()) console.log(r.kind, r.name, r.pid, r.status);
 * const report = await resources.clean({ dryRun: true }); // what a clean would remove
 * console.log(report.removed.length);
 * ```
 *
 * @module
 */
import { ESRCH, O_NONBLOCK, O_RDONLY } from "./ffi/constants.ts";
import { ERRNO, errnoError } from "./ffi/errno.ts";
import { type Native, native } from "./ffi/native.ts";
import { runtime } from "./runtimes/detect.ts";
import type { Runtime } from "./runtimes/runtime.ts";
import { type Kind, KINDS, locate, parseStat, PATH_KINDS, recordFile } from "./registry.ts";

export { type Kind, KINDS, type Location, location, useRegistry } from "./registry.ts";

/** One recorded object, as `list()` finds it. */
export interface Resource {
  readonly kind: Kind;
  /** The POSIX name (`/jobs`), the absolute path (FIFOs and sockets), or the queue id as a string (sysv). */
  readonly name: string;
  /** System V only: the queue's key (0 for a private queue). */
  readonly key?: number;
  /** System V only: the queue's id. */
  readonly id?: number;
  /** The creating process. */
  readonly pid: number;
  /** Its runtime, as it recorded it. */
  readonly runtime: string;
  /** When the object was created, in milliseconds since the epoch. */
  readonly created: number;
  /** Whether the creating process still runs (the same process: its start time is checked where known). */
  readonly owner: "alive" | "dead";
  /** Whether the object is still there. A record whose object is gone is stale. */
  readonly exists: boolean;
  /** `stale` when the object is gone, else the owner's state. */
  readonly status: "alive" | "dead" | "stale";
  /** The record's file. */
  readonly record: string;
}

/** Options of {@linkcode list} and {@linkcode clean}. */
export interface ListOptions {
  /** The registry directory to read; this process's location by default. */
  dir?: string;
}

/** Options of {@linkcode clean}. */
export interface CleanOptions extends ListOptions {
  /** Report what would be removed, remove nothing. */
  dryRun?: boolean;
}

/** What {@linkcode clean} did (or, with `dryRun`, would do). */
export interface CleanReport {
  /** Objects of dead owners that were removed, with their records. */
  readonly removed: Resource[];
  /** Stale records (their object was gone already) that were dropped. */
  readonly dropped: Resource[];
  /** Objects that could not be removed, with the reason; their records stay. */
  readonly failed: { resource: Resource; error: string }[];
  /** Objects of live owners, left alone. */
  readonly kept: Resource[];
}

// ---- the reading side

interface Stored {
  kind: Kind;
  name: string;
  key?: number;
  id?: number;
  pid: number;
  start: number | null;
  runtime: string;
  created: number;
}

function validPosixName(name: string): boolean {
  return name.length >= 2 && name.length <= 255 && name.startsWith("/") && name.indexOf("/", 1) < 0 &&
    !name.includes("\0");
}

/** A record's content, checked field by field; undefined for anything else (never trusted further). */
function parseRecord(text: string, file: string): Stored | undefined {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (r === null || typeof r !== "object") return undefined;
  const { kind, name, pid, start, runtime, created, key, id } = r;
  if (typeof kind !== "string" || !(KINDS as readonly string[]).includes(kind)) return undefined;
  if (typeof name !== "string" || name === "" || name.includes("\0")) return undefined;
  // A pid of 0 or below would make kill() address a process group: refuse.
  if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 0) return undefined;
  if (start !== null && (typeof start !== "number" || !Number.isSafeInteger(start))) return undefined;
  if (typeof created !== "number" || !Number.isFinite(created)) return undefined;
  const k = kind as Kind;
  if (file !== recordFile(k, name)) return undefined; // filed under another name: not one of ours
  if (k === "sysv") {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || String(id) !== name) return undefined;
    if (typeof key !== "number" || !Number.isSafeInteger(key)) return undefined;
  } else if (PATH_KINDS.has(k) ? !name.startsWith("/") : !validPosixName(name)) {
    return undefined;
  }
  return {
    kind: k,
    name,
    ...(k === "sysv" ? { key: key as number, id: id as number } : {}),
    pid,
    start: start as number | null,
    runtime: typeof runtime === "string" ? runtime : "?",
    created,
  };
}

const IPC_RMID = 0, IPC_STAT = 2, MSQID_DS = 120;

/** Whether the recorded object is still there (and, for paths, of its recorded type). */
async function objectExists(rt: Runtime, ffi: Native, r: Stored): Promise<boolean> {
  const { call } = ffi;
  const gone = () => ffi.errno() === ERRNO.ENOENT; // anything else (EACCES...): assume it is there
  switch (r.kind) {
    case "shm": {
      const fd = call.shm_open(ffi.cstring(r.name), O_RDONLY, 0);
      if (fd >= 0) call.close(fd);
      return fd >= 0 || !gone();
    }
    case "mq": {
      if (typeof call.mq_open !== "function") return false;
      const fd = call.mq_open(ffi.cstring(r.name), O_RDONLY | O_NONBLOCK, 0, null);
      if (fd >= 0) call.mq_close(fd);
      return fd >= 0 || !gone();
    }
    case "sem": {
      const sem = call.sem_open(ffi.cstring(r.name), 0, 0, 0);
      if (sem !== 0) call.sem_close(sem);
      return sem !== 0 || !gone();
    }
    case "sysv": {
      const stat = new Int32Array(MSQID_DS / 4);
      if (call.msgctl(r.id!, IPC_STAT, stat) < 0) {
        const errno = ffi.errno();
        return !(errno === ERRNO.EINVAL || errno === ERRNO.EIDRM);
      }
      return stat[0] === r.key; // ipc_perm.__key: another queue may have taken the id since
    }
    default: {
      const info = await rt.fileInfo(r.name).catch(() => undefined);
      return info?.type === (r.kind === "fifo" ? "fifo" : "socket");
    }
  }
}

/** Whether `pid` is the process that wrote the record: it exists, is not a zombie, and started when recorded. */
async function ownerAlive(rt: Runtime, ffi: Native, pid: number, start: number | null): Promise<boolean> {
  if (ffi.call.kill(pid, 0) !== 0 && ffi.errno() === ESRCH) return false;
  let text: string;
  try {
    text = await rt.readTextFile(`/proc/${pid}/stat`);
  } catch {
    return start === null; // no /proc (macOS: trust kill) or the process ended since
  }
  const stat = parseStat(text);
  if (stat === undefined) return true;
  if (stat.state === "Z" || stat.state === "X") return false;
  return start === null || stat.start === start;
}

async function registryDir(rt: Runtime, ffi: Native, dir: string | undefined): Promise<string | undefined> {
  return dir ?? (await locate(rt, ffi)).dir;
}

/**
 * Lists the recorded objects, checking for each whether it still exists and whether its creator still runs.
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * for (const r of await resources.list()) console.log(r.kind, r.name, r.pid, r.status); // status: alive or dead
 * ```
 *
 * @param options.all also list stale records (objects already gone).
 * @returns the resources, oldest first. Records that are not well-formed, or not this user's, are skipped.
 */
export async function list(options: ListOptions & { all?: boolean } = {}): Promise<Resource[]> {
  const [rt, ffi] = await Promise.all([runtime(), native()]);
  const dir = await registryDir(rt, ffi, options.dir);
  if (dir === undefined) return [];
  let names: string[];
  try {
    names = await rt.readDir(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return [];
    throw e;
  }
  const uid = ffi.call.getuid();
  const owners = new Map<string, Promise<boolean>>();
  const found: Resource[] = [];
  for (const file of names.filter((n) => n.endsWith(".json")).sort()) {
    const path = `${dir}/${file}`;
    const info = await rt.fileInfo(path).catch(() => undefined);
    if (info?.type !== "file" || info.uid !== uid) continue;
    let stored: Stored | undefined;
    try {
      stored = parseRecord(await rt.readTextFile(path), file);
    } catch {
      continue; // removed while we looked
    }
    if (stored === undefined) continue;
    const who = `${stored.pid}:${stored.start}`;
    if (!owners.has(who)) owners.set(who, ownerAlive(rt, ffi, stored.pid, stored.start));
    const alive = await owners.get(who)!;
    const exists = await objectExists(rt, ffi, stored);
    if (!exists && !options.all) continue;
    const { start: _start, ...shown } = stored;
    found.push({
      ...shown,
      owner: alive ? "alive" : "dead",
      exists,
      status: exists ? (alive ? "alive" : "dead") : "stale",
      record: path,
    });
  }
  return found.sort((a, b) => a.created - b.created);
}

/** Removes a dead owner's object; a path is removed only if it still is a FIFO/socket. */
async function removeObject(rt: Runtime, ffi: Native, r: Resource): Promise<void> {
  const { call } = ffi;
  const check = (result: number, what: string) => {
    if (result !== 0 && ffi.errno() !== ERRNO.ENOENT) throw errnoError(ffi.errno(), what);
  };
  switch (r.kind) {
    case "shm":
      return check(call.shm_unlink(ffi.cstring(r.name)), `unlink shared memory "${r.name}"`);
    case "mq":
      return check(call.mq_unlink(ffi.cstring(r.name)), `unlink message queue "${r.name}"`);
    case "sem":
      return check(call.sem_unlink(ffi.cstring(r.name)), `unlink semaphore "${r.name}"`);
    case "sysv": {
      const stat = new Int32Array(MSQID_DS / 4);
      if (call.msgctl(r.id!, IPC_STAT, stat) < 0 || stat[0] !== r.key) return; // gone, or someone else's now
      if (call.msgctl(r.id!, IPC_RMID, null) < 0) {
        const errno = ffi.errno();
        if (errno !== ERRNO.EINVAL && errno !== ERRNO.EIDRM) throw errnoError(errno, `remove System V queue ${r.id}`);
      }
      return;
    }
    default: {
      const info = await rt.fileInfo(r.name);
      if (info?.type === (r.kind === "fifo" ? "fifo" : "socket")) await rt.removeFile(r.name);
    }
  }
}

/**
 * Removes the objects whose creator is dead, with their records, and drops stale records. Objects of live
 * creators are never touched. A FIFO or socket path is removed only if it is still a FIFO or a socket.
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * const report = await resources.clean({ dryRun: true }); // what `ipckit clean` would remove
 * console.log(report.removed.map((r) => `${r.kind} ${r.name} (pid ${r.pid})`));
 * ```
 *
 * @param options.dryRun report only.
 */
export async function clean(options: CleanOptions = {}): Promise<CleanReport> {
  const [rt, ffi] = await Promise.all([runtime(), native()]);
  const dir = await registryDir(rt, ffi, options.dir);
  const report: CleanReport = { removed: [], dropped: [], failed: [], kept: [] };
  if (dir === undefined) return report;
  for (const r of await list({ dir, all: true })) {
    if (r.exists && r.owner === "alive") {
      report.kept.push(r);
      continue;
    }
    if (!options.dryRun) {
      try {
        if (r.exists) await removeObject(rt, ffi, r);
        await rt.removeFile(r.record);
      } catch (e) {
        report.failed.push({ resource: r, error: (e as Error).message });
        continue;
      }
    }
    (r.exists ? report.removed : report.dropped).push(r);
  }
  return report;
}
