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

/** A byte-level change a hostile peer makes to a valid input; targets add kinds of their own around these. */
export type ByteMutation =
  | { readonly kind: "flip"; readonly at: number; readonly bit: number }
  | { readonly kind: "set"; readonly at: number; readonly byte: number }
  | { readonly kind: "cut"; readonly at: number }
  | { readonly kind: "extend"; readonly tail: Uint8Array };

/** Applies one {@linkcode ByteMutation} (in place where it can); `at` wraps around the input's length. */
export function mutateBytes(bytes: Uint8Array, m: ByteMutation): Uint8Array {
  if (m.kind === "extend") return concat([bytes, m.tail]);
  if (bytes.length === 0) return bytes;
  const at = m.at % bytes.length;
  switch (m.kind) {
    case "flip":
      bytes[at]! ^= 1 << m.bit;
      return bytes;
    case "set":
      bytes[at] = m.byte;
      return bytes;
    case "cut":
      return bytes.subarray(0, at);
  }
}

/** The bytes of `parts`, one after the other, in a fresh buffer. */
export function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
