/**
 * Who holds a lock: the id a primitive records as owner.
 *
 * - Between processes: the pid, so that a waiter can tell when the owner died (`kill(pid, 0)`).
 * - Between threads: an id drawn once per thread (each worker loads this module anew), at random in 1..2^29-1, so
 *   that `unlock()` can refuse a thread that does not hold the lock. Two threads drawing the same id (about one
 *   chance in 500 million per pair) would only weaken that check.
 *
 * @module
 */
import { loadedNative } from "../ffi/native.ts";
import { UnsupportedError } from "../errors.ts";

const MAX_ID = (1 << 29) - 1;
let thread = 0;
let pid = 0;

/** This thread's id for thread-shared primitives. */
export function threadId(): number {
  if (thread === 0) thread = 1 + Math.floor(Math.random() * (MAX_ID - 1));
  return thread;
}

/** This process's pid, for process-shared primitives (FFI is loaded once a segment is mapped). */
export function processId(): number {
  if (pid !== 0) return pid;
  const ffi = loadedNative();
  if (!ffi) throw new UnsupportedError("Cannot use a process-shared primitive: FFI is not loaded");
  pid = ffi.call.getpid();
  if (pid > MAX_ID) {
    throw new UnsupportedError(`Cannot use a process-shared primitive: pid ${pid} needs more than 29 bits`);
  }
  return pid;
}
