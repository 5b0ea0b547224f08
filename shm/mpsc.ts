/**
 * Many producers, one consumer, over shared memory: the two ends of the many-producer ring (`shm/mpsc_layout.ts`,
 * where the layout is documented byte for byte). A `Collector` receives, in the order producers reserved space,
 * what any number of `Producer`s (processes of any runtime, or threads) send; each message says which producer sent
 * it. Made by `shm.collector`, `shm.producer`, `shm.threadCollector` and `shm.producerFromHandle`
 * (`transports/shm_mpsc.ts`). This file is the collector and what both ends share; the producer is
 * `shm/mpsc_producer.ts`.
 *
 * - **Order**: a producer's messages arrive in the order it sent them (its `sequence` numbers count up by one);
 *   messages of different producers interleave as they reserved space.
 * - **Waiting**: a producer with no room, or a collector with nothing to take, spins briefly (looking once per
 *   microtask turn), then sleeps at most 100 ms at a time on a futex word (`shm/wait.ts`; `Atomics.waitAsync`
 *   between threads), woken by the other side only when it announced the sleep. Every wait is bounded: a lost
 *   wake-up costs 100 ms, never a hang.
 * - **Dead producers**: a producer killed while writing leaves a reserved record that is never committed. The
 *   collector skips it once every producer that may own it is dead, counts it in `lost` (and in that producer's
 *   `lost`), and goes on; what that producer committed before it died is delivered.
 * - **Close**: a producer's close frees its slot once its messages were taken; the collector's close makes every
 *   producer's send fail with `ClosedError` and removes the name.
 *
 * @module
 */
import { messageIterator, onAbort, Turnstile } from "../async/mod.ts";
import { abortError, ClosedError, IpcError, MessageTooLargeError, ProtocolError, TimeoutError } from "../errors.ts";
import { type LoanOwner, ReceiveLoan } from "./loan.ts";
import { CONSUMER_CLOSED, I_BELL, I_READ, type MpscRing, type Peek, type ProducerInfo } from "./mpsc_layout.ts";
import { type Counters, track } from "./stats.ts";
import type { Waiter } from "./wait.ts";

/** @internal Longest single sleep: flags and liveness are looked at again in between. */
export const SLEEP_MS = 100;
/** How often a collector stuck on a reserved record checks whether its producer died. */
const TORN_CHECK_MS = 2;
const DONE: Promise<void> = Promise.resolve();

// Where an end's counters are (`COUNTERS.channel` of shm/stats.ts).
/** @internal */
export const MESSAGES_OUT = 0, BYTES_OUT = 1, MESSAGES_IN = 2, BYTES_IN = 3, SLEEPS = 4, WAKES = 5;
const CAPACITY = 6, LOST = 9;
/** Bytes of a stats slot's name (shm/stats.ts). */
const NAME_BYTES = 52;

/**
 * @internal An end's live counters (`shm/stats.ts`, kind `channel`), named `<segment> (<what>)`, or
 * `thread collector (<what>)` between threads; a long segment name is cut so that `(<what>)` stays whole.
 */
export function trackEnd(parts: MpscParts, what: string): Counters {
  const named = /"(.*)"/.exec(parts.description);
  const suffix = ` (${what})`;
  let base = named ? named[1]! : "thread collector";
  const encoder = new TextEncoder();
  while (base.length > 0 && encoder.encode(base + suffix).length > NAME_BYTES) base = base.slice(0, -1);
  const c = track("channel", named || what !== "collector" ? base + suffix : base);
  c.values[CAPACITY] = parts.ring.capacity;
  return c;
}

/** What a thread collector's producers are rebuilt from in another thread: post it to a Worker. */
export interface MpscHandle {
  readonly buffer: SharedArrayBuffer;
  readonly spin?: number;
}

/** The parts of an end (made by `transports/shm_mpsc.ts`). */
export interface MpscParts {
  description: string;
  ring: MpscRing;
  /** Waits on and wakes the words of `ring.words`. */
  waiter: Waiter;
  /** Whether a pid and start-time tag still name a live process or thread (id 0: not known, taken as alive). */
  alive: (id: number, tag: number) => boolean;
  /** Microseconds to spin before sleeping. */
  spinUs: number;
  maxMessage?: number | undefined;
  release: () => void;
}

/** A message the collector received, and who sent it. */
export interface Delivery {
  /** The message's bytes (a copy: yours to keep). */
  readonly data: Uint8Array;
  /** The sender's producer slot, 0 to 63 (a slot is reused only once everything its producer sent was taken). */
  readonly producer: number;
  /** The sender's pid (for a thread producer: its thread id, or 0 when FFI was not loaded when it was made). */
  readonly pid: number;
  /** The sender's message number: 0, 1, 2... for each producer. */
  readonly sequence: number;
}

/**
 * A received message lent where it lies in the ring, with who sent it: see `ReceiveLoan`.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const collector = shm.threadCollector({ capacity: 4096 });
 * const producer = shm.producerFromHandle(collector.handle!);
 * await producer.send(new Uint8Array([5, 6]));
 * {
 *   using message = await collector.receiveLoan();
 *   console.log(message.bytes, message.sequence); // Uint8Array [5, 6] 0
 * } // released here: its space goes back to the producers
 * await producer.close();
 * await collector.close();
 * ```
 */
export class DeliveryLoan extends ReceiveLoan {
  /** @internal Made by `Collector.receiveLoan`. */
  constructor(
    owner: LoanOwner,
    bytes: Uint8Array,
    readonly producer: number,
    readonly pid: number,
    readonly sequence: number,
  ) {
    super(owner, bytes);
  }
}

function macrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** @internal Why a wait with these options cannot start (a timeout that is not >= 0), or undefined. */
export function badTimeout(options?: { timeout?: number }): RangeError | undefined {
  const timeout = options?.timeout;
  if (timeout !== undefined && !(timeout >= 0)) return new RangeError(`Cannot wait ${timeout} ms: it must be >= 0`);
  return undefined;
}

/** @internal The length of a message or loan, checked: a RangeError, or MessageTooLargeError over `max`. */
export function checkLength(n: unknown, max: number, what: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 0) {
    throw new RangeError(`Cannot ${what} ${String(n)} bytes: the length must be an integer >= 0`);
  }
  if ((n as number) > max) {
    throw new MessageTooLargeError(`Cannot ${what} ${n} bytes: it exceeds maxMessage (${max} bytes)`, n as number, max);
  }
  return n as number;
}

/** @internal Spins for `us` microseconds at most, one look per microtask turn, letting timers run every 10 ms. */
export async function spinUntil(us: number, ready: () => boolean): Promise<boolean> {
  if (us <= 0) return ready();
  const start = performance.now();
  let yieldAt = start + 10;
  for (;;) {
    if (ready()) return true;
    const t = performance.now();
    if (t - start >= us / 1000) return false;
    if (t >= yieldAt) {
      yieldAt = t + 10;
      await macrotask();
    } else await DONE;
  }
}

/**
 * The consuming end: receives what every producer sends. Made by `shm.collector` (a named segment between
 * processes) or `shm.threadCollector` (a SharedArrayBuffer between threads).
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const collector = shm.threadCollector({ capacity: 4096 });
 * const a = shm.producerFromHandle(collector.handle!); // usually in a worker, from the posted handle
 * const b = shm.producerFromHandle(collector.handle!);
 * await a.send(new Uint8Array([1]));
 * await b.send(new Uint8Array([2]));
 * const first = await collector.receive();
 * console.log(first.data, first.producer === a.slot); // Uint8Array [1] true
 * console.log((await collector.receive()).producer === b.slot); // true
 * await Promise.all([a.close(), b.close(), collector.close()]);
 * ```
 */
export class Collector implements AsyncIterable<Delivery>, AsyncDisposable {
  /** The largest message accepted, in bytes (at most the capacity - 16). */
  readonly maxMessage: number;
  /** The handle producers in other threads are rebuilt from (`shm.producerFromHandle`); undefined between processes. */
  readonly handle: MpscHandle | undefined;
  readonly #p: MpscParts;
  readonly #ring: MpscRing;
  #read: number;
  #closed = false;
  #broken: ProtocolError | undefined;
  readonly #turns = new Turnstile();
  #pending = 0;
  #drained: (() => void) | undefined;
  #loan: DeliveryLoan | undefined;
  #loanSize = 0;
  #stuckAt = -1;
  #checkedAt = -Infinity;
  #reapedAt = -Infinity;
  /** Live counters (`shm/stats.ts`): messages and bytes in, sleeps, wake-ups of producers, records lost. */
  readonly #stats: Counters;
  /** What the receives take, made once (a receive that finds a message allocates nothing more than its promise). */
  readonly #takeOne = () => this.#take();
  readonly #takeLent = () => this.#takeLoan();
  readonly #owner: LoanOwner = {
    commit: () => {},
    abandon: () => {},
    release: (loan) => {
      if (loan !== this.#loan) return;
      this.#loan = undefined;
      if (!this.#closed) this.#advance(this.#loanSize, -1);
    },
  };

  /** @internal Use `shm.collector` or `shm.threadCollector`. */
  constructor(parts: MpscParts, handle?: MpscHandle) {
    this.#p = parts;
    this.#ring = parts.ring;
    this.handle = handle;
    this.#read = parts.ring.readPosition();
    const max = parts.maxMessage ?? parts.ring.maxMessage;
    if (!Number.isSafeInteger(max) || max < 0 || max > parts.ring.maxMessage) {
      throw new RangeError(`Cannot use maxMessage ${max}: it must be an integer from 0 to ${parts.ring.maxMessage}`);
    }
    this.maxMessage = max;
    this.#stats = trackEnd(parts, "collector");
  }

  /** True once `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Records skipped because their producer died before committing them, in all. */
  get lost(): number {
    return this.#ring.lost;
  }

  /** The producers in the table now: live ones, and those gone with messages not yet taken. */
  producers(): ProducerInfo[] {
    return this.#ring.producers();
  }

  #refused(): Error | undefined {
    if (this.#closed) return new ClosedError(`Cannot receive on ${this.#p.description}: it is closed`);
    if (this.#broken) return this.#broken;
    if (this.#loan) {
      return new IpcError(`Cannot receive on ${this.#p.description}: a received loan is out (release() it first)`);
    }
    return undefined;
  }

  #advance(size: number, slot: number): void {
    this.#read = this.#ring.advance(this.#read, size, slot);
    this.#wakeProducers();
  }

  /**
   * Wakes the producers that wait for room, once at least a quarter of the ring is free (or with `now`): one wake-up
   * for many messages. Woken for each message, producers outpacing the collector slept and woke on every one, and
   * the collector spent half its time in futex calls (4 producers, 64 B messages).
   */
  #wakeProducers(now = false): void {
    const ring = this.#ring;
    if (!now && !(ring.producersWaiting && ring.roomy(this.#read))) return;
    if (ring.takeProducersSleeping()) {
      this.#stats.values[WAKES]!++;
      this.#p.waiter.wake(I_READ);
    }
  }

  /** The next message's record, past padding and the records of dead producers; undefined when there is none. */
  #next(): Extract<Peek, { kind: "message" }> | undefined {
    for (;;) {
      let p: Peek;
      try {
        p = this.#ring.peek(this.#read, this.maxMessage);
        if (p.kind === "padding") {
          this.#advance(p.size, -1);
          continue;
        }
        if (p.kind === "message") return p;
        if (p.kind === "pending" && this.#tornDue()) {
          const torn = this.#ring.tornSize(this.#read, this.#p.alive);
          if (torn) {
            this.#read = this.#ring.skipTorn(this.#read, torn.size, torn.slots);
            this.#stats.values[LOST]!++;
            this.#wakeProducers();
            continue;
          }
        }
        return undefined;
      } catch (e) {
        if (e instanceof ProtocolError) this.#broken ??= e;
        throw e;
      }
    }
  }

  /** Whether to look for a dead owner of the record at R now: once stuck on it, every 2 ms. */
  #tornDue(): boolean {
    const now = performance.now();
    if (this.#stuckAt !== this.#read) {
      this.#stuckAt = this.#read;
      this.#checkedAt = now;
      return false;
    }
    if (now - this.#checkedAt < TORN_CHECK_MS) return false;
    this.#checkedAt = now;
    return true;
  }

  #take(): Delivery | undefined {
    const m = this.#next();
    if (m === undefined) return undefined;
    const data = this.#ring.copy(m.start, m.length);
    const pid = this.#ring.pidOf(m.slot);
    this.#advance(m.size, m.slot);
    this.#counted(m.length);
    return { data, producer: m.slot, pid, sequence: m.sequence };
  }

  #takeLoan(): DeliveryLoan | undefined {
    const m = this.#next();
    if (m === undefined) return undefined;
    const bytes = m.start + m.length <= this.#ring.capacity
      ? this.#ring.data.subarray(m.start, m.start + m.length)
      : this.#ring.copyOut(m.start, m.length, new Uint8Array(m.length));
    const pid = this.#ring.pidOf(m.slot);
    // Count it as received now; its space goes back on release.
    this.#loanSize = m.size;
    this.#loan = new DeliveryLoan(this.#owner, bytes, m.slot, pid, m.sequence);
    this.#ring.countReceived(m.slot);
    this.#counted(m.length);
    return this.#loan;
  }

  #counted(bytes: number): void {
    const v = this.#stats.values;
    v[MESSAGES_IN]!++;
    v[BYTES_IN]! += bytes;
  }

  /** The promise of a receive that found a message at once, or undefined when it must wait (or fail). */
  #now<T>(
    take: () => T | undefined,
    options: { signal?: AbortSignal; timeout?: number } | undefined,
  ): Promise<T> | undefined {
    if (this.#turns.inside > 0) return undefined;
    const bad = badTimeout(options) ?? this.#refused();
    if (bad) return Promise.reject(bad);
    if (options?.signal?.aborted) return Promise.reject(options.signal.reason);
    try {
      const got = take();
      return got === undefined ? undefined : Promise.resolve(got);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Receives without waiting: the next message, or undefined when none is there.
   *
   * @throws {ClosedError} when closed; {@linkcode ProtocolError} when the ring is corrupt (and from then on);
   * {@linkcode IpcError} while a received loan is out.
   */
  tryReceive(): Delivery | undefined {
    if (this.#turns.inside > 0) return undefined;
    const refused = this.#refused();
    if (refused) throw refused;
    return this.#take();
  }

  /**
   * Receives the next message; waits (spins, then sleeps) while there is none.
   *
   * @throws {ClosedError} when closed (also while waiting); {@linkcode TimeoutError} after `timeout` ms; the signal's
   * reason when it aborts the wait; {@linkcode ProtocolError} when the ring is corrupt.
   */
  receive(options?: { signal?: AbortSignal; timeout?: number }): Promise<Delivery> {
    return this.#now(this.#takeOne, options) ?? this.#wait(this.#takeOne, options);
  }

  /**
   * Receives without waiting and without a copy: the next message lent where it lies, or undefined. Release it
   * (`using`) before the next receive.
   *
   * @throws as {@linkcode tryReceive}.
   */
  tryReceiveLoan(): DeliveryLoan | undefined {
    if (this.#turns.inside > 0) return undefined;
    const refused = this.#refused();
    if (refused) throw refused;
    return this.#takeLoan();
  }

  /**
   * Receives the next message lent where it lies in the ring (no copy); waits while there is none.
   *
   * @throws as {@linkcode receive}.
   */
  receiveLoan(options?: { signal?: AbortSignal; timeout?: number }): Promise<DeliveryLoan> {
    return this.#now(this.#takeLent, options) ?? this.#wait(this.#takeLent, options);
  }

  async #wait<T>(take: () => T | undefined, options?: { signal?: AbortSignal; timeout?: number }): Promise<T> {
    const signal = options?.signal;
    const timeout = options?.timeout;
    const bad = badTimeout(options);
    if (bad) throw bad;
    const refused = this.#refused();
    if (refused) throw refused;
    signal?.throwIfAborted();
    const turn = this.#turns.enter(signal);
    if (turn) await turn;
    this.#pending++;
    const unlisten = onAbort(signal, () => this.#p.waiter.wake(I_BELL));
    try {
      const deadline = timeout === undefined ? Infinity : performance.now() + timeout;
      let got: T | undefined;
      const look = () => {
        const refused = this.#refused();
        if (refused) throw refused;
        got = take();
        return got !== undefined;
      };
      for (;;) {
        if (await spinUntil(this.#p.spinUs, look)) return got!;
        if (signal?.aborted) throw abortError(signal);
        const left = deadline - performance.now();
        if (left <= 0) {
          throw new TimeoutError(`Cannot receive on ${this.#p.description}: timed out after ${timeout} ms`);
        }
        this.#reap();
        this.#wakeProducers(true); // the ring is empty: whoever waits for room has it
        const bell = this.#ring.announceSleep();
        try {
          if (look()) return got!;
          this.#stats.values[SLEEPS]!++;
          await this.#p.waiter.wait(I_BELL, bell, Math.min(SLEEP_MS, Math.ceil(left)));
        } finally {
          this.#ring.endSleep();
        }
      }
    } finally {
      unlisten();
      this.#turns.leave();
      if (--this.#pending === 0) this.#drained?.();
    }
  }

  /** Frees the slots of producers that are gone, at most every 100 ms (a few microseconds per live producer). */
  #reap(): void {
    const now = performance.now();
    if (now - this.#reapedAt < SLEEP_MS) return;
    this.#reapedAt = now;
    this.#ring.reap(this.#p.alive);
  }

  /** Iterates received messages until the collector is closed. */
  [Symbol.asyncIterator](): AsyncIterator<Delivery> {
    return messageIterator(this);
  }

  /** Closes the collector: producers' sends fail from now on; the name (of a named collector) is removed. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stats.close();
    this.#ring.setFlag(CONSUMER_CLOSED);
    this.#p.waiter.wake(I_READ);
    this.#p.waiter.wake(I_BELL);
    if (this.#pending > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    this.#loan?.release();
    this.#p.release();
  }

  /** Closes the collector. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
