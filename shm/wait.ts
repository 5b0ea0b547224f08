/**
 * Waiting for a 32-bit word to change, without freezing the event loop, and waking whoever waits:
 * - between threads, on a SharedArrayBuffer: `Atomics.waitAsync` / `Atomics.notify`;
 * - between processes, on a shared memory segment: futex(2), the wait running off the main thread (Deno
 *   `nonblocking` FFI, koffi `.async` on Node and Bun) and the wake a direct call (about a microsecond).
 *
 * Waits are bounded by `timeoutMs`: callers loop, re-checking their state (and the peer's liveness) in between.
 *
 * @module
 */
import { FUTEX_WAIT, FUTEX_WAKE, INT_MAX, SYS_futex } from "../ffi/constants.ts";
import type { Native } from "../ffi/native.ts";

/** Waits on and wakes the Int32 words of one buffer. */
export interface Waiter {
  /** Resolves once `words[index]` may differ from `value`, or after `timeoutMs` (the caller re-checks). */
  wait(index: number, value: number, timeoutMs: number): Promise<void>;
  /** Blocks this thread until `words[index]` may differ from `value`, or for `timeoutMs` at most. */
  waitSync(index: number, value: number, timeoutMs: number): void;
  /** Wakes `count` waiters (every waiter by default) on `words[index]`. */
  wake(index: number, count?: number): void;
}

/** A Waiter over Int32s of a SharedArrayBuffer (threads of one process). */
export function atomicsWaiter(words: Int32Array): Waiter {
  return {
    wait(index, value, timeoutMs) {
      const r = Atomics.waitAsync(words, index, value, timeoutMs);
      if (!r.async) return Promise.resolve();
      // A pending waitAsync does not keep Deno's event loop alive: a timer does. The timer also ends the wait: Deno's
      // waitAsync can time out after it (the loop then finds nothing pending and ends with the wait unsettled).
      return new Promise<void>((resolve) => {
        const keepAlive = setTimeout(resolve, Math.min(timeoutMs, 2 ** 31 - 11) + 10);
        r.value.then(() => {
          clearTimeout(keepAlive);
          resolve();
        });
      });
    },
    waitSync(index, value, timeoutMs) {
      Atomics.wait(words, index, value, timeoutMs);
    },
    wake(index, count) {
      Atomics.notify(words, index, count);
    },
  };
}

/** A Waiter over Int32s of memory mapped at `address` in every process that waits or wakes (futex). */
export function futexWaiter(ffi: Native, words: Int32Array, address: number): Waiter {
  return {
    wait(index, value, timeoutMs) {
      if (Atomics.load(words, index) !== value) return Promise.resolve();
      // struct timespec { tv_sec; tv_nsec }, alive until the call returns (the closure holds it).
      const timeout = timespec(timeoutMs);
      return ffi.callAsync.syscall(SYS_futex, address + index * 4, FUTEX_WAIT, value, timeout, null, 0).then(
        () => void timeout,
        () => {},
      );
    },
    waitSync(index, value, timeoutMs) {
      if (Atomics.load(words, index) !== value) return;
      ffi.call.syscall(SYS_futex, address + index * 4, FUTEX_WAIT, value, timespec(timeoutMs), null, 0);
    },
    wake(index, count = INT_MAX) {
      ffi.call.syscall(SYS_futex, address + index * 4, FUTEX_WAKE, count, null, null, 0);
    },
  };
}

function timespec(timeoutMs: number): BigInt64Array {
  const ms = Math.max(0, Math.min(Math.floor(timeoutMs), 2 ** 31));
  return new BigInt64Array([BigInt(Math.floor(ms / 1000)), BigInt((ms % 1000) * 1_000_000)]);
}
