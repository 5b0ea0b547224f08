/**
 * The base of every primitive in `sync/` (CPython multiprocessing's `SemLock` is the model): what they share in
 * their public face, {@linkcode SyncPrimitive} (a `handle`), the options of their waits and their guards. Where a
 * primitive's words live and how it waits on them is written once, in `sync/words.ts` (internal: nothing there
 * appears in a public signature).
 *
 * @module
 */
import { claim, words } from "./words.ts";

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

/** Options of every waiting operation. */
export interface WaitOptions {
  /** Gives up after this many milliseconds with `TimeoutError`. */
  timeout?: number;
  /** Aborts the wait with the signal's reason. */
  signal?: AbortSignal;
}

/**
 * What every primitive in `sync/` shares: its words (see the module doc) and the `handle` that rebuilds it in
 * another worker.
 *
 * @example
 * ```ts
 * import { Event, Mutex, Semaphore, type SyncPrimitive } from "ipckit";
 * const all: SyncPrimitive[] = [new Mutex(), new Semaphore(1), new Event()];
 * console.log(all.map((p) => p.handle!.type)); // ["Mutex", "Semaphore", "Event"]: post these to workers
 * ```
 */
export abstract class SyncPrimitive {
  /** Takes the words `X.from()` or `X.in()` placed, or allocates `bytes` on a new SharedArrayBuffer. */
  protected constructor(type: string, bytes: number, extra?: number) {
    claim(this, type, bytes, extra);
  }

  /** What `from()` needs in another worker (undefined for a primitive in a segment: place it there instead). */
  get handle(): SyncHandle | undefined {
    return words(this).handle;
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
