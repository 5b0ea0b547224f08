/**
 * A subscriber of publish-subscribe over shared memory (`shm/pubsub.ts` makes it): reads every message from its own
 * position in the ring (`shm/pubsub_layout.ts`), spins then sleeps when there is none, wakes the publisher only when
 * it announced that it waits, and counts what it does in this process's stats (`shm/stats.ts`), `lost` being the
 * messages its `LaggedError`s said it missed.
 *
 * @module
 */
import { messageIterator, onAbort } from "../async/mod.ts";
import { abortError, ClosedError, IpcError, TimeoutError } from "../errors.ts";
import { alive } from "../os/liveness.ts";
import { type LoanOwner, ReceiveLoan } from "./loan.ts";
import {
  CLOSED,
  I_FLAGS,
  I_PROGRESS,
  I_PUB_ID,
  I_PUB_TAG,
  I_SLEEPERS,
  I_WRITE,
  type Policy,
  S_SLEEPING,
} from "./pubsub_layout.ts";
import type { SubscriberCore } from "./pubsub_ring.ts";
import {
  BYTES_IN,
  deadlineOf,
  DONE,
  LOST,
  MESSAGES_IN,
  type Parts,
  SLEEP_MS,
  SLEEPS,
  trackSide,
  type WaitOptions,
  WAKES,
} from "./pubsub_parts.ts";
import type { Counters } from "./stats.ts";

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
  /** Live counters (`shm/stats.ts`): messages and bytes in, sleeps, wake-ups of the publisher, messages lost. */
  readonly #stats: Counters;

  /** @internal Made by `subscriber()` (`shm/pubsub.ts`). */
  constructor(parts: Parts, core: SubscriberCore, spinUs: number) {
    this.#p = parts;
    this.#core = core;
    this.#what = parts.name === undefined ? "in-process pub-sub" : `pub-sub "${parts.name}"`;
    this.#spinUs = spinUs;
    this.#owner = {
      commit: () => {},
      abandon: () => {},
      release: (loan) => this.#releaseLoan(loan.bytes.length),
    };
    const stats = trackSide(parts, `subscriber ${core.slot}`);
    this.#stats = stats;
    core.onLag = (missed) => void (stats.values[LOST]! += missed);
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
    this.#counted(n);
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
    if (options.signal?.aborted) throw abortError(options.signal); // as every receive: an aborted call takes nothing
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
    if (options.signal?.aborted) throw abortError(options.signal); // as every receive: an aborted call takes nothing
    for (;;) {
      const got = this.tryReceiveLoan();
      if (got !== undefined) return got;
      await this.#awaitMessage(deadline, options.signal);
    }
  }

  #releaseLoan(length: number): void {
    this.#loan = undefined;
    if (this.#closed) return;
    this.#core.confirm(); // (overwrite) a message overwritten while lent is lost, not received
    this.#counted(length);
    if (this.#core.advance()) this.#wakePublisher();
  }

  #counted(bytes: number): void {
    const v = this.#stats.values;
    v[MESSAGES_IN]!++;
    v[BYTES_IN]! += bytes;
  }

  /** Wakes the publisher, which waits for this subscriber (or for any: it re-checks). */
  #wakePublisher(): void {
    const m = this.#p.m;
    Atomics.add(m.h, I_PROGRESS, 1);
    this.#p.waiter.wake(I_PROGRESS);
    this.#stats.values[WAKES]!++;
  }

  async #awaitMessage(deadline: number, signal: AbortSignal | undefined): Promise<void> {
    const { m, waiter, ffi } = this.#p;
    const core = this.#core;
    if (this.#spinUs > 0) {
      // One look per microtask turn (code already queued runs in between), the clock every eighth (it costs more).
      const until = performance.now() + this.#spinUs / 1000;
      for (let k = 1;; k++) {
        await DONE;
        if (this.#closed || core.peek() >= 0) return;
        if ((k & 7) === 0 && performance.now() >= until) break;
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
        this.#stats.values[SLEEPS]!++;
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
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return messageIterator(this);
  }

  /** Leaves: frees this subscriber's slot (the publisher no longer waits for it). Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#loan = undefined;
    const { m, segment, waiter } = this.#p;
    m.drop(this.#core.slot, this.#core.gen);
    Atomics.add(m.h, I_PROGRESS, 1);
    waiter.wake(I_PROGRESS); // a publisher waiting for this subscriber goes on
    this.#stats.close();
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
