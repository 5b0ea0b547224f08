/** Assertions and set-up shared by the Channel and datagram conformance suites. */
import assert from "node:assert/strict";
import { TimeoutError } from "../../mod.ts";
import type { Channel } from "../../mod.ts";
import { firstDifference, pattern, sameBytes } from "./data.ts";
import type { Fixture, Pair } from "./fixtures.ts";

/** Asserts two message lists are equal, naming the first difference. */
export function assertSame(sent: Uint8Array[], got: Uint8Array[]): void {
  const diff = firstDifference(sent, got);
  assert.equal(diff, undefined, diff);
}

/** Runs `fn` on a fresh in-process pair, cleaned up afterwards whatever happens. */
export async function withPair(fixture: Fixture, fn: (p: Pair) => Promise<void>, options = {}): Promise<void> {
  if (typeof fixture.pair === "string") throw new Error("no pair");
  const p = await fixture.pair(options);
  try {
    await fn(p);
  } finally {
    await p.cleanup();
  }
}

/**
 * Checks that receive() on `b` rejects on abort (pending and already aborted), on timeout and on a bad timeout, and
 * that send() on `a` rejects when already aborted; none of them may take a message (the caller checks the next one).
 */
export async function abortsAndTimeouts(a: Channel, b: Channel): Promise<void> {
  const ac = new AbortController();
  const pending = assert.rejects(b.receive({ signal: ac.signal }), (e: Error) => e.name === "AbortError");
  ac.abort();
  await pending;
  await assert.rejects(b.receive({ signal: AbortSignal.abort() }), (e: Error) => e.name === "AbortError");
  await assert.rejects(b.receive({ timeout: 20 }), TimeoutError);
  await assert.rejects(
    a.send(new Uint8Array(1), { signal: AbortSignal.abort() }),
    (e: Error) => e.name === "AbortError",
  );
  await assert.rejects(b.receive({ timeout: -1 }), RangeError);
}

/**
 * Both sides send before reading: sends `n` messages of `size` bytes while the peer (started with
 * `--flood n:size`) sends its own `n`, then reads the peer's flood and the echo of ours, every byte checked.
 */
export async function floodBothWays(channel: Channel, n: number, size: number): Promise<void> {
  for (let i = 0; i < n; i++) await channel.send(pattern(i + 1, size));
  for (let i = 0; i < n; i++) assert.ok(sameBytes(await channel.receive(), pattern(i, size)), `flood ${i}`);
  for (let i = 0; i < n; i++) assert.ok(sameBytes(await channel.receive(), pattern(i + 1, size)), `echo ${i}`);
}
