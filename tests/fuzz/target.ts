/**
 * A fuzz target: one decoder that a hostile peer can feed, the inputs such a peer could send, and what the decoder
 * may do with them. Every target runs twice: a few hundred cases in `npm test` (`tests/fuzz.test.ts`) and a million
 * or more in `npm run fuzz` (`scripts/fuzz.ts`), which also reports the slowest input and the peak RSS.
 *
 * The contract a target checks, for every input: the decoder returns, or throws one of the target's `expected` error
 * classes (a `ProtocolError` and its kind); it never throws anything else, never hangs, and keeps nothing that grows
 * with the inputs it rejected.
 *
 * @module
 */
import type fc from "fast-check";

/** One decoder under fuzzing. */
export interface FuzzTarget<T = unknown> {
  /** Short name, as `npm run fuzz -- <name>` takes it. */
  readonly name: string;
  /** What a hostile peer may send: mostly near-valid inputs (mutated valid ones), some pure noise. */
  readonly inputs: fc.Arbitrary<T>;
  /**
   * Feeds one input to the decoder. It throws only to report a broken contract (an unexpected error class, a
   * wrong result); errors the decoder is allowed to throw are caught inside and checked with `expected`.
   */
  run(input: T): void | Promise<void>;
  /** Releases whatever `run` kept between cases (sockets, segments); called once at the end. */
  close?(): void | Promise<void>;
}

/**
 * Runs `decode(input)` and accepts a return or one of `allowed` (by class); anything else is rethrown with the
 * input's size, so the failing case reads clearly.
 */
export function expectOnly(allowed: readonly ErrorClass[], decode: () => unknown): void {
  try {
    decode();
  } catch (e) {
    check(allowed, e);
  }
}

/** {@linkcode expectOnly} for a decoder that settles later. */
export async function expectOnlyAsync(allowed: readonly ErrorClass[], decode: () => Promise<unknown>): Promise<void> {
  try {
    await decode();
  } catch (e) {
    check(allowed, e);
  }
}

/** An error class, as `instanceof` takes it. */
// deno-lint-ignore no-explicit-any
export type ErrorClass = abstract new (...args: any[]) => Error;

function check(allowed: readonly ErrorClass[], e: unknown): void {
  if (allowed.some((c) => e instanceof c)) return;
  throw new Error(`the decoder threw ${(e as Error)?.name}: ${(e as Error)?.message}`, { cause: e });
}
