/**
 * Owner records: a registry of the named OS objects ipckit creates (shared memory segments, message queues,
 * semaphores, FIFOs, socket files, System V queues), so that `ipckit ls` and `ipckit clean` can find what a process
 * that died left behind, and tell it from what a live process still uses.
 *
 * Each object gets one small JSON file in the registry directory, written when ipckit creates (or binds) the object
 * and removed by whichever process removes the object. A record holds the kind, the name or absolute path, the
 * object's **identity** (device, inode and change/birth times, or a System V queue's id, key and `msg_ctime`: see
 * `os/identity.ts`), the creator's pid and its start time (so a reused pid is not taken for the owner), the runtime
 * and the creation time. Its file name is the kind and a hash of the name.
 *
 * `clean()` removes an object only when all of this holds: the record is well-formed and this user's, its creator is
 * dead (gone, a zombie, or its pid now names another process: `os/liveness.ts`), and the object found under the name
 * now is the very object recorded (same identity). An object that another program made under the same name later
 * is left alone (the stale record is dropped). A record without an identity (written by ipckit before records had
 * one) is only reported: `clean({ force: true })` (`ipckit clean --force`) removes such objects after the checks of
 * old (a FIFO or socket path must still be one; a System V queue must still have its key).
 *
 * Nothing here knows a kind of object: looking an object up, telling its file type and removing it are its
 * descriptor's (`os/named.ts`), found in the one list `os/named_kinds.ts`.
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
import { type Native, native } from "./ffi/native.ts";
import { lookUp, type ObjectIdentity, parseIdentity, sameObject } from "./os/identity.ts";
import { alive, tagOf } from "./os/liveness.ts";
import { runtime } from "./runtimes/detect.ts";
import type { Runtime } from "./runtimes/runtime.ts";
import { validRecordedName } from "./os/named.ts";
import { namedKind } from "./os/named_kinds.ts";
import { type Kind, locate, recordFile } from "./registry.ts";

export { type Kind, KINDS, type Location, location, useRegistry } from "./registry.ts";

/**
 * What is under a record's name now:
 * - `same`: the recorded object (its identity matches);
 * - `replaced`: another object took the name (another identity, or for a path another file type);
 * - `gone`: nothing;
 * - `unverified`: something of the right kind, but it cannot be told from another object (the record has no
 *   identity, from an older ipckit, or the object cannot be examined).
 */
export type ObjectState = "same" | "replaced" | "gone" | "unverified";

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
  /** Whether the creating process still runs (the same process: not a zombie, its start time checked). */
  readonly owner: "alive" | "dead";
  /** Whether the recorded object is still there (`object` is `same` or `unverified`). */
  readonly exists: boolean;
  /** What is under the name now; see {@linkcode ObjectState}. */
  readonly object: ObjectState;
  /** `stale` when the recorded object is gone (or replaced), else the owner's state. */
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
  /**
   * Also remove dead owners' objects whose record has no identity to check (records of older ipckit versions):
   * such an object may be another program's that took the name since. False by default.
   */
  force?: boolean;
}

/** What {@linkcode clean} did (or, with `dryRun`, would do). */
export interface CleanReport {
  /** Objects of dead owners that were removed, with their records. */
  readonly removed: Resource[];
  /** Stale records that were dropped: their object was gone, or another object has the name now (left alone). */
  readonly dropped: Resource[];
  /** Objects that could not be removed, with the reason; their records stay. */
  readonly failed: { resource: Resource; error: string }[];
  /** Objects of live owners, left alone. */
  readonly kept: Resource[];
  /** Dead owners' objects that could not be verified (no identity in the record): left alone unless `force`. */
  readonly unverified: Resource[];
}

// ---- the reading side

interface Stored {
  kind: Kind;
  name: string;
  key?: number;
  id?: number;
  identity?: ObjectIdentity;
  pid: number;
  start: number | null;
  runtime: string;
  created: number;
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
  const { kind, name, pid, start, runtime, created, key, id, identity } = r;
  const d = typeof kind === "string" ? namedKind(kind) : undefined;
  if (d === undefined) return undefined;
  if (typeof name !== "string" || !validRecordedName(d, name)) return undefined;
  // A pid of 0 or below would make kill() address a process group: refuse.
  if (typeof pid !== "number" || !Number.isSafeInteger(pid) || pid <= 0) return undefined;
  if (start !== null && (typeof start !== "number" || !Number.isSafeInteger(start) || start < 0)) return undefined;
  if (typeof created !== "number" || !Number.isFinite(created)) return undefined;
  const k = d.kind;
  // Filed under another name: not one of ours. (An older kind word, OLD_KINDS, is filed under that word.)
  if (file !== recordFile(kind as Kind, name)) return undefined;
  const sysv = d.naming === "sysv";
  if (sysv) {
    if (typeof id !== "number" || !Number.isSafeInteger(id) || id < 0 || String(id) !== name) return undefined;
    if (typeof key !== "number" || !Number.isSafeInteger(key)) return undefined;
  }
  // An identity that is there but not well-formed makes the whole record suspect.
  const checked = identity === undefined ? undefined : parseIdentity(identity);
  if (identity !== undefined && checked === undefined) return undefined;
  if (checked !== undefined && sysv !== (checked.dev === undefined)) return undefined;
  return {
    kind: k,
    name,
    ...(sysv ? { key: key as number, id: id as number } : {}),
    ...(checked === undefined ? {} : { identity: checked }),
    pid,
    start: start as number | null,
    runtime: typeof runtime === "string" ? runtime : "?",
    created,
  };
}

/** What is under the record's name now, compared with what the record says was made there. */
function inspect(ffi: Native, r: Pick<Stored, "kind" | "name" | "key" | "identity">): ObjectState {
  const now = lookUp(ffi, r.kind, r.name, r.key);
  if (now.found === "none") return "gone";
  if (now.found === "unknown") return "unverified"; // there, but not ours to examine: never removed on a guess
  const { fileType } = namedKind(r.kind);
  if (fileType !== undefined && now.type !== fileType) return "replaced";
  if (r.identity === undefined) return "unverified";
  return sameObject(r.kind, r.identity, now.identity) ? "same" : "replaced";
}

/** Whether `pid` is the process that wrote the record: not gone, not a zombie, and started when recorded. */
function ownerAlive(ffi: Native, pid: number, start: number | null): boolean {
  return alive(pid, start === null ? 0 : tagOf(start), ffi);
}

async function registryDir(rt: Runtime, ffi: Native, dir: string | undefined): Promise<string | undefined> {
  return dir ?? (await locate(rt, ffi)).dir;
}

const stored = Symbol("stored");

/** A listed resource with what `clean` needs to re-check it just before removing. */
interface Found extends Resource {
  readonly [stored]: Stored;
}

async function find(rt: Runtime, ffi: Native, dir: string, all: boolean): Promise<Found[]> {
  let names: string[];
  try {
    names = await rt.readDir(dir);
  } catch (e) {
    if ((e as { code?: string }).code === "ENOENT") return [];
    throw e;
  }
  const uid = ffi.call.getuid();
  const owners = new Map<string, boolean>();
  const found: Found[] = [];
  for (const file of names.filter((n) => n.endsWith(".json")).sort()) {
    const path = `${dir}/${file}`;
    const info = await rt.fileInfo(path).catch(() => undefined);
    if (info?.type !== "file" || info.uid !== uid) continue;
    let r: Stored | undefined;
    try {
      r = parseRecord(await rt.readTextFile(path), file);
    } catch {
      continue; // removed while we looked
    }
    if (r === undefined) continue;
    const who = `${r.pid}:${r.start}`;
    if (!owners.has(who)) owners.set(who, ownerAlive(ffi, r.pid, r.start));
    const alive = owners.get(who)!;
    const object = inspect(ffi, r);
    const exists = object === "same" || object === "unverified";
    if (!exists && !all) continue;
    const { start: _start, identity: _identity, ...shown } = r;
    found.push({
      ...shown,
      owner: alive ? "alive" : "dead",
      exists,
      object,
      status: exists ? (alive ? "alive" : "dead") : "stale",
      record: path,
      [stored]: r,
    });
  }
  return found.sort((a, b) => a.created - b.created);
}

/**
 * Lists the recorded objects, checking for each whether it is still the object recorded and whether its creator
 * still runs.
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * for (const r of await resources.list()) console.log(r.kind, r.name, r.pid, r.status); // status: alive or dead
 * ```
 *
 * @param options.all also list stale records (objects gone, or replaced by another object of the same name).
 * @returns the resources, oldest first. Records that are not well-formed, or not this user's, are skipped.
 */
export async function list(options: ListOptions & { all?: boolean } = {}): Promise<Resource[]> {
  const [rt, ffi] = await Promise.all([runtime(), native()]);
  const dir = await registryDir(rt, ffi, options.dir);
  if (dir === undefined) return [];
  return (await find(rt, ffi, dir, options.all === true)).map(({ [stored]: _, ...r }) => r);
}

/**
 * Removes a dead owner's object, re-checking right before it (synchronously, so the window in which another
 * program could replace the object is a few system calls long) that it is still the recorded one.
 *
 * @returns false when it is not the same object any more (left alone).
 */
function removeObject(ffi: Native, r: Stored, force: boolean): boolean {
  const state = inspect(ffi, r);
  if (state === "gone") return true;
  if (state === "replaced" || (state === "unverified" && !force)) return false;
  namedKind(r.kind).remove(ffi, r.name);
  return true;
}

/**
 * Removes the objects whose creator is dead and that are still the objects recorded, with their records, and drops
 * stale records. Objects of live creators are never touched, nor objects that another program made under a
 * recorded name, nor (without `force`) objects whose record holds no identity to check.
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * const report = await resources.clean({ dryRun: true }); // what `ipckit clean` would remove
 * console.log(report.removed.map((r) => `${r.kind} ${r.name} (pid ${r.pid})`));
 * console.log(report.unverified.length); // objects of older records, removed only with { force: true }
 * ```
 *
 * @param options.dryRun report only.
 * @param options.force also remove dead owners' objects recorded without an identity (older records).
 */
export async function clean(options: CleanOptions = {}): Promise<CleanReport> {
  const [rt, ffi] = await Promise.all([runtime(), native()]);
  const dir = await registryDir(rt, ffi, options.dir);
  const report: CleanReport = { removed: [], dropped: [], failed: [], kept: [], unverified: [] };
  if (dir === undefined) return report;
  const force = options.force === true;
  for (const { [stored]: r, ...resource } of await find(rt, ffi, dir, true)) {
    if (resource.exists && resource.owner === "alive") {
      report.kept.push(resource);
      continue;
    }
    if (resource.object === "unverified" && !force) {
      report.unverified.push(resource);
      continue;
    }
    let removed = resource.exists;
    if (!options.dryRun) {
      try {
        if (resource.exists) removed = removeObject(ffi, r, force);
        await rt.removeFile(resource.record);
      } catch (e) {
        report.failed.push({ resource, error: (e as Error).message });
        continue;
      }
    }
    if (removed) report.removed.push(resource);
    // Gone before we looked: the record says so; there a moment ago: another object took the name since.
    else if (!resource.exists) report.dropped.push(resource);
    else report.dropped.push({ ...resource, exists: false, object: "replaced", status: "stale" });
  }
  return report;
}
