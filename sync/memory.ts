/**
 * Where a synchronisation primitive keeps its state, for every primitive in `sync/`: a few 32-bit words in
 *
 * - a `SharedArrayBuffer`, shared by the threads (workers) of one process: waits are `Atomics.waitAsync` /
 *   `Atomics.wait`, wakes `Atomics.notify`;
 * - a shared memory segment (`SharedMemory`), shared by processes of any runtime: the same atomic instructions on
 *   the mapped words, waits and wakes through futex(2) (async waits off the main thread).
 *
 * The class and the semantics are the same; only the waiter differs. All-zero words are every primitive's initial
 * state, so a fresh (zero-filled) segment needs no initialisation.
 *
 * @module
 */
import type { SharedMemory } from "../shm/segment.ts";
import { atomicsWaiter, futexWaiter, type Waiter } from "../shm/wait.ts";
import { loadedNative } from "../ffi/native.ts";
import { abortError, TimeoutError, UnsupportedError } from "../errors.ts";

/** What `X.from(handle)` needs to rebuild a primitive in another worker; structured-cloneable. */
export interface SyncHandle {
  /** The primitive's class name, checked by `from()`. */
  readonly type: string;
  readonly buffer: SharedArrayBuffer;
  /** Byte offset of the primitive's words in `buffer`. */
  readonly offset: number;
  /** Constructor arguments a primitive keeps outside its words (a barrier's parties). */
  readonly extra?: number;
}

/** A primitive's words and how to wait on them. */
export interface SyncWords {
  /** Int32 view over the whole buffer or segment; the primitive's words start at `base`. */
  readonly i32: Int32Array;
  readonly base: number;
  readonly waiter: Waiter;
  /** True in a shared memory segment (between processes), false on a SharedArrayBuffer. */
  readonly shared: boolean;
  /** The handle for `from()`, on a SharedArrayBuffer only. */
  readonly handle: SyncHandle | undefined;
}

/** Fresh words on a new SharedArrayBuffer. */
export function allocate(type: string, bytes: number, extra?: number): SyncWords {
  const buffer = new SharedArrayBuffer(bytes);
  return onBuffer(type, buffer, 0, extra);
}

function onBuffer(type: string, buffer: SharedArrayBuffer, offset: number, extra?: number): SyncWords {
  const i32 = new Int32Array(buffer);
  const handle: SyncHandle = extra === undefined ? { type, buffer, offset } : { type, buffer, offset, extra };
  return { i32, base: offset / 4, waiter: atomicsWaiter(i32), shared: false, handle };
}

/** Rebuilds words from a handle, checking it is one of `type`. */
export function fromHandle(type: string, handle: SyncHandle, bytes: number): SyncWords {
  if (
    handle === null || typeof handle !== "object" || handle.type !== type ||
    !(handle.buffer instanceof SharedArrayBuffer)
  ) {
    throw new TypeError(`Cannot rebuild a ${type}: the handle is not a ${type}'s (pass the original's .handle)`);
  }
  checkPlace(type, handle.buffer.byteLength, handle.offset, bytes);
  return onBuffer(type, handle.buffer, handle.offset, handle.extra);
}

function checkPlace(type: string, size: number, offset: number, bytes: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % 8 !== 0) {
    throw new RangeError(`Cannot place a ${type} at offset ${offset}: it must be a non-negative multiple of 8`);
  }
  if (offset + bytes > size) {
    throw new RangeError(
      `Cannot place a ${type} (${bytes} bytes) at offset ${offset}: the memory holds only ${size} bytes`,
    );
  }
}

/**
 * Words at `offset` of a shared memory segment (between processes) or of a SharedArrayBuffer (between threads).
 * Every process that places the primitive at the same offset of the same segment shares it.
 */
export function place(
  type: string,
  memory: SharedMemory | SharedArrayBuffer,
  offset: number,
  bytes: number,
): SyncWords {
  if (memory instanceof SharedArrayBuffer) {
    checkPlace(type, memory.byteLength, offset, bytes);
    return onBuffer(type, memory, offset);
  }
  if (memory === null || typeof memory !== "object" || !("address" in memory) || !("buffer" in memory)) {
    throw new TypeError(`Cannot place a ${type}: memory must be a SharedMemory segment or a SharedArrayBuffer`);
  }
  const buffer = memory.buffer; // throws ClosedError once closed
  checkPlace(type, buffer.byteLength, offset, bytes);
  const ffi = loadedNative();
  if (!ffi) throw new UnsupportedError(`Cannot place a ${type} in a segment: FFI is not loaded`);
  const i32 = new Int32Array(buffer);
  return { i32, base: offset / 4, waiter: futexWaiter(ffi, i32, memory.address), shared: true, handle: undefined };
}

/** Milliseconds left until `deadline` (Infinity without one). */
export function remaining(deadline: number): number {
  return deadline === Infinity ? Infinity : Math.max(0, deadline - Date.now());
}

/** The deadline for a `timeout` option, validated. */
export function deadlineOf(timeout: number | undefined, what: string): number {
  if (timeout === undefined) return Infinity;
  if (!(timeout >= 0)) throw new RangeError(`Cannot ${what} with timeout ${timeout}: it must be >= 0 milliseconds`);
  return Date.now() + timeout;
}

/** Options of every waiting operation. */
export interface WaitOptions {
  /** Gives up after this many milliseconds with `TimeoutError`. */
  timeout?: number;
  /** Aborts the wait with the signal's reason. */
  signal?: AbortSignal;
}

/** The longest single sleep: waiters wake at least this often to re-check deadlines (and dead owners). */
export const SLICE_MS = 1000;

/**
 * One sleep of an async wait loop on `words[index]` while it still holds `value`: resolves when woken (or after a
 * slice; callers re-check their condition), rejects at the deadline (`TimeoutError`) or on abort.
 */
export function sleep(
  w: SyncWords,
  index: number,
  value: number,
  deadline: number,
  signal: AbortSignal | undefined,
  what: string,
): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  const left = remaining(deadline);
  if (left === 0) return Promise.reject(new TimeoutError(`Cannot ${what}: timed out`));
  const wait = w.waiter.wait(w.base + index, value, Math.min(left, SLICE_MS));
  if (!signal) return wait;
  return new Promise<void>((resolve, reject) => {
    const onAbort = () => reject(abortError(signal));
    signal.addEventListener("abort", onAbort, { once: true });
    wait.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}

/** The blocking form of {@linkcode sleep}, for workers. */
export function sleepSync(w: SyncWords, index: number, value: number, deadline: number, what: string): void {
  const left = remaining(deadline);
  if (left === 0) throw new TimeoutError(`Cannot ${what}: timed out`);
  w.waiter.waitSync(w.base + index, value, Math.min(left, SLICE_MS));
}

/** Sets word `index` to `value` when it is 0, or checks it already is `value` (parameters all sides must share). */
export function agree(w: SyncWords, index: number, value: number, what: string, name: string): void {
  const old = Atomics.compareExchange(w.i32, w.base + index, 0, value);
  if (old !== 0 && old !== value) {
    throw new RangeError(`Cannot ${what}: it was made with ${name} ${old}, not ${value}`);
  }
}

/** A held lock or permit set: `release()` (or `using`) releases it once. */
export interface Guard extends Disposable {
  /** Releases; idempotent. */
  release(): void;
}

/** A guard that calls `unlock` once, on the first `release()` or dispose. */
export function guard(unlock: () => void): Guard {
  let held = true;
  const release = () => {
    if (held) {
      held = false;
      unlock();
    }
  };
  return { release, [Symbol.dispose]: release };
}
