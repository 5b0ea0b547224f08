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
 * The layout, byte for byte, and the moves on it are in `pubsub_layout.ts`. Waiting: a subscriber spins up to
 * `spin` microseconds, then sleeps on the write position (futex between processes, `Atomics.waitAsync` between
 * threads) at most 100 ms at a time, re-checking that the publisher lives; the publisher is woken only when a
 * subscriber announced that it sleeps.
 *
 * @module
 */
import { onAbort, retry } from "../async/mod.ts";
import { abortError, ClosedError, IpcError, MessageTooLargeError, NotFoundError, TimeoutError } from "../errors.ts";
import { type Native, native } from "../ffi/native.ts";
import { alive, selfThread } from "../os/liveness.ts";
import { type LoanOwner, ReceiveLoan, SendLoan } from "./loan.ts";
import {
  CLOSED,
  geometry,
  I_FLAGS,
  I_PROGRESS,
  I_PUB_ID,
  I_PUB_SLEEPING,
  I_PUB_TAG,
  I_SLEEPERS,
  I_WRITE,
  initLayout,
  MAX_HISTORY,
  MAX_SLOTS,
  type Policy,
  PublisherCore,
  PubSubMemory,
  readLayout,
  recordSize,
  S_ID,
  S_SLEEPING,
  S_TAG,
  SubscriberCore,
  sweep,
} from "./pubsub_layout.ts";
import { ringCapacity } from "./ring.ts";
import { checkName, SharedMemory } from "./segment.ts";
import { atomicsWaiter, futexWaiter, type Waiter } from "./wait.ts";

export type { Policy } from "./pubsub_layout.ts";

/** Longest single sleep: waits re-check liveness and flags at least this often. */
const SLEEP_MS = 100;
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

/** Options of a wait: an abort signal and a timeout in milliseconds. */
export interface WaitOptions {
  signal?: AbortSignal;
  timeout?: number;
}

/** What a thread needs to subscribe to an in-process publisher: post it to a Worker. */
export interface PubSubHandle {
  readonly buffer: SharedArrayBuffer;
}

/** What a side holds of its memory: how it waits, and how it lets go. */
interface Parts {
  m: PubSubMemory;
  waiter: Waiter;
  ffi: Native;
  segment?: SharedMemory;
  handle?: PubSubHandle;
}

function deadlineOf(timeout: number | undefined, what: string): number {
  if (timeout === undefined) return Infinity;
  if (!(timeout >= 0)) throw new RangeError(`Cannot ${what}: timeout must be >= 0 milliseconds`);
  return performance.now() + timeout;
}

function checkBytes(message: unknown, what: string): Uint8Array {
  if (!(message instanceof Uint8Array)) throw new TypeError(`Cannot ${what}: the message must be a Uint8Array`);
  return message;
}

function intOption(value: unknown, fallback: number, min: number, max: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
    throw new RangeError(`Cannot use ${what} ${String(value)}: it must be an integer from ${min} to ${max}`);
  }
  return v as number;
}

/**
 * The one writer of a publish-subscribe segment. `close()` ends it for the subscribers (they receive what was
 * published, then `ClosedError`) and removes the segment's name.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * await using pub = await shm.publisher({ capacity: 1024, policy: "overwrite" }); // never waits for readers
 * await using sub = await shm.subscriber(pub.handle);
 * const loan = pub.tryLoan(3)!; // bytes of the ring, filled in place
 * loan.bytes.set([7, 8, 9]);
 * loan.commit();
 * console.log(pub.subscriberCount, await sub.receive()); // 1 Uint8Array(3) [7, 8, 9]
 * ```
 */
export class Publisher implements AsyncDisposable {
  /** The segment's name; undefined for an in-process publisher. */
  readonly name: string | undefined;
  /** The policy for slow subscribers. */
  readonly policy: Policy;
  /** Data bytes of the ring. */
  readonly capacity: number;
  /** The largest message: `capacity - 16`. */
  readonly maxMessage: number;
  /** How many past messages a new subscriber may ask for. */
  readonly history: number;
  readonly #p: Parts;
  readonly #core: PublisherCore;
  readonly #what: string;
  #closed = false;
  #loan: SendLoan | undefined;
  #lastCheck = 0;
  /** The wait in progress, if any (close lets it end before unmapping). */
  #sleep: Promise<void> | undefined;
  readonly #owner: LoanOwner;

  /** @internal Made by {@linkcode publisher}. */
  constructor(parts: Parts, name: string | undefined) {
    this.#p = parts;
    this.name = name;
    this.#what = name === undefined ? "in-process pub-sub" : `pub-sub "${name}"`;
    const m = parts.m;
    this.policy = m.policy;
    this.capacity = m.capacity;
    this.maxMessage = m.maxMessage;
    this.history = m.history;
    this.#core = new PublisherCore(m);
    this.#owner = {
      commit: (loan, length) => this.#commitLoan(loan, length),
      abandon: () => void (this.#loan = undefined),
      release: () => {},
    };
  }

  /**
   * What a Worker subscribes with (`subscriber(handle)`); in-process publishers only.
   *
   * @throws {TypeError} for a named publisher: subscribe by name.
   */
  get handle(): PubSubHandle {
    if (this.#p.handle === undefined) {
      throw new TypeError(`Cannot hand out ${this.#what}: subscribe to it by name`);
    }
    return this.#p.handle;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Messages published so far. */
  get published(): number {
    return this.#core.published;
  }

  /** Live subscribers now (dead ones found on the way are dropped). */
  get subscriberCount(): number {
    if (this.#closed) return 0;
    return sweep(this.#p.m, (id, tag) => alive(id, tag, this.#p.ffi));
  }

  #check(message: Uint8Array, doing: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${doing} ${this.#what}: it is closed`);
    if (this.#loan !== undefined) throw new IpcError(`Cannot ${doing} ${this.#what}: a loan is out (commit it first)`);
    if (message.length > this.maxMessage) {
      throw new MessageTooLargeError(
        `Cannot ${doing} ${this.#what}: ${message.length} bytes, more than its limit of ${this.maxMessage}`,
        message.length,
        this.maxMessage,
      );
    }
  }

  /**
   * Publishes `message` now if there is room: always with `"overwrite"`; with `"block"`, false when the slowest
   * subscriber has not read far enough.
   *
   * @throws {ClosedError} after close; {@linkcode MessageTooLargeError} over `maxMessage`; `IpcError` while a loan
   * is out; {@linkcode ProtocolError} when the segment is corrupt.
   */
  tryPublish(message: Uint8Array): boolean {
    this.#check(checkBytes(message, `publish to ${this.#what}`), "publish to");
    const core = this.#core;
    if (!core.makeRoom(recordSize(message.length))) return false;
    core.write(message);
    core.commit(message.length);
    this.#wake();
    return true;
  }

  /**
   * Publishes `message`, waiting (policy `"block"`) until the slowest live subscriber made room.
   *
   * @throws {TimeoutError} when no room came within `timeout` ms; the signal's reason when it aborts; as
   * {@linkcode tryPublish}.
   */
  async publish(message: Uint8Array, options: WaitOptions = {}): Promise<void> {
    const deadline = deadlineOf(options.timeout, `publish to ${this.#what}`);
    while (!this.tryPublish(message)) await this.#awaitRoom(recordSize(message.length), deadline, options.signal);
  }

  /**
   * Lends `size` bytes of the ring to fill in place, then `commit(length)` publishes them; undefined when there is
   * no room now (policy `"block"`).
   *
   * @throws as {@linkcode tryPublish}.
   */
  tryLoan(size: number): SendLoan | undefined {
    if (!(Number.isSafeInteger(size) && size >= 0)) throw new RangeError(`Cannot lend ${size} bytes`);
    this.#check({ length: size } as Uint8Array, "lend bytes of");
    if (!this.#core.makeRoom(recordSize(size))) return undefined;
    const view = this.#core.view(size);
    this.#loan = new SendLoan(this.#owner, view ?? new Uint8Array(size));
    return this.#loan;
  }

  /**
   * Lends `size` bytes of the ring, waiting for room as {@linkcode publish} does.
   *
   * @throws as {@linkcode publish}.
   */
  async loan(size: number, options: WaitOptions = {}): Promise<SendLoan> {
    const deadline = deadlineOf(options.timeout, `lend bytes of ${this.#what}`);
    for (;;) {
      const loan = this.tryLoan(size);
      if (loan !== undefined) return loan;
      await this.#awaitRoom(recordSize(size), deadline, options.signal);
    }
  }

  #commitLoan(loan: SendLoan, length: number): void {
    this.#loan = undefined;
    if (this.#closed) throw new ClosedError(`Cannot commit a loan of ${this.#what}: it is closed`);
    const view = this.#core.view(loan.bytes.length);
    if (view === undefined || view.buffer !== loan.bytes.buffer || view.byteOffset !== loan.bytes.byteOffset) {
      this.#core.write(loan.bytes.subarray(0, length));
    }
    this.#core.commit(length);
    this.#wake();
  }

  #wake(): void {
    if (Atomics.load(this.#p.m.h, I_SLEEPERS) !== 0) this.#p.waiter.wake(I_WRITE);
  }

  /** Waits until the subscriber that stopped the publisher moved (or died: it is dropped). */
  async #awaitRoom(size: number, deadline: number, signal: AbortSignal | undefined): Promise<void> {
    const { m, waiter, ffi } = this.#p;
    const core = this.#core;
    const now = performance.now();
    if (now - this.#lastCheck >= SLEEP_MS) {
      this.#lastCheck = now;
      sweep(m, (id, tag) => alive(id, tag, ffi));
    }
    if (signal?.aborted) throw abortError(signal);
    const slot = core.blocker;
    if (now >= deadline) {
      const pid = slot >= 0 ? Atomics.load(m.slots, m.at(slot, S_ID)) : 0;
      throw new TimeoutError(`Cannot publish to ${this.#what}: a subscriber (pid ${pid}) did not make room in time`);
    }
    const unlisten = onAbort(signal, () => waiter.wake(I_PROGRESS));
    Atomics.store(m.h, I_PUB_SLEEPING, 1);
    try {
      const progress = Atomics.load(m.h, I_PROGRESS);
      if (!core.makeRoom(size)) {
        this.#sleep = waiter.wait(I_PROGRESS, progress, Math.min(SLEEP_MS, deadline - now));
        await this.#sleep;
      }
    } finally {
      this.#sleep = undefined;
      if (!this.#closed) Atomics.store(m.h, I_PUB_SLEEPING, 0);
      unlisten();
    }
  }

  /**
   * Ends publishing: subscribers receive everything published, then `ClosedError`. Removes the segment's name.
   * Idempotent.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#loan = undefined;
    const { m, waiter, segment } = this.#p;
    Atomics.or(m.h, I_FLAGS, CLOSED);
    waiter.wake(I_WRITE);
    if (this.#sleep !== undefined) {
      // A publish() waits for room in this process: let it end (it rejects with ClosedError) before unmapping.
      waiter.wake(I_PROGRESS);
      await this.#sleep;
    }
    if (segment !== undefined) {
      try {
        segment.unlink();
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
      } finally {
        segment.close();
      }
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * One reader of a publish-subscribe segment: every message published after it joined, in order. `close()` leaves.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * await using pub = await shm.publisher({ capacity: 1024, history: 8 });
 * for (let i = 0; i < 3; i++) await pub.publish(new Uint8Array([i]));
 * await using sub = await shm.subscriber(pub.handle, { history: 2 }); // also the last 2 published
 * {
 *   using first = await sub.receiveLoan(); // read where it lies in the ring
 *   console.log(first.bytes[0]); // 1
 * }
 * console.log((await sub.receive())[0]); // 2
 * ```
 */
export class Subscriber implements AsyncDisposable, AsyncIterable<Uint8Array> {
  readonly #p: Parts;
  readonly #core: SubscriberCore;
  readonly #what: string;
  readonly #spinUs: number;
  #closed = false;
  #loan: ReceiveLoan | undefined;
  #lastCheck = 0;
  /** The wait in progress, if any (close lets it end before unmapping). */
  #sleep: Promise<void> | undefined;
  readonly #owner: LoanOwner;

  /** @internal Made by {@linkcode subscriber}. */
  constructor(parts: Parts, core: SubscriberCore, what: string, spinUs: number) {
    this.#p = parts;
    this.#core = core;
    this.#what = what;
    this.#spinUs = spinUs;
    this.#owner = {
      commit: () => {},
      abandon: () => {},
      release: () => this.#releaseLoan(),
    };
  }

  /** The policy the publisher chose. */
  get policy(): Policy {
    return this.#p.m.policy;
  }

  /** True once closed. */
  get closed(): boolean {
    return this.#closed;
  }

  #check(doing: string): void {
    if (this.#closed) throw new ClosedError(`Cannot ${doing} ${this.#what}: this subscriber is closed`);
    if (this.#loan !== undefined) throw new IpcError(`Cannot ${doing} ${this.#what}: a loan is out (release it)`);
  }

  /** Nothing at R: ClosedError when the publisher closed (and nothing is left), otherwise undefined. */
  #nothing(): undefined {
    const m = this.#p.m;
    if ((Atomics.load(m.h, I_FLAGS) & CLOSED) !== 0 && this.#core.peek() < 0) {
      throw new ClosedError(`Cannot receive from ${this.#what}: the publisher closed it`);
    }
    return undefined;
  }

  /**
   * The next message if there is one now.
   *
   * @throws {LaggedError} (policy `"overwrite"`) when messages were overwritten unread: receive again to go on
   * from the oldest one still there. {@linkcode ClosedError} once the publisher closed and everything was received,
   * or after `close()`. {@linkcode ProtocolError} when the segment is corrupt.
   */
  tryReceive(): Uint8Array | undefined {
    this.#check("receive from");
    const core = this.#core;
    const n = core.peek();
    if (n < 0) return this.#nothing();
    const out = new Uint8Array(n);
    core.copyTo(out, n);
    core.confirm();
    if (core.advance()) this.#wakePublisher();
    return out;
  }

  /**
   * The next message, waiting for it.
   *
   * @throws {TimeoutError} when none came within `timeout` ms; {@linkcode ClosedError} when the publisher closed
   * (after the last message) or died (after its last complete message); the signal's reason; as
   * {@linkcode tryReceive}.
   */
  async receive(options: WaitOptions = {}): Promise<Uint8Array> {
    const deadline = deadlineOf(options.timeout, `receive from ${this.#what}`);
    for (;;) {
      const got = this.tryReceive();
      if (got !== undefined) return got;
      await this.#awaitMessage(deadline, options.signal);
    }
  }

  /**
   * The next message lent where it lies in the ring, if there is one now: read `bytes`, then `release()`. With
   * policy `"overwrite"`, `release()` throws `LaggedError` when the publisher overwrote the message while it was
   * lent (drop what was read from it); with `"block"` it cannot be overwritten.
   *
   * @throws as {@linkcode tryReceive}.
   */
  tryReceiveLoan(): ReceiveLoan | undefined {
    this.#check("receive from");
    const core = this.#core;
    const n = core.peek();
    if (n < 0) return this.#nothing();
    const at = core.payloadOffset;
    const m = this.#p.m;
    let bytes: Uint8Array;
    if (at + n <= m.capacity) bytes = m.data.subarray(at, at + n);
    else {
      bytes = new Uint8Array(n);
      core.copyTo(bytes, n);
    }
    core.confirm(); // (overwrite) the record was whole when lent; release() checks again
    this.#loan = new ReceiveLoan(this.#owner, bytes);
    return this.#loan;
  }

  /**
   * The next message lent where it lies in the ring, waiting for it.
   *
   * @throws as {@linkcode receive}.
   */
  async receiveLoan(options: WaitOptions = {}): Promise<ReceiveLoan> {
    const deadline = deadlineOf(options.timeout, `receive from ${this.#what}`);
    for (;;) {
      const got = this.tryReceiveLoan();
      if (got !== undefined) return got;
      await this.#awaitMessage(deadline, options.signal);
    }
  }

  #releaseLoan(): void {
    this.#loan = undefined;
    if (this.#closed) return;
    this.#core.confirm();
    if (this.#core.advance()) this.#wakePublisher();
  }

  #wakePublisher(): void {
    const m = this.#p.m;
    Atomics.add(m.h, I_PROGRESS, 1);
    this.#p.waiter.wake(I_PROGRESS);
  }

  async #awaitMessage(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    const { m, waiter, ffi } = this.#p;
    const core = this.#core;
    if (this.#spinUs > 0) {
      const until = performance.now() + this.#spinUs / 1000;
      while (performance.now() < until) {
        await undefined;
        if (this.#closed || core.peek() >= 0) return;
      }
    }
    if (signal?.aborted) throw abortError(signal);
    const now = performance.now();
    if (now >= deadline) throw new TimeoutError(`Cannot receive from ${this.#what}: nothing came in time`);
    if (now - this.#lastCheck >= SLEEP_MS) {
      this.#lastCheck = now;
      if (!core.owned()) {
        throw new ClosedError(`Cannot receive from ${this.#what}: the publisher dropped this subscriber`);
      }
      const id = Atomics.load(m.h, I_PUB_ID);
      if (!alive(id, Atomics.load(m.h, I_PUB_TAG) >>> 0, ffi) && core.peek() < 0) {
        throw new ClosedError(`Cannot receive from ${this.#what}: its publisher (pid ${id}) died`);
      }
    }
    const sleeping = m.at(core.slot, S_SLEEPING);
    const unlisten = onAbort(signal, () => waiter.wake(I_WRITE));
    Atomics.store(m.slots, sleeping, 1);
    Atomics.add(m.h, I_SLEEPERS, 1);
    try {
      const w = Atomics.load(m.h, I_WRITE);
      if (core.peek() < 0 && (Atomics.load(m.h, I_FLAGS) & CLOSED) === 0) {
        this.#sleep = waiter.wait(I_WRITE, w, Math.min(SLEEP_MS, deadline - now));
        await this.#sleep;
      }
    } finally {
      this.#sleep = undefined;
      // Once closed, the slot is not this subscriber's any more (close cleared its flag).
      if (!this.#closed && Atomics.exchange(m.slots, sleeping, 0) === 1) Atomics.sub(m.h, I_SLEEPERS, 1);
      unlisten();
    }
  }

  /** Messages until the publisher closes (a `LaggedError` ends the loop: iterate again to go on). */
  async *[Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    for (;;) {
      try {
        yield await this.receive();
      } catch (e) {
        if (e instanceof ClosedError) return;
        throw e;
      }
    }
  }

  /** Leaves: frees this subscriber's slot (the publisher no longer waits for it). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#loan = undefined;
    const { m, segment, waiter } = this.#p;
    m.drop(this.#core.slot, this.#core.gen);
    this.#wakePublisher();
    if (this.#sleep !== undefined) {
      // A receive() waits in this process: let it end (it rejects with ClosedError) before unmapping.
      waiter.wake(I_WRITE);
      await this.#sleep;
    }
    segment?.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
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
  const g = geometry(capacity, slots, history);
  const ffi = await native();
  const me = selfThread(ffi);
  if (name === undefined) {
    const buffer = new SharedArrayBuffer(g.size);
    initLayout(buffer, g, policy, history, me);
    const m = new PubSubMemory(buffer, "publish to in-process pub-sub");
    return new Publisher({ m, waiter: atomicsWaiter(new Int32Array(buffer)), ffi, handle: { buffer } }, undefined);
  }
  const segment = await SharedMemory.create(name, { size: g.size, mode: options.mode ?? 0o600 });
  try {
    initLayout(segment.buffer, g, policy, history, me);
    const m = new PubSubMemory(segment.buffer, `publish to pub-sub "${name}"`);
    const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
    return new Publisher({ m, waiter, ffi, segment }, name);
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
    return new Subscriber(parts, core, "in-process pub-sub", spin);
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
    return new Subscriber({ m, waiter, ffi, segment }, core, `pub-sub "${name}"`, spin);
  } catch (e) {
    segment.close();
    throw e;
  }
}

/** The identity fields of slot `i`, for tests and tools. @internal */
export function slotOwner(m: PubSubMemory, i: number): { id: number; tag: number } {
  return { id: Atomics.load(m.slots, m.at(i, S_ID)), tag: Atomics.load(m.slots, m.at(i, S_TAG)) >>> 0 };
}
