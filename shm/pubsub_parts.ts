/**
 * What both sides of publish-subscribe hold (`shm/pubsub_publisher.ts`, `shm/pubsub_subscriber.ts`): the memory and
 * how to wait on it, the wait options, argument checks, and their live counters. `shm/pubsub.ts` makes the sides.
 *
 * @module
 */
import type { Native } from "../ffi/native.ts";
import type { PubSubMemory } from "./pubsub_layout.ts";
import type { SharedMemory } from "./segment.ts";
import { type Counters, track } from "./stats.ts";
import type { Waiter } from "./wait.ts";

/** @internal Longest single sleep: waits re-check liveness and flags at least this often. */
export const SLEEP_MS = 100;

/** Options of a wait: an abort signal and a timeout in milliseconds. */
export interface WaitOptions {
  signal?: AbortSignal;
  timeout?: number;
}

/** What a thread needs to subscribe to an in-process publisher: post it to a Worker. */
export interface PubSubHandle {
  readonly buffer: SharedArrayBuffer;
}

/** @internal What a side holds of its memory: how it waits, and how it lets go. */
export interface Parts {
  m: PubSubMemory;
  waiter: Waiter;
  ffi: Native;
  /** The segment's name; undefined in process (threads). */
  name?: string;
  segment?: SharedMemory;
  handle?: PubSubHandle;
  /** Microseconds the publisher spins for room before it sleeps (50 when not given). */
  spinUs?: number;
}

/** @internal What a spin awaits for one microtask turn: one resolved promise for all (`await undefined` makes one). */
export const DONE: Promise<void> = Promise.resolve();

/** @internal The deadline (`performance.now()` ms) of a wait of `timeout` ms; Infinity without one. */
export function deadlineOf(timeout: number | undefined, what: string): number {
  if (timeout === undefined) return Infinity;
  if (!(timeout >= 0)) throw new RangeError(`Cannot ${what}: timeout must be >= 0 milliseconds`);
  return performance.now() + timeout;
}

/** @internal `message`, checked to be bytes. */
export function checkBytes(message: unknown, what: string): Uint8Array {
  if (!(message instanceof Uint8Array)) throw new TypeError(`Cannot ${what}: the message must be a Uint8Array`);
  return message;
}

// Where a side's counters are (`COUNTERS.channel` of shm/stats.ts).
/** @internal */
export const MESSAGES_OUT = 0, BYTES_OUT = 1, MESSAGES_IN = 2, BYTES_IN = 3, SLEEPS = 4, WAKES = 5, LOST = 9;
const CAPACITY = 6;
/** Bytes of a stats slot's name (shm/stats.ts). */
const NAME_BYTES = 52;

/**
 * @internal A side's live counters (`shm/stats.ts`, kind `channel`): `<segment> (publisher)` and
 * `<segment> (subscriber <slot>)`, or `thread publisher` and `thread publisher (subscriber <slot>)` in process; a
 * long segment name is cut so that `(<what>)` stays whole.
 */
export function trackSide(parts: Parts, what: string): Counters {
  const suffix = ` (${what})`;
  let base = parts.name ?? "thread publisher";
  const encoder = new TextEncoder();
  while (base.length > 0 && encoder.encode(base + suffix).length > NAME_BYTES) base = base.slice(0, -1);
  const c = track("channel", parts.name !== undefined || what !== "publisher" ? base + suffix : base);
  c.values[CAPACITY] = parts.m.capacity;
  return c;
}
