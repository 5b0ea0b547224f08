/**
 * The publisher of publish-subscribe over shared memory (`shm/pubsub.ts` makes it): writes each message once into
 * the ring (`shm/pubsub_layout.ts`), waits for the slowest live subscriber under policy `"block"`, wakes subscribers
 * only when one announced that it sleeps, and counts what it does in this process's stats (`shm/stats.ts`).
 *
 * @module
 */
import { onAbort } from "../async/mod.ts";
import { abortError, ClosedError, IpcError, MessageTooLargeError, NotFoundError, TimeoutError } from "../errors.ts";
import { alive } from "../os/liveness.ts";
import { type LoanOwner, SendLoan } from "./loan.ts";
import {
  CLOSED,
  I_FLAGS,
  I_PROGRESS,
  I_PUB_SLEEPING,
  I_SLEEPERS,
  I_WRITE,
  type Policy,
  recordSize,
  S_ID,
  S_SLEEPING,
  sweep,
} from "./pubsub_layout.ts";
import { PublisherCore } from "./pubsub_ring.ts";
import {
  BYTES_OUT,
  checkBytes,
  deadlineOf,
  DONE,
  MESSAGES_OUT,
  type Parts,
  type PubSubHandle,
  SLEEP_MS,
  SLEEPS,
  trackSide,
  type WaitOptions,
  WAKES,
} from "./pubsub_parts.ts";
import type { Counters } from "./stats.ts";

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
  /** Live counters (`shm/stats.ts`): messages and bytes out, sleeps, wake-ups of subscribers, capacity. */
  readonly #stats: Counters;

  /** @internal Made by `publisher()` (`shm/pubsub.ts`). */
  constructor(parts: Parts) {
    this.#p = parts;
    const name = parts.name;
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
    this.#stats = trackSide(parts, "publisher");
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
    this.#counted(message.length);
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
    if (options.signal?.aborted) throw abortError(options.signal); // as every send: an aborted call does nothing
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
    if (options.signal?.aborted) throw abortError(options.signal);
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
    this.#counted(length);
    this.#wake();
  }

  #counted(bytes: number): void {
    const v = this.#stats.values;
    v[MESSAGES_OUT]!++;
    v[BYTES_OUT]! += bytes;
  }

  /**
   * Wakes the subscribers that announced a sleep, taking each announcement (its slot's sleeping flag, 1 -> 0, and
   * one off `sleepers`), as a subscriber does when it wakes: those woken once cost no second system call while they
   * get going (a wake-up takes tens of microseconds, in which many messages may be published).
   */
  #wake(): void {
    const m = this.#p.m;
    if (Atomics.load(m.h, I_SLEEPERS) === 0) return;
    let took = 0;
    const limit = m.slotLimit();
    for (let i = 0; i < limit; i++) {
      const at = m.at(i, S_SLEEPING);
      if (m.slots[at] !== 0 && Atomics.exchange(m.slots, at, 0) === 1) took++;
    }
    if (took === 0) return;
    Atomics.sub(m.h, I_SLEEPERS, took);
    this.#p.waiter.wake(I_WRITE);
    this.#stats.values[WAKES]!++;
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
    // Spin first: a subscriber that holds the ring full is usually awake and taking (a sleep and its wake-up cost
    // tens of microseconds, and every subscriber's step then a system call to wake this side).
    const spinUntil = now + (this.#p.spinUs ?? 50) / 1000;
    for (let k = 1;; k++) {
      await DONE;
      if (this.#closed || core.makeRoom(size)) return;
      if ((k & 15) === 0 && performance.now() >= Math.min(spinUntil, deadline)) break;
    }
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
        this.#stats.values[SLEEPS]!++;
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
    this.#stats.close();
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
