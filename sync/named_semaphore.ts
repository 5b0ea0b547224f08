/**
 * POSIX named semaphores (`sem_open`): a counter shared by every process that opens the same name, from any
 * runtime, C or Python. `acquire()` waits off the main thread (Deno `nonblocking` FFI, koffi `.async` on Node and
 * Bun) in slices of at most 100 ms, so the event loop never freezes and the process can always exit.
 *
 * @example
 * ```ts
 * import { NamedSemaphore, runtime } from "ipckit";
 * const name = `/ipckit-workers-${(await runtime()).pid}`;
 * await using sem = await NamedSemaphore.openOrCreate(name, { value: 2 }); // at most 2 at a time
 * try {
 *   using _permit = await sem.acquire({ timeout: 5000 });
 *   console.log(sem.value); // 1: one permit left for the others
 * } finally {
 *   sem.unlink(); // the permit went back just before, at the end of the block
 * }
 * ```
 *
 * @module
 */
import { O_CREAT, O_EXCL } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { abortError, ClosedError, TimeoutError } from "../errors.ts";
import { checkName } from "../shm/segment.ts";
import { prepare, register, unregister } from "../registry.ts";

/**
 * SEM_VALUE_MAX on Linux.
 *
 * @example
 * ```ts
 * import { IpcError, NamedSemaphore, runtime, SEM_VALUE_MAX } from "ipckit";
 * const name = `/ipckit-full-${(await runtime()).pid}`;
 * await using sem = await NamedSemaphore.create(name, { value: SEM_VALUE_MAX });
 * try {
 *   sem.release();
 * } catch (e) {
 *   console.log(e instanceof IpcError); // true: the count cannot pass 2147483647
 * } finally {
 *   sem.unlink();
 * }
 * ```
 */
export const SEM_VALUE_MAX = 0x7fff_ffff;
/** Longest single off-thread wait, so that close() and exit are never held up for long. */
const SLICE_MS = 100;
const CLOCK_REALTIME = 0;
const SEM_FAILED = 0;

/** Options of {@linkcode NamedSemaphore.create}. */
export interface NamedSemaphoreOptions {
  /** The initial count; 0 by default. */
  value?: number;
  /** Permission bits; 0o600 by default. */
  mode?: number;
}

/** Options of {@linkcode NamedSemaphore.acquire}. */
export interface AcquireOptions {
  /** Gives up after this many milliseconds with `TimeoutError`. */
  timeout?: number;
  /** Aborts the wait (rejects with the signal's reason). */
  signal?: AbortSignal;
}

/** Releases one permit when disposed (`using`). */
export interface Permit extends Disposable {
  /** Releases the permit (sem_post); idempotent. */
  release(): void;
}

function checkValue(value: unknown, name: string): number {
  if (!Number.isInteger(value) || (value as number) < 0 || (value as number) > SEM_VALUE_MAX) {
    throw new RangeError(`Cannot create semaphore "${name}": value must be an integer from 0 to ${SEM_VALUE_MAX}`);
  }
  return value as number;
}

function checkMode(mode: unknown, name: string): number {
  if (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o777) {
    throw new RangeError(`Cannot create semaphore "${name}": mode must be an integer from 0 to 0o777`);
  }
  return mode as number;
}

/**
 * A handle on a POSIX named semaphore. `close()` releases this handle; `unlink()` removes the name.
 *
 * @example
 * ```ts
 * import { NamedSemaphore, runtime, runtimeArgv } from "ipckit";
 * const rt = await runtime();
 * const [role, name] = rt.args();
 * if (role === "child") {
 *   await using sem = await NamedSemaphore.open(name!);
 *   sem.release(); // one permit for the parent
 * } else {
 *   const name = `/ipckit-ready-${rt.pid}`;
 *   await using sem = await NamedSemaphore.create(name, { value: 0 });
 *   try {
 *     const child = rt.spawn([...runtimeArgv("bun", rt.fromFileUrl(import.meta.url)), "child", name], {
 *       stdio: "inherit",
 *     });
 *     using _permit = await sem.acquire({ timeout: 10_000 }); // waits off the main thread
 *     console.log("the Bun child released a permit"); // ...and `using` gives it back at the end
 *     console.log(sem.tryAcquire()); // undefined: no other permit
 *     await child.exited;
 *   } finally {
 *     sem.unlink();
 *   }
 * }
 * ```
 */
export class NamedSemaphore implements AsyncDisposable {
  /** The semaphore's name, with its leading `/`. */
  readonly name: string;
  readonly #ffi: Native;
  #sem: number;
  #pending = 0;
  #closing = false;
  #idle: (() => void) | undefined;

  private constructor(ffi: Native, name: string, sem: number) {
    this.#ffi = ffi;
    this.name = name;
    this.#sem = sem;
  }

  /**
   * Creates a new semaphore with `value` permits.
   *
   * @throws {AlreadyExistsError} when the name exists.
   */
  static async create(name: string, options: NamedSemaphoreOptions = {}): Promise<NamedSemaphore> {
    checkName(name);
    const value = checkValue(options.value ?? 0, name);
    const mode = checkMode(options.mode ?? 0o600, name);
    const ffi = await native();
    await prepare();
    return NamedSemaphore.#open(ffi, name, O_CREAT | O_EXCL, mode, value, "create");
  }

  /**
   * Opens an existing semaphore.
   *
   * @throws {NotFoundError} when there is none of that name.
   */
  static async open(name: string): Promise<NamedSemaphore> {
    checkName(name);
    const ffi = await native();
    return NamedSemaphore.#open(ffi, name, 0, 0, 0, "open");
  }

  /**
   * Opens the semaphore, creating it with `options` if it does not exist (the initial value applies then only).
   *
   * @example
   * ```ts
   * import { NamedSemaphore, runtime } from "ipckit";
   * const name = `/ipckit-slots-${(await runtime()).pid}`;
   * await using a = await NamedSemaphore.openOrCreate(name, { value: 3 }); // creates it with 3 permits
   * await using b = await NamedSemaphore.openOrCreate(name, { value: 99 }); // opens it: the value is ignored
   * console.log(b.value); // 3
   * await NamedSemaphore.unlink(name);
   * console.log(a.value); // 3: open handles keep working after the name is gone
   * ```
   */
  static async openOrCreate(name: string, options: NamedSemaphoreOptions = {}): Promise<NamedSemaphore> {
    checkName(name);
    const value = checkValue(options.value ?? 0, name);
    const mode = checkMode(options.mode ?? 0o600, name);
    const ffi = await native();
    await prepare();
    // Exclusive first, so that this handle knows whether it made the semaphore (and records it then).
    for (let i = 0;; i++) {
      try {
        return NamedSemaphore.#open(ffi, name, O_CREAT | O_EXCL, mode, value, "open or create");
      } catch (e) {
        if ((e as { code?: string }).code !== "EEXIST") throw e;
      }
      try {
        return NamedSemaphore.#open(ffi, name, 0, 0, 0, "open or create");
      } catch (e) {
        if ((e as { code?: string }).code !== "ENOENT" || i > 10) throw e; // removed in between: try again
      }
    }
  }

  static #open(ffi: Native, name: string, flags: number, mode: number, value: number, what: string): NamedSemaphore {
    const sem = ffi.call.sem_open(ffi.cstring(name), flags, mode, value);
    if (sem === SEM_FAILED) throw errnoError(ffi.errno(), `${what} semaphore "${name}"`);
    if ((flags & O_EXCL) !== 0) register("sem", name);
    return new NamedSemaphore(ffi, name, sem);
  }

  #handle(what: string): number {
    if (this.#sem === 0 || this.#closing) {
      throw new ClosedError(`Cannot ${what} semaphore "${this.name}": it is closed`);
    }
    return this.#sem;
  }

  /** The current count (sem_getvalue); a snapshot that may change at once. */
  get value(): number {
    const out = new Int32Array(1);
    if (this.#ffi.call.sem_getvalue(this.#handle("read"), out) !== 0) {
      throw errnoError(this.#ffi.errno(), `read semaphore "${this.name}"`);
    }
    return out[0]!;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#sem === 0;
  }

  /** Takes a permit if one is free, without waiting; returns the permit or undefined. */
  tryAcquire(): Permit | undefined {
    const sem = this.#handle("acquire");
    for (;;) {
      if (this.#ffi.call.sem_trywait(sem) === 0) return this.#permit();
      const e = this.#ffi.errno();
      if (e === ERRNO.EAGAIN) return undefined;
      if (e !== ERRNO.EINTR) throw errnoError(e, `acquire semaphore "${this.name}"`);
    }
  }

  /**
   * Waits for a permit without blocking the event loop.
   *
   * @returns A permit; release it (or let `using` dispose it).
   * @throws {TimeoutError} after `timeout` ms; the signal's reason when aborted; {@linkcode ClosedError} when closed.
   */
  async acquire(options: AcquireOptions = {}): Promise<Permit> {
    const { timeout, signal } = options;
    if (timeout !== undefined && !(timeout >= 0)) {
      throw new RangeError(`Cannot acquire semaphore "${this.name}": timeout must be >= 0 milliseconds`);
    }
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    const now = new BigInt64Array(2);
    this.#pending++;
    try {
      for (;;) {
        const permit = this.tryAcquire();
        if (permit) return permit;
        if (signal?.aborted) throw abortError(signal);
        const left = deadline - Date.now();
        if (left <= 0) throw new TimeoutError(`Cannot acquire semaphore "${this.name}": timed out after ${timeout} ms`);
        // Absolute CLOCK_REALTIME deadline for sem_timedwait, at most one slice away.
        this.#ffi.call.clock_gettime(CLOCK_REALTIME, now);
        const ns = now[1]! + BigInt(Math.min(left, SLICE_MS)) * 1_000_000n;
        const until = new BigInt64Array([now[0]! + ns / 1_000_000_000n, ns % 1_000_000_000n]);
        // errno is not reliable after an off-thread call: a 0 result is a permit, anything else means "look again".
        if ((await this.#ffi.callAsync.sem_timedwait(this.#handle("acquire"), until)) === 0) return this.#permit();
      }
    } finally {
      if (--this.#pending === 0) this.#idle?.();
    }
  }

  /**
   * Returns `n` permits (sem_post).
   *
   * @throws {IpcError} with code EOVERFLOW when the count would pass SEM_VALUE_MAX.
   */
  release(n = 1): void {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`Cannot release ${n} permits: n must be an integer >= 1`);
    const sem = this.#handle("release");
    for (let i = 0; i < n; i++) {
      if (this.#ffi.call.sem_post(sem) !== 0) throw errnoError(this.#ffi.errno(), `release semaphore "${this.name}"`);
    }
  }

  #permit(): Permit {
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      // Also while closing: a permit taken must go back. After close() the handle is gone: say so.
      if (this.#sem === 0) throw new ClosedError(`Cannot release a permit of semaphore "${this.name}": it is closed`);
      if (this.#ffi.call.sem_post(this.#sem) !== 0) {
        throw errnoError(this.#ffi.errno(), `release semaphore "${this.name}"`);
      }
    };
    return { release, [Symbol.dispose]: release };
  }

  /**
   * Closes this handle; idempotent. Waiting `acquire()`s reject with ClosedError (within 100 ms) and close() waits
   * for them. The semaphore and its count live on.
   */
  async close(): Promise<void> {
    if (this.#sem === 0 || this.#closing) return;
    this.#closing = true;
    if (this.#pending > 0) await new Promise<void>((r) => (this.#idle = r));
    const sem = this.#sem;
    if (sem === 0) return;
    this.#sem = 0;
    if (this.#ffi.call.sem_close(sem) !== 0) throw errnoError(this.#ffi.errno(), `close semaphore "${this.name}"`);
  }

  /**
   * Removes the name; handles that are open keep working.
   *
   * @throws {NotFoundError} when it was removed already.
   */
  unlink(): void {
    NamedSemaphore.#unlink(this.#ffi, this.name);
  }

  /** Removes a semaphore by name. */
  static async unlink(name: string): Promise<void> {
    checkName(name);
    NamedSemaphore.#unlink(await native(), name);
  }

  static #unlink(ffi: Native, name: string): void {
    if (ffi.call.sem_unlink(ffi.cstring(name)) !== 0) {
      const errno = ffi.errno();
      if (errno === ERRNO.ENOENT) unregister("sem", name); // gone already: the record is stale
      throw errnoError(errno, `unlink semaphore "${name}"`);
    }
    unregister("sem", name);
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
