/**
 * Named POSIX shared memory segments (`shm_open` + `mmap`), readable and writable from Deno, Bun and Node at
 * once, and from C or Python mapping the same name (`multiprocessing.shared_memory.SharedMemory(name=...)`, which
 * takes the name without its leading slash).
 *
 * @example
 * ```ts
 * import { runtime, SharedMemory } from "ipckit";
 * const name = `/ipckit-state-${(await runtime()).pid}`;
 * using shm = await SharedMemory.create(name, { size: 4096 });
 * new Uint8Array(shm.buffer).set([1, 2, 3]);
 * using same = await SharedMemory.open(name); // in another process, usually
 * console.log(new Uint8Array(same.buffer, 0, 3)); // Uint8Array [1, 2, 3]
 * shm.unlink(); // remove the name; mappings stay valid until closed
 * ```
 *
 * @module
 */
import {
  isMapFailed,
  MAP_SHARED,
  NAME_MAX,
  O_CREAT,
  O_EXCL,
  O_RDONLY,
  O_RDWR,
  PROT_READ,
  PROT_WRITE,
  SEEK_END,
} from "../ffi/constants.ts";
import { retry } from "../async/deadline.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { ClosedError, IpcError } from "../errors.ts";
import { prepare, register, unregister } from "../registry.ts";

/** Longest name, including the leading slash. */
const MAX_NAME = NAME_MAX;

/** Options of {@linkcode SharedMemory.create}. */
export interface CreateOptions {
  /** Size in bytes (> 0). */
  size: number;
  /** Permission bits; 0o600 by default. */
  mode?: number;
}

/** Options of {@linkcode SharedMemory.open}. */
export interface OpenOptions {
  /**
   * Map read-only. The buffer still looks writable to JavaScript: a write through it crashes the process
   * (SIGSEGV), so only read it.
   */
  readOnly?: boolean;
}

/**
 * Checks a shared memory name: one leading `/`, no other `/`, 2 to 255 bytes, no NUL.
 *
 * @throws {TypeError} when the name is not valid.
 */
export function checkName(name: unknown): string {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot use shared memory name ${String(name)}: it must be a string`);
  }
  const bytes = new TextEncoder().encode(name).byteLength;
  if (!name.startsWith("/") || name.indexOf("/", 1) >= 0 || bytes < 2 || bytes > MAX_NAME || name.includes("\0")) {
    throw new TypeError(
      `Cannot use shared memory name "${name}": it must be "/" then 1 to ${MAX_NAME - 1} bytes without "/" or NUL`,
    );
  }
  return name;
}

/**
 * The largest segment ipckit maps: 4 GiB, the largest ArrayBuffer over external memory that koffi (Node) and Bun
 * create (Deno goes further, but one limit everywhere keeps programs portable).
 */
export const MAX_SIZE = 2 ** 32;

function checkSize(size: unknown, name: string): number {
  if (!Number.isSafeInteger(size) || (size as number) <= 0 || (size as number) > MAX_SIZE) {
    throw new RangeError(
      `Cannot create shared memory "${name}": size must be an integer from 1 to ${MAX_SIZE} (4 GiB), got ${
        String(size)
      }`,
    );
  }
  return size as number;
}

function checkMode(mode: unknown, name: string): number {
  if (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o777) {
    throw new RangeError(`Cannot create shared memory "${name}": mode must be an integer from 0 to 0o777`);
  }
  return mode as number;
}

/** How long open() waits for a creator that has made the name but not yet sized it, in milliseconds. */
const SIZING_WAIT_MS = 1000;

/**
 * A mapped shared memory segment. `close()` unmaps it; `unlink()` removes the name.
 *
 * @example
 * ```ts
 * import { runtime, runtimeArgv, SharedMemory } from "ipckit";
 * const rt = await runtime();
 * const [role, name] = rt.args();
 * if (role === "child") {
 *   using segment = await SharedMemory.open(name!); // the size is the segment's
 *   Atomics.add(new Int32Array(segment.buffer), 0, 1); // Atomics work across processes and runtimes
 * } else {
 *   const name = `/ipckit-shared-${rt.pid}`;
 *   using segment = await SharedMemory.create(name, { size: 4096 }); // zero-filled, mode 0600
 *   try {
 *     const argv = (r: "deno" | "bun" | "node") => [...runtimeArgv(r, rt.fromFileUrl(import.meta.url)), "child", name];
 *     const children = [rt.spawn(argv("bun"), { stdio: "inherit" }), rt.spawn(argv("deno"), { stdio: "inherit" })];
 *     await Promise.all(children.map((c) => c.exited));
 *     console.log(new Int32Array(segment.buffer)[0], segment.size); // 2 4096: a Bun and a Deno process added 1
 *   } finally {
 *     segment.unlink(); // the name goes; this mapping stays valid until close() (here: `using`)
 *   }
 * }
 * ```
 */
export class SharedMemory implements Disposable {
  /** The segment's name, with its leading `/`. */
  readonly name: string;
  /** Its size in bytes. */
  readonly size: number;
  /** Whether this handle created the segment. */
  readonly created: boolean;
  /** Whether it is mapped read-only. */
  readonly readOnly: boolean;
  readonly #ffi: Native;
  #address: number;
  #buffer: ArrayBuffer | undefined;

  private constructor(ffi: Native, name: string, size: number, address: number, created: boolean, readOnly: boolean) {
    this.#ffi = ffi;
    this.name = name;
    this.size = size;
    this.#address = address;
    this.created = created;
    this.readOnly = readOnly;
    this.#buffer = ffi.view(address, size);
  }

  /**
   * Creates a new segment of `size` bytes (zero-filled) and maps it.
   *
   * @throws {AlreadyExistsError} when the name exists.
   * @throws {TypeError} for a bad name; {@linkcode RangeError} for a bad size.
   */
  static async create(name: string, options: CreateOptions): Promise<SharedMemory> {
    checkName(name);
    const size = checkSize(options?.size, name);
    const mode = checkMode(options.mode ?? 0o600, name);
    const ffi = await native();
    await prepare();
    return SharedMemory.#make(ffi, name, size, mode, true);
  }

  /**
   * Maps an existing segment; its size is the segment's.
   *
   * @throws {NotFoundError} when there is no segment of that name.
   */
  static async open(name: string, options: OpenOptions = {}): Promise<SharedMemory> {
    checkName(name);
    const ffi = await native();
    return await SharedMemory.#attachSized(ffi, name, options.readOnly ?? false);
  }

  /** Attaches, waiting briefly while the segment is empty: a creator sizes it right after creating the name. */
  static async #attachSized(ffi: Native, name: string, readOnly: boolean): Promise<SharedMemory> {
    return await retry(() => SharedMemory.#attach(ffi, name, readOnly), {
      wait: SIZING_WAIT_MS,
      retryable: (e) => e instanceof IpcError && e.code === "EMPTY",
    });
  }

  /**
   * Opens the segment, or creates it with `options` when it does not exist.
   *
   * @example
   * ```ts
   * import { runtime, SharedMemory } from "ipckit";
   * const name = `/ipckit-either-${(await runtime()).pid}`;
   * using first = await SharedMemory.openOrCreate(name, { size: 4096 }); // creates it
   * using second = await SharedMemory.openOrCreate(name, { size: 4096 }); // opens it
   * new Uint8Array(first.buffer)[0] = 7;
   * console.log(new Uint8Array(second.buffer)[0]); // 7
   * await SharedMemory.unlink(name);
   * ```
   */
  static async openOrCreate(name: string, options: CreateOptions): Promise<SharedMemory> {
    checkName(name);
    const size = checkSize(options?.size, name);
    const mode = checkMode(options.mode ?? 0o600, name);
    const ffi = await native();
    await prepare();
    for (;;) {
      try {
        return await SharedMemory.#attachSized(ffi, name, false);
      } catch (e) {
        if ((e as { code?: string }).code !== "ENOENT") throw e;
      }
      try {
        return SharedMemory.#make(ffi, name, size, mode, true);
      } catch (e) {
        if ((e as { code?: string }).code !== "EEXIST") throw e; // lost a race with another creator: open it
      }
    }
  }

  static #make(ffi: Native, name: string, size: number, mode: number, created: boolean): SharedMemory {
    const cname = ffi.cstring(name);
    const fd = ffi.call.shm_open(cname, O_CREAT | O_EXCL | O_RDWR, mode);
    if (fd < 0) throw errnoError(ffi.errno(), `create shared memory "${name}"`);
    try {
      if (ffi.call.ftruncate(fd, size) !== 0) {
        const e = errnoError(ffi.errno(), `size shared memory "${name}" to ${size} bytes`);
        ffi.call.shm_unlink(cname);
        throw e;
      }
      const address = ffi.call.mmap(null, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (isMapFailed(address)) {
        const e = errnoError(ffi.errno(), `map shared memory "${name}" (${size} bytes)`);
        ffi.call.shm_unlink(cname);
        throw e;
      }
      let shm: SharedMemory;
      try {
        shm = new SharedMemory(ffi, name, size, address, created, false);
      } catch (e) {
        ffi.call.munmap(address, size);
        ffi.call.shm_unlink(cname);
        throw e;
      }
      register("shm", name);
      return shm;
    } finally {
      ffi.call.close(fd); // the mapping keeps the segment; the descriptor is not needed
    }
  }

  static #attach(ffi: Native, name: string, readOnly: boolean): SharedMemory {
    const fd = ffi.call.shm_open(ffi.cstring(name), readOnly ? O_RDONLY : O_RDWR, 0);
    if (fd < 0) throw errnoError(ffi.errno(), `open shared memory "${name}"`);
    try {
      const size = ffi.call.lseek(fd, 0, SEEK_END);
      if (size < 0) throw errnoError(ffi.errno(), `measure shared memory "${name}"`);
      if (size === 0) {
        throw new IpcError(`Cannot map shared memory "${name}": it is empty (size 0)`, { code: "EMPTY" });
      }
      if (size > MAX_SIZE) {
        throw new RangeError(`Cannot map shared memory "${name}": it has ${size} bytes, more than ${MAX_SIZE} (4 GiB)`);
      }
      const prot = readOnly ? PROT_READ : PROT_READ | PROT_WRITE;
      const address = ffi.call.mmap(null, size, prot, MAP_SHARED, fd, 0);
      if (isMapFailed(address)) throw errnoError(ffi.errno(), `map shared memory "${name}" (${size} bytes)`);
      try {
        return new SharedMemory(ffi, name, size, address, false, readOnly);
      } catch (e) {
        ffi.call.munmap(address, size);
        throw e;
      }
    } finally {
      ffi.call.close(fd);
    }
  }

  /**
   * The mapped bytes. Views over it see other processes' writes; use Atomics on an Int32Array for
   * synchronisation.
   *
   * @throws {ClosedError} after `close()`.
   */
  get buffer(): ArrayBuffer {
    if (this.#buffer === undefined) throw new ClosedError(`Cannot use shared memory "${this.name}": it is closed`);
    return this.#buffer;
  }

  /** The address of the mapping in this process (for FFI calls such as futex). */
  get address(): number {
    if (this.#buffer === undefined) throw new ClosedError(`Cannot use shared memory "${this.name}": it is closed`);
    return this.#address;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#buffer === undefined;
  }

  /**
   * Unmaps this handle; idempotent. Views of `buffer` are detached (Deno, Bun) or see zeros (Node) afterwards:
   * never the freed memory. The segment lives on until unlinked and unmapped everywhere.
   */
  close(): void {
    const buffer = this.#buffer;
    if (buffer === undefined) return;
    this.#buffer = undefined;
    this.#ffi.unmap(buffer, this.#address, this.size);
    this.#address = 0;
  }

  /**
   * Removes the name, so no one else can open it; existing mappings stay valid.
   *
   * @throws {NotFoundError} when the name was removed already.
   */
  unlink(): void {
    unlinkName(this.#ffi, this.name);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Removes a segment by name without opening it.
   *
   * @throws {NotFoundError} when there is no such segment.
   *
   * @example
   * ```ts
   * import { NotFoundError, runtime, SharedMemory } from "ipckit";
   * const name = `/ipckit-leftover-${(await runtime()).pid}`;
   * (await SharedMemory.create(name, { size: 64 })).close(); // closed, but the name stays...
   * await SharedMemory.unlink(name); // ...until removed
   * try {
   *   await SharedMemory.unlink(name);
   * } catch (e) {
   *   console.log(e instanceof NotFoundError); // true: removed already
   * }
   * ```
   */
  static async unlink(name: string): Promise<void> {
    checkName(name);
    unlinkName(await native(), name);
  }
}

/** shm_unlink, and the owner record with it (also when the name was gone already: the record is stale then). */
function unlinkName(ffi: Native, name: string): void {
  if (ffi.call.shm_unlink(ffi.cstring(name)) !== 0) {
    const errno = ffi.errno();
    if (errno === ERRNO.ENOENT) unregister("shm", name);
    throw errnoError(errno, `unlink shared memory "${name}"`);
  }
  unregister("shm", name);
}
