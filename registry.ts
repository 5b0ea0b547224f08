/**
 * The writing side of the owner records (see `resources.ts` for the reading side and the whole story): where this
 * process keeps its records, and the synchronous `register()`/`unregister()` that creators and removers call. A
 * record is written once per created object and removed once with it, never on a send or receive path.
 *
 * @module
 */
import { O_CLOEXEC, O_CREAT, O_TRUNC, O_WRONLY } from "./ffi/constants.ts";
import { loadedNative, type Native, native } from "./ffi/native.ts";
import { identify, type ObjectIdentity } from "./os/identity.ts";
import { parseStat } from "./os/liveness.ts";
import { type Kind as NamedKindName, NAMED_KINDS } from "./os/named_kinds.ts";
import { runtime } from "./runtimes/detect.ts";
import type { Runtime } from "./runtimes/runtime.ts";

/**
 * A process's state letter and start time (clock ticks after boot) from the text of `/proc/<pid>/stat`, or
 * undefined. The one parser is `os/liveness.ts`'s; this name is kept for older imports.
 */
export { parseStat };

/**
 * The kinds of objects recorded (`os/named_kinds.ts`). `unix` is a Unix stream listener's socket file, `unix_dgram`
 * a bound datagram socket's (records of older versions say `socket` and `dgram`: they are read as these).
 */
export type Kind = NamedKindName;

/**
 * Every kind, in display order (one per descriptor of `os/named_kinds.ts`).
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * console.log(resources.KINDS.join(", ")); // shm, mq, sem, fifo, unix, unix_dgram, sysv
 * ```
 */
export const KINDS: readonly Kind[] = NAMED_KINDS.map((d) => d.kind);

/** Kinds named by a file-system path (the others by a POSIX IPC name, or a System V id). */
export const PATH_KINDS: ReadonlySet<Kind> = new Set(NAMED_KINDS.filter((d) => d.naming === "path").map((d) => d.kind));

/** Where records are kept, or why they are not. */
export interface Location {
  /** The registry directory; undefined when records are off or the directory is not safe to use. */
  readonly dir: string | undefined;
  /** Why there is no directory (`IPCKIT_REGISTRY=off`, an unsafe directory); empty when there is one. */
  readonly reason: string;
}

// ---- this process's writer state, resolved once

interface Writer {
  readonly ffi: Native;
  readonly dir: string;
  readonly body: { pid: number; start: number | null; runtime: string };
}

/** undefined: not resolved yet; null: records are off (or unsafe) in this process. */
let writer: Writer | null | undefined;
let resolving: Promise<void> | undefined;
/** A location set by {@linkcode useRegistry}, over the environment. */
let override: string | undefined;
/** Bumped by useRegistry so a resolution started before it cannot install a stale writer. */
let generation = 0;

/**
 * Sets where this process writes and reads records, over `IPCKIT_REGISTRY`: a directory, `"off"`, or undefined for
 * the default again. Meant for tests and for programs that keep their own registry. Call it before creating
 * objects: records written earlier stay where they were (and a removal still pending goes to the new place).
 *
 * @example
 * ```ts
 * import { resources, runtime, SharedMemory } from "ipckit";
 * const rt = await runtime();
 * const dir = await rt.makeTempDir("my-registry-");
 * resources.useRegistry(dir);
 * using segment = await SharedMemory.create(`/my-app-${rt.pid}`, { size: 64 });
 * console.log((await resources.list()).map((r) => r.name)); // ["/my-app-<pid>"]
 * segment.unlink(); // the record goes with the name
 * resources.useRegistry(undefined); // back to IPCKIT_REGISTRY or the default
 * await rt.removeDir(dir);
 * ```
 */
export function useRegistry(dir: string | undefined): void {
  override = dir;
  writer = undefined;
  resolving = undefined;
  generation++;
}

/**
 * Resolves this process's registry (once; cheap afterwards) so that the next `register()` writes at once. Creators
 * await it before creating. Never rejects: when anything fails, records are simply off.
 *
 * @internal
 */
export function prepare(): Promise<void> {
  return (resolving ??= resolveWriter(generation));
}

async function resolveWriter(gen: number): Promise<void> {
  let w: Writer | null = null;
  try {
    const [rt, ffi] = await Promise.all([runtime(), native()]);
    const { dir } = await locate(rt, ffi);
    if (dir !== undefined) {
      w = { ffi, dir, body: { pid: rt.pid, start: await startTime(rt, rt.pid), runtime: rt.name } };
    }
  } catch {
    w = null;
  }
  if (gen === generation) writer = w;
}

function envVar(rt: Runtime, name: string): string | undefined {
  try {
    return rt.env(name) || undefined;
  } catch {
    return undefined; // Deno without --allow-env
  }
}

/** The registry location, after the rules in the module doc; makes the default directory (0700) if needed. */
export async function locate(rt: Runtime, ffi: Native): Promise<Location> {
  const chosen = override ?? envVar(rt, "IPCKIT_REGISTRY");
  if (chosen === "off") return { dir: undefined, reason: "records are off (IPCKIT_REGISTRY=off)" };
  const uid = ffi.call.getuid();
  const strict = chosen === undefined;
  const xdg = envVar(rt, "XDG_RUNTIME_DIR");
  let dir = chosen ?? (xdg ? `${xdg}/ipckit` : `${envVar(rt, "TMPDIR") ?? "/tmp"}/ipckit-${uid}`);
  dir = absolute(ffi, dir).replace(/(.)\/+$/, "$1");
  ffi.call.mkdir(ffi.cstring(dir), 0o700); // EEXIST is fine: the checks below decide
  const info = await rt.fileInfo(dir).catch(() => undefined);
  if (info === undefined) return { dir: undefined, reason: `cannot create the registry directory "${dir}"` };
  if (info.type !== "directory" && !(info.type === "symlink" && !strict)) {
    return { dir: undefined, reason: `"${dir}" is not a directory` };
  }
  if (strict && (info.uid !== uid || (info.mode & 0o022) !== 0)) {
    return { dir: undefined, reason: `"${dir}" is not a private directory of user ${uid}: not using it` };
  }
  return { dir, reason: "" };
}

/**
 * Where this process keeps records (`IPCKIT_REGISTRY`, `$XDG_RUNTIME_DIR/ipckit` or `<tmpdir>/ipckit-<uid>`), or
 * why it keeps none. Makes the default directory (mode 0700) if it does not exist.
 *
 * @example
 * ```ts
 * import { resources } from "ipckit";
 * const { dir, reason } = await resources.location();
 * console.log(dir ?? reason); // e.g. "/run/user/1000/ipckit"
 * ```
 */
export async function location(): Promise<Location> {
  const [rt, ffi] = await Promise.all([runtime(), native()]);
  return await locate(rt, ffi);
}

/** `path` made absolute against the current directory (sockets and FIFOs may be given relative paths). */
export function absolute(ffi: Native, path: string): string {
  if (path.startsWith("/")) return path;
  const buf = new Uint8Array(4096);
  if (ffi.call.getcwd(buf, buf.byteLength) === 0) return path;
  const cwd = new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
  return `${cwd === "/" ? "" : cwd}/${path.replace(/^\.\//, "")}`;
}

async function startTime(rt: Runtime, pid: number): Promise<number | null> {
  try {
    return parseStat(await rt.readTextFile(`/proc/${pid}/stat`))?.start ?? null;
  } catch {
    return null; // no /proc (macOS): liveness falls back to kill(pid, 0) alone
  }
}

/** FNV-1a, 64 bits, as 16 hex digits: record file names stay short for long paths. */
function hash(text: string): string {
  let h = 0xcbf29ce484222325n;
  for (const byte of new TextEncoder().encode(text)) h = BigInt.asUintN(64, (h ^ BigInt(byte)) * 0x100000001b3n);
  return h.toString(16).padStart(16, "0");
}

export function recordFile(kind: Kind, name: string): string {
  return `${kind}-${hash(name)}.json`;
}

/** The name a record is filed under: absolute paths for path kinds. */
function recordName(kind: Kind, name: string, ffi: Native | undefined): string {
  return PATH_KINDS.has(kind) && ffi !== undefined ? absolute(ffi, name) : name;
}

/** The record format's version: 2 added `identity`; records of version 1 have none. */
export const RECORD_VERSION = 2;

/**
 * Records an object this process just created, with the object's identity (`os/identity.ts`), looked up now:
 * creators call this right after an exclusive create, before anyone else could have replaced the object. Synchronous
 * and never throws; before `prepare()` has resolved, the write happens once it has (with the identity of now).
 *
 * @param name the POSIX name, the path (FIFOs, sockets), or the queue id as a string (sysv, with its `key`).
 * @internal
 */
export function register(kind: Kind, name: string, extra?: { key: number }): void {
  try {
    if (writer === null) return;
    const ffi = writer?.ffi ?? loadedNative();
    const full = recordName(kind, name, ffi);
    let identity: ObjectIdentity | undefined;
    try {
      identity = ffi === undefined ? undefined : identify(ffi, kind, full, extra?.key);
    } catch { /* no identity: the record is still written, and clean only reports its object */ }
    write(kind, full, extra, identity);
  } catch { /* a record is a convenience: it never fails the create */ }
}

function write(kind: Kind, full: string, extra: { key: number } | undefined, identity: ObjectIdentity | undefined) {
  try {
    if (writer === null) return;
    if (writer === undefined) {
      void prepare().then(() => write(kind, full, extra, identity));
      return;
    }
    const { ffi, dir, body } = writer;
    const record = {
      v: RECORD_VERSION,
      kind,
      name: full,
      ...(extra === undefined ? {} : { key: extra.key, id: Number(full) }),
      ...(identity === undefined ? {} : { identity }),
      ...body,
      created: Date.now(),
    };
    const file = `${dir}/${recordFile(kind, full)}`;
    const tmp = `${dir}/.${recordFile(kind, full)}.${body.pid}.tmp`;
    const bytes = new TextEncoder().encode(JSON.stringify(record) + "\n");
    const ctmp = ffi.cstring(tmp);
    const fd = ffi.call.open(ctmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600);
    if (fd < 0) return;
    const written = ffi.call.pwrite(fd, bytes, bytes.byteLength, 0);
    ffi.call.close(fd);
    // Renamed into place whole, so a reader never sees half a record.
    if (written !== bytes.byteLength || ffi.call.rename(ctmp, ffi.cstring(file)) !== 0) ffi.call.unlink(ctmp);
  } catch { /* a record is a convenience: it never fails the create */ }
}

/**
 * Drops the record of an object that was just removed (by any process). Synchronous and never throws.
 *
 * @internal
 */
export function unregister(kind: Kind, name: string): void {
  try {
    if (writer === null) return;
    const full = recordName(kind, name, writer?.ffi ?? loadedNative());
    if (writer === undefined) {
      void prepare().then(() => unregister(kind, full));
      return;
    }
    writer.ffi.call.unlink(writer.ffi.cstring(`${writer.dir}/${recordFile(kind, full)}`));
  } catch { /* nothing to undo */ }
}
