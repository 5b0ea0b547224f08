/**
 * The sending end of the many-producer channel (`shm/mpsc.ts` is the collector and the module's story, the layout
 * `shm/mpsc_layout.ts`): reserves a record with a compare-and-swap, fills it (a copy, or in place through a loan) and
 * commits it; waits for room on the read position's futex word, checking the collector's liveness as it waits.
 *
 * @module
 */
import { onAbort, Turnstile } from "../async/mod.ts";
import { abortError, ClosedError, IpcError, TimeoutError } from "../errors.ts";
import { type LoanOwner, SendLoan } from "./loan.ts";
import { CONSUMER_CLOSED, I_BELL, I_READ, type MpscRing } from "./mpsc_layout.ts";
import {
  badTimeout,
  BYTES_OUT,
  checkLength,
  MESSAGES_OUT,
  type MpscParts,
  SLEEP_MS,
  SLEEPS,
  spinUntil,
  trackEnd,
  WAKES,
} from "./mpsc.ts";
import type { Counters } from "./stats.ts";

const SENT: Promise<void> = Promise.resolve();

/**
 * A sending end of a many-producer channel: one of up to 64 at a time. Made by `shm.producer` (a process) or
 * `shm.producerFromHandle` (a thread).
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const collector = shm.threadCollector({ capacity: 4096 });
 * const producer = shm.producerFromHandle(collector.handle!);
 * const loan = producer.tryLoan(100)!; // reserved in the ring; undefined when there is no room now
 * loan.bytes.set([1, 2, 3]);
 * loan.commit(3); // sends the first 3 bytes
 * console.log((await collector.receive()).data); // Uint8Array [1, 2, 3]
 * await producer.close();
 * await collector.close();
 * ```
 */
export class Producer implements AsyncDisposable {
  /** This producer's slot: what the collector's `Delivery.producer` says for its messages. */
  readonly slot: number;
  /** The largest message, in bytes (the capacity - 16). */
  readonly maxMessage: number;
  readonly #p: MpscParts;
  readonly #ring: MpscRing;
  #sent = 0;
  #closed = false;
  readonly #turns = new Turnstile();
  #pending = 0;
  #drained: (() => void) | undefined;
  #loan: { loan: SendLoan; at: number; reserved: number; wraps: boolean } | undefined;
  #checkedAt = -Infinity;
  /** Live counters (`shm/stats.ts`): messages and bytes out, sleeps, wake-ups of the collector. */
  readonly #stats: Counters;
  readonly #owner: LoanOwner = {
    commit: (loan, length) => this.#commitLoan(loan, length),
    abandon: (loan) => {
      if (this.#loan?.loan !== loan) return;
      this.#ring.abandon(this.slot, this.#loan.at, this.#loan.reserved);
      this.#loan = undefined;
      this.#wakeConsumer();
    },
    release: () => {},
  };

  /** @internal Use `shm.producer` or `shm.producerFromHandle`. */
  constructor(parts: MpscParts, slot: number) {
    this.#p = parts;
    this.#ring = parts.ring;
    this.slot = slot;
    this.maxMessage = parts.ring.maxMessage;
    this.#stats = trackEnd(parts, `producer ${slot}`);
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Messages this producer sent. */
  get sent(): number {
    return this.#sent;
  }

  #refused(): Error | undefined {
    if (this.#closed) return new ClosedError(`Cannot send on ${this.#p.description}: this producer is closed`);
    if (this.#ring.flags & CONSUMER_CLOSED) {
      return new ClosedError(`Cannot send on ${this.#p.description}: the collector closed it`);
    }
    if (this.#loan) {
      return new IpcError(`Cannot send on ${this.#p.description}: a loan is out (commit() or abandon() it first)`);
    }
    return undefined;
  }

  #wakeConsumer(): void {
    if (this.#ring.takeConsumerSleeping()) {
      this.#stats.values[WAKES]!++;
      this.#ring.ring();
      this.#p.waiter.wake(I_BELL);
    }
  }

  /** Writes one message if there is room. */
  #put(message: Uint8Array, n: number): boolean {
    const at = this.#ring.claim(this.slot, n);
    if (at < 0) return false;
    this.#ring.write(at, message, n);
    this.#ring.commit(this.slot, at, n, n, this.#sent++);
    this.#counted(n);
    this.#wakeConsumer();
    return true;
  }

  #counted(bytes: number): void {
    const v = this.#stats.values;
    v[MESSAGES_OUT]!++;
    v[BYTES_OUT]! += bytes;
  }

  /**
   * Sends without waiting: true if the message went, false when the ring is full (or a waiting send holds the turn).
   *
   * @throws {ClosedError} when this producer or the collector closed; {@linkcode MessageTooLargeError} over
   * `maxMessage`; `TypeError` when the message is not a Uint8Array.
   */
  trySend(message: Uint8Array): boolean {
    if (!(message instanceof Uint8Array)) throw new TypeError("Cannot send: the message must be a Uint8Array");
    const refused = this.#refused();
    if (refused) throw refused;
    checkLength(message.length, this.maxMessage, "send");
    if (this.#turns.inside > 0) return false;
    return this.#put(message, message.length);
  }

  /**
   * Sends one message; waits (spins, then sleeps) while the ring is full.
   *
   * @throws {ClosedError} when this producer or the collector closed, or the collector's process died;
   * {@linkcode MessageTooLargeError} over `maxMessage`; {@linkcode TimeoutError} after `timeout` ms; the signal's
   * reason when it aborts the wait.
   */
  send(message: Uint8Array, options?: { signal?: AbortSignal; timeout?: number }): Promise<void> {
    if (!(message instanceof Uint8Array)) {
      return Promise.reject(new TypeError("Cannot send: the message must be a Uint8Array"));
    }
    // With room and no waiting send ahead: sent now, nothing allocated.
    if (this.#turns.inside === 0) {
      try {
        checkLength(message.length, this.maxMessage, "send");
        const bad = badTimeout(options) ?? this.#refused();
        if (bad) return Promise.reject(bad);
        if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
        if (this.#put(message, message.length)) return SENT;
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.#sendSlow(message, options);
  }

  async #sendSlow(message: Uint8Array, options?: { signal?: AbortSignal; timeout?: number }): Promise<void> {
    checkLength(message.length, this.maxMessage, "send");
    await this.#wait(() => this.#put(message, message.length) || undefined, options);
  }

  /**
   * Reserves `n` bytes in the ring to fill in place, or undefined when there is no room now. Commit (`commit(k)`
   * sends the first k bytes) or abandon it; until then the collector waits at this record, so do not keep it long.
   *
   * @throws as {@linkcode trySend}; `RangeError` when `n` is not an integer >= 0.
   */
  tryLoan(n: number): SendLoan | undefined {
    const refused = this.#refused();
    if (refused) throw refused;
    checkLength(n, this.maxMessage, "lend");
    if (this.#turns.inside > 0) return undefined;
    return this.#lend(n);
  }

  /**
   * Reserves `n` bytes in the ring to fill in place; waits while there is no room.
   *
   * @throws as {@linkcode send}.
   */
  async loan(n: number, options?: { signal?: AbortSignal; timeout?: number }): Promise<SendLoan> {
    checkLength(n, this.maxMessage, "lend");
    return await this.#wait(() => this.#lend(n), options);
  }

  #lend(n: number): SendLoan | undefined {
    const at = this.#ring.claim(this.slot, n);
    if (at < 0) return undefined;
    const start = this.#ring.payloadAt(at);
    const wraps = start + n > this.#ring.capacity;
    const bytes = wraps ? new Uint8Array(n) : this.#ring.data.subarray(start, start + n);
    const loan = new SendLoan(this.#owner, bytes);
    this.#loan = { loan, at, reserved: n, wraps };
    return loan;
  }

  #commitLoan(loan: SendLoan, length: number): void {
    const out = this.#loan;
    if (out?.loan !== loan) throw new ClosedError(`Cannot commit a loan on ${this.#p.description}: it is closed`);
    this.#loan = undefined;
    if (out.wraps) this.#ring.write(out.at, loan.bytes, length);
    this.#ring.commit(this.slot, out.at, out.reserved, length, this.#sent++);
    this.#counted(length);
    this.#wakeConsumer();
  }

  async #wait<T>(put: () => T | undefined, options?: { signal?: AbortSignal; timeout?: number }): Promise<T> {
    const signal = options?.signal;
    const timeout = options?.timeout;
    const bad = badTimeout(options);
    if (bad) throw bad;
    let refused = this.#refused();
    if (refused) throw refused;
    signal?.throwIfAborted();
    const turn = this.#turns.enter(signal);
    if (turn) await turn;
    this.#pending++;
    const unlisten = onAbort(signal, () => this.#p.waiter.wake(I_READ));
    try {
      const deadline = timeout === undefined ? Infinity : performance.now() + timeout;
      let got: T | undefined;
      const look = () => {
        refused = this.#refused();
        if (refused) throw refused;
        got = put();
        return got !== undefined;
      };
      // A full ring empties at the collector's pace. A look reads R (the collector writes it for every message it
      // takes) and T (other producers claim on it): looking on every turn of a spin would take those cache lines
      // from the collector and the producers that have room, so a spin looks every sixteenth turn.
      let turns = 0;
      const seldom = () => (++turns & 15) === 0 && look();
      for (;;) {
        if (await spinUntil(this.#p.spinUs, seldom)) return got!;
        if (signal?.aborted) throw abortError(signal);
        const left = deadline - performance.now();
        if (left <= 0) throw new TimeoutError(`Cannot send on ${this.#p.description}: timed out after ${timeout} ms`);
        this.#checkCollector();
        this.#ring.producersSleeping = true;
        const r = this.#ring.readPosition();
        if (look()) return got!;
        this.#stats.values[SLEEPS]!++;
        await this.#p.waiter.wait(I_READ, r, Math.min(SLEEP_MS, Math.ceil(left)));
      }
    } finally {
      unlisten();
      this.#turns.leave();
      if (--this.#pending === 0) this.#drained?.();
    }
  }

  /** A collector process that died never takes anything again: say so (checked at most every 100 ms). */
  #checkCollector(): void {
    const now = performance.now();
    if (now - this.#checkedAt < SLEEP_MS) return;
    this.#checkedAt = now;
    const c = this.#ring.consumer();
    if (c.id !== 0 && !this.#p.alive(c.id, c.tag)) {
      throw new ClosedError(`Cannot send on ${this.#p.description}: the collector's process (pid ${c.id}) died`);
    }
  }

  /** Closes this producer: an open loan is abandoned; its slot is freed once the collector took its messages. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stats.close();
    if (this.#loan) this.#owner.abandon(this.#loan.loan);
    this.#p.waiter.wake(I_READ);
    if (this.#pending > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    this.#ring.closeSlot(this.slot);
    this.#wakeConsumer();
    this.#p.release();
  }

  /** Closes this producer. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
