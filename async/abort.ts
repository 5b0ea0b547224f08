/**
 * Listening to an `AbortSignal` without leaking the listener.
 *
 * @module
 */

const nothing = (): void => {};

/**
 * Calls `fn` once when `signal` aborts, and at once (synchronously) when it already has. Returns the function that
 * stops listening; call it when the operation ends some other way, so the signal does not hold on to `fn`.
 *
 * @example
 * ```ts
 * const stop = onAbort(signal, () => socket.close());
 * try { await work(); } finally { stop(); }
 * ```
 */
export function onAbort(signal: AbortSignal | undefined, fn: () => void): () => void {
  if (signal === undefined) return nothing;
  if (signal.aborted) {
    fn();
    return nothing;
  }
  signal.addEventListener("abort", fn, { once: true });
  return () => signal.removeEventListener("abort", fn);
}
