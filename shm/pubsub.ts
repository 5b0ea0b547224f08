/**
 * Publish-subscribe over shared memory: one {@linkcode Publisher} writes each message once into a ring; any number
 * of {@linkcode Subscriber}s (up to `maxSubscribers`), in processes of any runtime (or C, or Python: see
 * docs/shm_pubsub.md) or in threads, read every message published after they joined, and the last `history` ones
 * if they ask. Subscribers join and leave at any time; a dead one (pid and start time, `os/liveness.ts`) is dropped.
 *
 * Slow subscribers, by the policy chosen at creation:
 * - `"block"` (the default): the publisher waits for the slowest live subscriber (`publish` with a `timeout`
 *   rejects with `TimeoutError`; `tryPublish` returns false). Nothing is ever lost.
 * - `"overwrite"`: the publisher never waits; a subscriber that fell a whole ring behind gets a `LaggedError`
 *   with how many messages it missed, then goes on from the oldest message still there (tokio's broadcast).
 *
 * The layout, byte for byte, is in `pubsub_layout.ts`, the moves on it in `pubsub_ring.ts`; the sides are
 * `pubsub_publisher.ts` and `pubsub_subscriber.ts`, over what both hold (`pubsub_parts.ts`); this file makes them.
 * Waiting: a subscriber spins up to `spin` microseconds, then sleeps on the write position (futex between processes,
 * `Atomics.waitAsync` between threads) at most 100 ms at a time, re-checking that the publisher lives; the publisher
 * is woken only when a subscriber announced that it sleeps. Both sides count what they do in this process's live
 * stats (`shm/stats.ts`, `ipckit stats`): `/<name> (publisher)` and `/<name> (subscriber <slot>)` (in process:
 * `thread publisher`...).
 *
 * @module
 */
import { retry } from "../async/mod.ts";
import { IpcError, NotFoundError } from "../errors.ts";
import { native } from "../ffi/native.ts";
import { alive, selfThread } from "../os/liveness.ts";
import {
  geometry,
  initLayout,
  MAX_HISTORY,
  MAX_SLOTS,
  type Policy,
  PubSubMemory,
  readLayout,
  S_ID,
  S_TAG,
} from "./pubsub_layout.ts";
import { SubscriberCore } from "./pubsub_ring.ts";
import type { PubSubHandle } from "./pubsub_parts.ts";
import { Publisher } from "./pubsub_publisher.ts";
import { Subscriber } from "./pubsub_subscriber.ts";
import { ringCapacity } from "./ring.ts";
import { checkName, SharedMemory } from "./segment.ts";
import { atomicsWaiter, futexWaiter } from "./wait.ts";

export type { Policy } from "./pubsub_layout.ts";
export type { PubSubHandle, WaitOptions } from "./pubsub_parts.ts";
export { Publisher } from "./pubsub_publisher.ts";
export { Subscriber } from "./pubsub_subscriber.ts";

const DEFAULT_CAPACITY = 1 << 20;
const DEFAULT_SLOTS = 64;
const DEFAULT_SPIN_US = 50;

/** Options of {@linkcode publisher}. */
export interface PublisherOptions {
  /** Data bytes of the ring (rounded up to a power of two, at least 64); 1 MiB by default. */
  capacity?: number;
  /** How many past messages a new subscriber may ask for (those still in the ring); 0 by default. */
  history?: number;
  /** What a slow subscriber does to the publisher: `"block"` (the default) or `"overwrite"`. */
  policy?: Policy;
  /** Subscribers at once, 1 to 1024; 64 by default. */
  maxSubscribers?: number;
  /** Permission bits of the segment; 0o600 by default. */
  mode?: number;
  /** Microseconds to spin before sleeping when a subscriber holds the ring full (`"block"`); 50 by default. */
  spin?: number;
}

/** Options of {@linkcode subscriber}. */
export interface SubscriberOptions {
  /** Receive also the last `history` messages (at most the publisher's `history`, those still in the ring). */
  history?: number;
  /** Milliseconds to wait for the publisher to create the segment; 0 by default. */
  wait?: number;
  /** Microseconds to spin before sleeping when there is nothing to receive; 50 by default. */
  spin?: number;
  /** Stops the wait for the segment. */
  signal?: AbortSignal;
}

function intOption(value: unknown, fallback: number, min: number, max: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
    throw new RangeError(`Cannot use ${what} ${String(value)}: it must be an integer from ${min} to ${max}`);
  }
  return v as number;
}

/**
 * Creates a publisher: on a new shared memory segment `name` (subscribers in any process open it by name), or,
 * without a name, on a SharedArrayBuffer (threads subscribe with its `handle`).
 *
 * @throws {AlreadyExistsError} when the name exists; `TypeError` for a bad name; `RangeError` for a bad option.
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const name = `/ipckit-news-${(await runtime()).pid}`;
 * await using news = await shm.publisher(name, { capacity: 1 << 16, history: 2 });
 * await news.publish(new TextEncoder().encode("first"));
 * await news.publish(new TextEncoder().encode("second"));
 * await using late = await shm.subscriber(name, { history: 1 }); // usually in another process
 * console.log(new TextDecoder().decode(await late.receive())); // "second": the last one, as asked
 * ```
 */
export async function publisher(
  nameOrOptions?: string | PublisherOptions,
  maybeOptions: PublisherOptions = {},
): Promise<Publisher> {
  const name = typeof nameOrOptions === "string" ? checkName(nameOrOptions) : undefined;
  const options = (typeof nameOrOptions === "string" ? maybeOptions : nameOrOptions) ?? {};
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  const history = intOption(options.history, 0, 0, Math.min(MAX_HISTORY, capacity / 16), "history");
  const slots = intOption(options.maxSubscribers, DEFAULT_SLOTS, 1, MAX_SLOTS, "maxSubscribers");
  const policy = options.policy ?? "block";
  if (policy !== "block" && policy !== "overwrite") {
    throw new RangeError(`Cannot use policy ${String(policy)}: it must be "block" or "overwrite"`);
  }
  const spinUs = options.spin ?? DEFAULT_SPIN_US;
  if (typeof spinUs !== "number" || !(spinUs >= 0)) throw new RangeError(`Cannot use spin ${String(spinUs)}`);
  const g = geometry(capacity, slots, history);
  const ffi = await native();
  const me = selfThread(ffi);
  if (name === undefined) {
    const buffer = new SharedArrayBuffer(g.size);
    initLayout(buffer, g, policy, history, me);
    const m = new PubSubMemory(buffer, "publish to in-process pub-sub");
    return new Publisher({ m, waiter: atomicsWaiter(new Int32Array(buffer)), ffi, handle: { buffer }, spinUs });
  }
  const segment = await SharedMemory.create(name, { size: g.size, mode: options.mode ?? 0o600 });
  try {
    initLayout(segment.buffer, g, policy, history, me);
    const m = new PubSubMemory(segment.buffer, `publish to pub-sub "${name}"`);
    const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
    return new Publisher({ m, waiter, ffi, name, segment, spinUs });
  } catch (e) {
    segment.unlink();
    segment.close();
    throw e;
  }
}

/**
 * Subscribes to the publisher of segment `name` (or of an in-process publisher's `handle`): every message
 * published from now on, and the last `history` ones still there if asked.
 *
 * @throws {NotFoundError} when there is no such segment (within `wait` ms); {@linkcode ProtocolError} when it
 * holds no pub-sub of this layout version; `IpcError` when all subscriber slots are taken by live subscribers.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * await using ticks = await shm.publisher({ capacity: 4096 }); // in-process: pass ticks.handle to Workers
 * await using a = await shm.subscriber(ticks.handle);
 * await using b = await shm.subscriber(ticks.handle);
 * await ticks.publish(new Uint8Array([42])); // written once
 * console.log((await a.receive())[0], (await b.receive())[0]); // 42 42
 * ```
 */
export async function subscriber(source: string | PubSubHandle, options: SubscriberOptions = {}): Promise<Subscriber> {
  const history = intOption(options.history, 0, 0, MAX_HISTORY, "history");
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot subscribe: wait must be >= 0 milliseconds`);
  const spin = options.spin ?? DEFAULT_SPIN_US;
  if (typeof spin !== "number" || !(spin >= 0)) throw new RangeError(`Cannot use spin ${String(spin)}`);
  const ffi = await native();
  const me = selfThread(ffi);
  const isAlive = (id: number, tag: number) => alive(id, tag, ffi);
  if (typeof source !== "string") {
    if (!(source?.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError("Cannot subscribe: the source must be a segment name or a publisher's handle");
    }
    const m = new PubSubMemory(source.buffer, "receive from in-process pub-sub");
    const core = SubscriberCore.join(m, me, history, isAlive);
    const parts = { m, waiter: atomicsWaiter(new Int32Array(source.buffer)), ffi };
    return new Subscriber(parts, core, spin);
  }
  const name = checkName(source);
  const segment = await retry(async () => {
    const s = await SharedMemory.open(name);
    try {
      readLayout(s.buffer, `subscribe to pub-sub "${name}"`);
      return s;
    } catch (e) {
      s.close();
      throw e;
    }
  }, {
    wait,
    retryable: (e) =>
      e instanceof NotFoundError || (e instanceof IpcError && /holds no pub-sub|too small/.test(e.message)),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
  });
  try {
    const m = new PubSubMemory(segment.buffer, `receive from pub-sub "${name}"`);
    const core = SubscriberCore.join(m, me, history, isAlive);
    const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
    return new Subscriber({ m, waiter, ffi, name, segment }, core, spin);
  } catch (e) {
    segment.close();
    throw e;
  }
}

/** The identity fields of slot `i`, for tests and tools. @internal */
export function slotOwner(m: PubSubMemory, i: number): { id: number; tag: number } {
  return { id: Atomics.load(m.slots, m.at(i, S_ID)), tag: Atomics.load(m.slots, m.at(i, S_TAG)) >>> 0 };
}
