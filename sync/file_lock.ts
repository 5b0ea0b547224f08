/**
 * Advisory file locks with flock(2): one exclusive holder or many shared holders, across processes, runtimes and
 * languages (Python `fcntl.flock`, the `flock(1)` command and C programs see the same locks).
 *
 * Waiting never blocks the event loop and never parks a thread in a native call: `lock()` makes non-blocking
 * attempts (`LOCK_NB`) with a backoff from 1 ms doubling to 50 ms, so it can be aborted, can time out, and never
 * keeps the process from exiting. The price is latency: a released lock is noticed up to 50 ms late, and a waiter
 * has no place in a queue (no fairness between processes).
 *
 * flock locks belong to an open file description, not to a process: two `FileLock` objects on the same path
 * exclude each other even in one process (each opens its own fd), and the lock is released when the fd is closed,
 * including when the process dies (even by SIGKILL). One `FileLock` object serves many async tasks of this process:
 * its own holders are queued here (many shared holders at once, or one exclusive holder), since flock alone would
 * let every task through on the same fd.
 *
 * flock locks are advisory (a process that does not lock can still read and write the file), do not work reliably
 * on NFS before Linux 2.6.12 and are not the same locks as `fcntl(F_SETLK)` record locks.
 *
 * The lock file is never opened through a symbolic link (`O_NOFOLLOW`): lock paths often live in shared directories
 * such as `/tmp`, where another user could plant a link at the path to make a privileged process create (or lock)
 * a file of the link's choosing. A symlink at the path is refused with `PermissionError` (code `ELOOP`); links in
 * the directories above it are followed as usual.
 *
 * @example
 * ```ts
 * import { FileLock, runtime } from "ipckit";
 * const rt = await runtime();
 * const path = `/tmp/ipckit-app-${rt.pid}.lock`;
 * using file = await FileLock.open(path);
 * {
 *   using _guard = await file.lock({ timeout: 5000 });
 *   console.log("no other holder of the lock, in any process");
 * }
 * await rt.removeFile(path);
 * ```
 *
 * @module
 */
import { abortError, ClosedError, PermissionError, TimeoutError } from "../errors.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { LOCK_EX, LOCK_NB, LOCK_SH, LOCK_UN, O_CLOEXEC, O_CREAT, O_NOFOLLOW, O_RDWR } from "../ffi/constants.ts";
import { type Native, native } from "../ffi/native.ts";
import { onAbort } from "../async/abort.ts";
import { Backoff } from "../async/delay.ts";

/** Options of {@linkcode FileLock.open}. */
export interface FileLockOpenOptions {
  /** Create the file (mode 0600) when it does not exist; true by default. */
  create?: boolean;
  /** Permission bits for a new file; 0o600 by default. */
  mode?: number;
}

/** Options of {@linkcode FileLock.lock}. */
export interface LockOptions {
  /** A shared (read) lock instead of an exclusive one. */
  shared?: boolean;
  /** Aborts the wait: `lock()` rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Gives up after this many milliseconds with a `TimeoutError`. Waits forever by default. */
  timeout?: number;
}

/** A held lock. Release it once with `release()`, or let `using` / `await using` do it. */
export interface FileLockGuard extends Disposable, AsyncDisposable {
  /** Whether this is a shared lock. */
  readonly shared: boolean;
  /** Whether this guard still holds the lock (false after `release()`, and after `unlock()`/`close()` of its file). */
  readonly held: boolean;
  /** Releases this hold. Idempotent. */
  release(): void;
}

function checkPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0")) {
    throw new TypeError(
      `Cannot open lock file ${JSON.stringify(path)}: the path must be a non-empty string without NUL`,
    );
  }
  return path;
}

function checkTimeout(timeout: unknown, what: string): void {
  if (timeout === undefined) return;
  if (typeof timeout !== "number" || Number.isNaN(timeout) || timeout < 0) {
    throw new RangeError(`Cannot ${what}: timeout must be a number of milliseconds >= 0`);
  }
}

/**
 * A lock file held open, on which this process takes flock(2) locks.
 *
 * @example
 * ```ts
 * import { FileLock, runtime } from "ipckit";
 * const rt = await runtime();
 * const path = `/tmp/ipckit-data-${rt.pid}.lock`;
 * using mine = await FileLock.open(path); // creates it, mode 0600
 * using theirs = await FileLock.open(path); // another open file: as another process would
 * const reading = mine.tryLock({ shared: true });
 * console.log(reading !== undefined, theirs.tryLock({ shared: true }) !== undefined); // true true: readers share
 * console.log(theirs.tryLock()); // undefined: an exclusive lock waits for the readers
 * reading?.release();
 * theirs.unlock(); // releases everything `theirs` holds
 * {
 *   using _exclusive = await theirs.lock({ timeout: 1000 });
 *   console.log(mine.tryLock({ shared: true })); // undefined
 * }
 * await rt.removeFile(path);
 * ```
 */
export class FileLock implements Disposable {
  /** The path the file was opened at. */
  readonly path: string;
  #ffi: Native;
  #fd: number;
  /** Holders in this process: 0 = unlocked, > 0 = that many shared holders, -1 = one exclusive holder. */
  #holders = 0;
  /** Bumped by `unlock()` and `close()`: guards of an older generation no longer hold anything. */
  #generation = 0;
  /** Wakes waiters of this object when a holder releases or the lock closes. */
  #wakers = new Set<() => void>();

  private constructor(ffi: Native, fd: number, path: string) {
    this.#ffi = ffi;
    this.#fd = fd;
    this.path = path;
  }

  /**
   * Opens (by default creating, mode 0600) the lock file at `path`. The file's contents are not touched, and a
   * symbolic link at `path` is never followed (see the module doc).
   *
   * @param path The lock file.
   * @returns The open lock file; `close()` it (or `using`) when done.
   * @throws {NotFoundError} when the file (with `create: false`) or its directory does not exist.
   * @throws {PermissionError} when the file cannot be opened for reading and writing, or `path` is a symbolic link
   *   (code `ELOOP`).
   */
  static async open(path: string, options: FileLockOpenOptions = {}): Promise<FileLock> {
    checkPath(path);
    const mode = options.mode ?? 0o600;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
      throw new RangeError(`Cannot open lock file "${path}": mode must be an integer from 0 to 0o777`);
    }
    const ffi = await native();
    const flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (options.create === false ? 0 : O_CREAT);
    const fd = ffi.call.open(ffi.cstring(path), flags, mode);
    if (fd < 0) {
      const errno = ffi.errno();
      if (errno === ERRNO.ELOOP) {
        throw new PermissionError(
          `Cannot open lock file "${path}": it is a symbolic link (a lock file is never opened through one)`,
          { code: "ELOOP" },
        );
      }
      throw errnoError(errno, `open lock file "${path}"`);
    }
    return new FileLock(ffi, fd, path);
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /**
   * Takes the lock, waiting until it is free (polling with a backoff of 1 to 50 ms; the event loop stays free).
   *
   * @returns A guard; release it (or let `using` do it) to unlock.
   * @throws {TimeoutError} when `timeout` ran out.
   * @throws {ClosedError} when the lock file is or gets closed.
   * @throws The signal's reason (an `AbortError` by default) when `signal` aborts.
   */
  async lock(options: LockOptions = {}): Promise<FileLockGuard> {
    const shared = options.shared === true;
    const { signal, timeout } = options;
    checkTimeout(timeout, `lock "${this.path}"`);
    const deadline = timeout === undefined ? Infinity : Date.now() + timeout;
    const backoff = new Backoff({ first: 1, max: 50 }); // ms between two attempts
    for (;;) {
      if (signal?.aborted) throw abortError(signal);
      const guard = this.tryLock({ shared });
      if (guard) return guard;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new TimeoutError(`Cannot lock "${this.path}": it was still locked after ${timeout} ms`);
      }
      await this.#sleep(Math.min(backoff.next(), left), signal);
    }
  }

  /**
   * Takes the lock if it is free now.
   *
   * @returns A guard, or undefined when another holder has it.
   * @throws {ClosedError} when the lock file is closed.
   */
  tryLock(options: { shared?: boolean } = {}): FileLockGuard | undefined {
    const shared = options.shared === true;
    if (this.#fd < 0) throw new ClosedError(`Cannot lock "${this.path}": the lock file is closed`);
    if (this.#holders === -1 || (this.#holders > 0 && !shared)) return undefined;
    if (this.#holders === 0 && !this.#flock((shared ? LOCK_SH : LOCK_EX) | LOCK_NB, "lock")) return undefined;
    this.#holders = shared ? this.#holders + 1 : -1;
    return this.#guard(shared);
  }

  /**
   * Releases the lock this object holds, whatever its guards: they all stop holding. Idempotent; waiters of this
   * object may then take it.
   */
  unlock(): void {
    if (this.#fd < 0 || this.#holders === 0) return;
    this.#generation++;
    this.#holders = 0;
    this.#flock(LOCK_UN, "unlock");
    this.#wake();
  }

  /** Closes the file, which releases the lock. Pending `lock()` calls reject with `ClosedError`. Idempotent. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    this.#generation++;
    this.#holders = 0;
    this.#ffi.call.close(fd);
    this.#wake();
  }

  /** Same as `close()`. */
  [Symbol.dispose](): void {
    this.close();
  }

  #guard(shared: boolean): FileLockGuard {
    const generation = this.#generation;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (generation !== this.#generation) return; // unlock() or close() released it already
      if (shared && this.#holders > 1) this.#holders--;
      else this.unlock();
      this.#wake();
    };
    const held = (): boolean => !released && generation === this.#generation;
    return {
      shared,
      get held() {
        return held();
      },
      release,
      [Symbol.dispose]: release,
      [Symbol.asyncDispose]: () => Promise.resolve(release()),
    };
  }

  /** One flock call; false when the lock is taken (EWOULDBLOCK). Retries on EINTR. */
  #flock(op: number, what: string): boolean {
    for (;;) {
      if (this.#ffi.call.flock(this.#fd, op) === 0) return true;
      const errno = this.#ffi.errno();
      if (errno === ERRNO.EINTR) continue;
      if (errno === ERRNO.EAGAIN) return false; // EWOULDBLOCK
      throw errnoError(errno, `${what} "${this.path}"`);
    }
  }

  #wake(): void {
    const wakers = [...this.#wakers];
    this.#wakers.clear();
    for (const w of wakers) w();
  }

  /** Sleeps `ms`, or less when this object releases a hold; rejects on abort or close. */
  #sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let stop = (): void => {};
      const done = (error?: unknown): void => {
        clearTimeout(timer);
        stop();
        this.#wakers.delete(onWake);
        if (error === undefined) resolve();
        else reject(error);
      };
      const onWake = (): void => {
        done(this.#fd < 0 ? new ClosedError(`Cannot lock "${this.path}": the lock file was closed`) : undefined);
      };
      const timer = setTimeout(() => done(), ms);
      this.#wakers.add(onWake);
      stop = onAbort(signal, () => done(abortError(signal!))); // at once when it already aborted
    });
  }
}
