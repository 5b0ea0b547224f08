/**
 * The core under every primitive in `sync/` (CPython multiprocessing's `SemLock` is the model): where a primitive's
 * words live and how it waits on them, written once. Internal: the public face is `sync/primitive.ts`
 * (`SyncPrimitive`), and nothing here appears in a public signature.
 *
 * **Placement.** A primitive keeps its state in a few 32-bit words of
 *
 * - a `SharedArrayBuffer`, shared by the threads (workers) of one process: waits are `Atomics.waitAsync` /
 *   `Atomics.wait`, wakes `Atomics.notify`;
 * - a shared memory segment (`SharedMemory`), shared by processes of any runtime: the same atomic instructions on
 *   the mapped words, waits and wakes through futex(2) (async waits off the main thread).
 *
 * All-zero words are every primitive's initial state, so a fresh (zero-filled) segment needs no initialisation.
 * Each primitive is made three ways: `new X(...)` (its own SharedArrayBuffer), `X.from(handle)` (the same words in
 * another worker) and `X.in(memory, offset)` (words at an offset of a segment or SharedArrayBuffer). The last two
 * hand the words to the constructor through a module-private slot ({@linkcode fromHandle}, {@linkcode placeIn}), so
 * public constructors take public arguments only and `new X()` always allocates.
 *
 * **Waits.** Every blocking operation is written once, as a generator of {@linkcode Steps}: it tries, and when it
 * cannot go on it yields a {@linkcode Sleep} ("sleep while word `index` still holds `value`"); it returns the
 * result. Two drivers run the same steps: `Words.waitSync` blocks the thread (`Atomics.wait` / futex) and
 * `Words.waitAsync` awaits (`Atomics.waitAsync` / futex off the main thread). The drivers own the deadline and
 * the abort signal: when the time is up or the signal aborts, they throw the `TimeoutError` or the signal's reason
 * *into* the generator (`steps.throw`), so its `catch`/`finally` undo what it did (a sleeper count, a STARVING bit,
 * a barrier arrival) the same way in both forms, or turn the timeout into a result (`Condition.wait` resolves
 * `false`). A sleep lasts at most `slice` ms (1 s by default): the steps then run again and re-check what a wake
 * cannot announce (deadlines, a dead owner).
 *
 * @module
 */
import type { SharedMemory } from "../shm/segment.ts";
import { atomicsWaiter, futexWaiter, type Waiter } from "../shm/wait.ts";
import { loadedNative } from "../ffi/native.ts";
import { abortError, TimeoutError, UnsupportedError } from "../errors.ts";
import { onAbort } from "../async/abort.ts";
import { Deadline } from "../async/deadline.ts";
import type { SyncHandle, SyncPrimitive, WaitOptions } from "./primitive.ts";

/**
 * A primitive's words and how to wait on them (internal: never in a public signature). Its two drivers run a wait's
 * {@linkcode Steps}, blocking or not.
 */
export class Words {
  constructor(
    /** Int32 view over the whole buffer or segment; the primitive's words start at `base`. */
    readonly i32: Int32Array,
    readonly base: number,
    readonly waiter: Waiter,
    /** True in a shared memory segment (between processes), false on a SharedArrayBuffer. */
    readonly shared: boolean,
    /** The handle for `from()`, on a SharedArrayBuffer only. */
    readonly handle: SyncHandle | undefined,
  ) {}

  /**
   * Runs `steps` blocking this thread (for workers; on a main thread it freezes the event loop).
   *
   * @throws {TimeoutError} after `options.timeout` ms, unless the steps catch it; whatever the steps throw.
   */
  waitSync<T>(steps: Steps<T>, options: { timeout?: number } | undefined, what: string): T {
    const deadline = deadlineOf(options?.timeout, what);
    let done = false;
    try {
      let r = steps.next();
      while (!r.done) {
        const left = deadline.remaining;
        if (left === 0) r = steps.throw(timedOut(what, options?.timeout));
        else {
          this.waiter.waitSync(this.base + r.value.index, r.value.value, Math.min(left, r.value.slice ?? SLICE_MS));
          r = steps.next();
        }
      }
      done = true;
      return r.value;
    } finally {
      if (!done) steps.return(undefined as T);
    }
  }

  /**
   * Runs `steps` without blocking the event loop.
   *
   * @throws {TimeoutError} after `options.timeout` ms, unless the steps catch it; the signal's reason on abort;
   *   whatever the steps throw.
   */
  async waitAsync<T>(steps: Steps<T>, options: WaitOptions | undefined, what: string): Promise<T> {
    const deadline = deadlineOf(options?.timeout, what);
    const signal = options?.signal;
    let wakeOnAbort: () => void = () => {};
    const aborted = signal && new Promise<void>((resolve) => (wakeOnAbort = resolve));
    const stop = onAbort(signal, () => wakeOnAbort());
    // A pending Atomics.waitAsync does not keep the event loop alive, and Node may deliver its timeout after the
    // waiter's own keep-alive timer: this one lasts as long as the wait.
    const alive = setInterval(() => {}, SLICE_MS);
    let done = false;
    try {
      let r = steps.next();
      while (!r.done) {
        const left = deadline.remaining;
        if (signal?.aborted) r = steps.throw(abortError(signal));
        else if (left === 0) r = steps.throw(timedOut(what, options?.timeout));
        else {
          const slice = Math.min(left, r.value.slice ?? SLICE_MS);
          const sleep = this.waiter.wait(this.base + r.value.index, r.value.value, slice);
          await (aborted ? Promise.race([sleep, aborted]) : sleep);
          r = steps.next();
        }
      }
      done = true;
      return r.value;
    } finally {
      clearInterval(alive);
      stop();
      if (!done) steps.return(undefined as T);
    }
  }

  /** Sets word `index` to `value` when it is 0, or checks it already is `value` (parameters all sides share). */
  agree(index: number, value: number, what: string, name: string): void {
    const old = Atomics.compareExchange(this.i32, this.base + index, 0, value);
    if (old !== 0 && old !== value) {
      throw new RangeError(`Cannot ${what}: it was made with ${name} ${old}, not ${value}`);
    }
  }
}

/** One step of a wait: sleep while word `index` (from the primitive's base) holds `value`, `slice` ms at most. */
export interface Sleep {
  readonly index: number;
  readonly value: number;
  readonly slice?: number;
}

/** A wait written once: yields sleeps, returns the result; run by `Words.waitSync` or `Words.waitAsync`. */
export type Steps<T> = Generator<Sleep, T, void>;

/** The longest single sleep: waiters wake at least this often to re-check deadlines. */
const SLICE_MS = 1000;

/** The words for the constructor `build()` is running, taken by {@linkcode claim}. */
let pending: Words | undefined;
/** Each primitive's words (looked up once, when its constructor caches them). */
const owned = new WeakMap<SyncPrimitive, Words>();

/** For {@linkcode SyncPrimitive}'s constructor: gives `p` the words being placed, or `bytes` of a new buffer. */
export function claim(p: SyncPrimitive, type: string, bytes: number, extra?: number): void {
  const placed = pending;
  pending = undefined;
  owned.set(p, placed ?? onBuffer(type, new SharedArrayBuffer(bytes), 0, extra));
}

/** The words of `p` (for the primitives' own files, which keep them in a private field). */
export function words(p: SyncPrimitive): Words {
  return owned.get(p)!;
}

/** Runs `make` (a `new X(...)`) on `w` instead of fresh words: the module-private path of `from()` and `in()`. */
function build<T extends SyncPrimitive>(w: Words, make: () => T): T {
  pending = w;
  try {
    return make();
  } finally {
    pending = undefined;
  }
}

function onBuffer(type: string, buffer: SharedArrayBuffer, offset: number, extra?: number): Words {
  const i32 = new Int32Array(buffer);
  const handle: SyncHandle = extra === undefined ? { type, buffer, offset } : { type, buffer, offset, extra };
  return new Words(i32, offset / 4, atomicsWaiter(i32), false, handle);
}

/**
 * `X.from(handle)`: `make()` (a `new X(...)`) on the words `handle` names, checked to be a `type`'s of `bytes`.
 *
 * @throws {TypeError} when `handle` is not a `type`'s.
 */
export function fromHandle<T extends SyncPrimitive>(type: string, bytes: number, handle: SyncHandle, make: () => T): T {
  if (
    handle === null || typeof handle !== "object" || handle.type !== type ||
    !(handle.buffer instanceof SharedArrayBuffer)
  ) {
    throw new TypeError(`Cannot rebuild a ${type}: the handle is not a ${type}'s (pass the original's .handle)`);
  }
  checkPlace(type, handle.buffer.byteLength, handle.offset, bytes);
  return build(onBuffer(type, handle.buffer, handle.offset, handle.extra), make);
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
 * `X.in(memory, offset)`: `make()` (a `new X(...)`) on the `bytes` at `offset` of a shared memory segment (between
 * processes) or of a SharedArrayBuffer (between threads). Every process that places the primitive at the same offset
 * of the same segment shares it.
 *
 * @throws {TypeError} when `memory` is neither; {@linkcode RangeError} for a misaligned offset or too little room.
 */
export function placeIn<T extends SyncPrimitive>(
  type: string,
  bytes: number,
  memory: SharedMemory | SharedArrayBuffer,
  offset: number,
  make: () => T,
): T {
  if (memory instanceof SharedArrayBuffer) {
    checkPlace(type, memory.byteLength, offset, bytes);
    return build(onBuffer(type, memory, offset), make);
  }
  if (memory === null || typeof memory !== "object" || !("address" in memory) || !("buffer" in memory)) {
    throw new TypeError(`Cannot place a ${type}: memory must be a SharedMemory segment or a SharedArrayBuffer`);
  }
  const buffer = memory.buffer; // throws ClosedError once closed
  checkPlace(type, buffer.byteLength, offset, bytes);
  const ffi = loadedNative();
  if (!ffi) throw new UnsupportedError(`Cannot place a ${type} in a segment: FFI is not loaded`);
  const i32 = new Int32Array(buffer);
  return build(new Words(i32, offset / 4, futexWaiter(ffi, i32, memory.address), true, undefined), make);
}

/** The deadline of a `timeout` option, validated (before a wait starts, so a bad option changes nothing). */
export function deadlineOf(timeout: number | undefined, what: string): Deadline {
  if (timeout !== undefined && !(timeout >= 0)) {
    throw new RangeError(`Cannot ${what} with timeout ${timeout}: it must be >= 0 milliseconds`);
  }
  return Deadline.after(timeout);
}

function timedOut(what: string, timeout: number | undefined): TimeoutError {
  return new TimeoutError(`Cannot ${what}: timed out after ${timeout} ms`);
}
