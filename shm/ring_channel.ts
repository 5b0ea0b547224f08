/**
 * The shared-memory channel's mechanics: one end of a duplex channel made of two rings (`shm/ring.ts`), one per
 * direction, in a shared segment between processes or a SharedArrayBuffer between threads (the layout, and how the
 * parts of an end are made, is `shm/ring_channel_layout.ts`). The public face, `shm.ShmChannel`, adds the Channel
 * contract's capabilities and iteration on top (`transports/shm.ts`).
 *
 * One class of about 880 lines, most of it the documented forms of sending and receiving (one at a time, batches,
 * into a buffer, in place) with their doc comments: they all share the turn-taking, wake-up, liveness and close state
 * of an end. The layout, the ring, the doorbell, the waits, the idle strategy and the loans (which are out, and where
 * one that wraps lives) are each in their own file.
 *
 * - **Framing**: each message is one record of the ring (a length and a commit word, then the bytes); a message over
 *   `maxMessage` is refused before anything is written, and one arriving over it breaks the channel (both sides
 *   learn it). Batches are published, and taken, with one atomic store.
 * - **Waiting**: `receive()` on an empty ring (and `send()` on a full one) spins as its idle strategy says
 *   (`shm/idle.ts`), looking at the ring once per microtask turn, so code already queued (the handler that will send
 *   a reply, say) runs while it spins. Then it parks without freezing the event loop: between processes on the
 *   doorbell (`shm/doorbell.ts`: a socket the event loop polls; futex(2) off the main thread when there is none),
 *   between threads with `Atomics.waitAsync`. A side that publishes wakes the other only when it announced that it
 *   sleeps (the first to see the announcement takes it). A dead peer process ends its doorbell connection, so
 *   `receive()`/`send()` end with `ClosedError` at once (without a doorbell, its liveness is read every 100 ms,
 *   `os/liveness.ts`), `receive()` only after the messages the peer wrote whole before it died (as a socket delivers
 *   its buffer before the end).
 * - **Order**: waiting sends (and receives) take turns, and the no-wait forms step aside while one waits.
 * - **Close**: flags in both rings, then every sleeper on the channel is woken (the doorbell is closed); the memory
 *   is released once no pending call of this end uses it.
 *
 * @module
 */
import { onAbort, Turnstile } from "../async/mod.ts";
import { abortError, ClosedError, IpcError, MessageTooLargeError, ProtocolError, TimeoutError } from "../errors.ts";
import { Loans, type ReceiveLoan, type SendLoan } from "./loan.ts";
import { CONSUMER_CLOSED, HandlerFailure, I_READ, I_WRITE, PRODUCER_CLOSED, type Ring, sendable } from "./ring.ts";
import type { Doorbell } from "./doorbell.ts";
import { Idle, type IdleStrategy } from "./idle.ts";
import { type Counters, track } from "./stats.ts";
import type { Waiter } from "./wait.ts";

// Where a channel's counters are (`COUNTERS.channel` of shm/stats.ts).
const MESSAGES_OUT = 0, MESSAGES_IN = 2, SLEEPS = 4, WAKES = 5, CAPACITY = 6;

/** Longest single sleep; liveness and flags are re-checked in between. */
export const SLEEP_MS = 100;
/** How long a spin runs before it lets timers and I/O run (a macrotask) and checks the peer. */
const YIELD_MS = 10;
/** Free bytes a spinning send waits for at first (or a quarter of the ring), and for how long: see `#sendSlow`. */
const ROOM_WANTED = 16 * 1024;
const ROOM_WAIT_MS = 0.05;

/** What a send that went at once returns, and what a spin awaits for one microtask turn: one resolved promise for
 * all (`await undefined` makes a promise each time: 20-30 % slower). */
const DONE: Promise<void> = Promise.resolve();

/** A turn of the event loop: timers and I/O run before it resolves. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

/** What a shared-memory channel end needs to be rebuilt in another thread: post it to a Worker. */
export interface ShmHandle {
  readonly buffer: SharedArrayBuffer;
  readonly side: 0 | 1;
  readonly spin?: number;
  readonly idle?: IdleStrategy;
}

/** The parts of one channel end (made by `shm/ring_channel_layout.ts`). */
export interface ChannelParts {
  description: string;
  out: Ring;
  in: Ring;
  waiter: Waiter;
  /** Int32 index base of each ring's header in the waiter's word array. */
  outBase: number;
  inBase: number;
  spinUs: number;
  /** The idle strategy (`shm/idle.ts`); `"spin-then-park"` when not given. */
  idle?: IdleStrategy;
  /** How many CPUs this process may run on (1: never spin); 2 when not given. */
  cpus?: number;
  /** Whether more tasks are runnable than those CPUs now (`os/load.ts`): a wait then parks without spinning. */
  crowded?: (() => boolean) | undefined;
  /**
   * The heavy fence (`os/fence.ts`) this end runs between announcing a sleep for data and its last look at the ring,
   * while the producer publishes plainly; given, the incoming ring's flags say so (`CONSUMER_FENCES`), and the
   * producer may.
   */
  fence?: (() => boolean) | undefined;
  /** The doorbell between processes (`shm/doorbell.ts`): sleeps and wakes go through it instead of the waiter. */
  bell?: Doorbell | undefined;
  maxMessage: number | undefined;
  /** Whether the peer still lives (always true for threads). */
  peerAlive: () => boolean;
  release: () => void;
}

/**
 * One end of a shared-memory channel: sends and receives whole messages through the two rings. Made by
 * `shm.create`, `shm.open`, `shm.pair` and `shm.fromHandle`, as a `shm.ShmChannel`.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 4096 });
 * const b = shm.fromHandle(handle);
 * await a.send(new Uint8Array([1, 2, 3]));
 * console.log(await b.receive(), b.tryReceive()); // Uint8Array [1, 2, 3] undefined
 * await a.close();
 * await b.close();
 * ```
 */
export class RingChannel implements AsyncDisposable {
  /** The largest message this end sends or accepts, in bytes (at most the ring capacity - 8). */
  readonly maxMessage: number;
  readonly #p: ChannelParts;
  #closed = false;
  /** Why this end was closed, when not by `close()` (a listener's idle timeout): what its calls reject with. */
  #closedBy: ClosedError | undefined;
  #peerGone: ClosedError | ProtocolError | undefined;
  /** Set when the incoming ring cannot be read any more (corrupt, or a message over our limit). */
  #broken: ClosedError | undefined;
  /** Receives that wait take turns through it (a free one goes at once); sends that wait through `#writes`. */
  readonly #reads = new Turnstile();
  // The last reader made for a caller's function (or `max`): a caller passes the same one every time, and a closure
  // made per call costs more than the read of a few messages (an allocation, and on Node through tsx a `__name`).
  #lastRead: unknown;
  #lastReader: ((ring: Ring) => unknown) | undefined;
  #lastManyMax = -1;
  #lastMany: ((ring: Ring) => Uint8Array[] | undefined) | undefined;
  readonly #writes = new Turnstile();
  #handle: ShmHandle | undefined;
  readonly #receiveIdle: Idle;
  readonly #sendIdle: Idle;
  /** Whether the peer slept when this side last sent: its answer comes after a wake-up. */
  #peerParked = false;
  /** When the peer's liveness was last checked (performance.now()). */
  #checked = -Infinity;
  /** This end's live counters (`shm/stats.ts`): messages and bytes each way, sleeps, wake-ups of the peer. */
  readonly #stats: Counters;
  /** The loan out each way (one at a time), and what ends them (`shm/loan.ts`). */
  readonly #loans = new Loans({
    commit: (length, wrapped) => this.#commitLoan(length, wrapped),
    release: (length) => this.#releaseLoan(length),
  });

  /** @internal Use `shm.create`, `shm.open`, `shm.pair` or `shm.fromHandle`. */
  constructor(parts: ChannelParts, handle?: ShmHandle) {
    this.#p = parts;
    this.#handle = handle;
    const strategy = parts.idle ?? "spin-then-park";
    this.#receiveIdle = new Idle(strategy, parts.spinUs, parts.cpus ?? 2, parts.crowded);
    this.#sendIdle = new Idle(strategy, parts.spinUs, parts.cpus ?? 2, parts.crowded);
    const ringMax = parts.out.maxMessage;
    const max = parts.maxMessage ?? ringMax;
    if (!Number.isSafeInteger(max) || max < 0 || max > ringMax) {
      throw new RangeError(`Cannot use maxMessage ${max}: it must be an integer from 0 to ${ringMax} (capacity - 8)`);
    }
    this.maxMessage = max;
    const named = /"(.*)"/.exec(parts.description);
    this.#stats = track("channel", named ? named[1]! : `thread pair, side ${handle?.side ?? "?"}`);
    this.#stats.values[CAPACITY] = parts.out.capacity;
    parts.out.countInto(this.#stats, MESSAGES_OUT);
    parts.in.countInto(this.#stats, MESSAGES_IN);
  }

  /** True once `close()` was called or the peer ended the channel. */
  get closed(): boolean {
    return this.#closed || this.#peerGone !== undefined;
  }

  /**
   * Sends one message; waits (spins, then sleeps) while the ring is full.
   *
   * @throws {ClosedError} when this end or the peer closed; {@linkcode MessageTooLargeError} over `maxMessage`;
   * the signal's reason when it aborts the wait.
   */
  send(message: Uint8Array, options?: { signal?: AbortSignal }): Promise<void> {
    if (!(message instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Cannot send on ${this.#p.description}: the message must be a Uint8Array`));
    }
    const refused = this.#sendRefused();
    if (refused) return Promise.reject(refused);
    if (message.length > this.maxMessage) return Promise.reject(this.#tooLarge(message.length));
    if (options?.signal?.aborted) return Promise.reject(abortError(options.signal));
    try {
      if (this.#writes.inside === 0 && this.#p.out.tryWrite(message)) {
        this.#wakeConsumer();
        return DONE;
      }
    } catch (e) {
      return Promise.reject(this.#corrupt(e));
    }
    return this.#sendSlow(() => this.#tryWrite(this.#p.out, message), options?.signal);
  }

  /**
   * Sends `messages` in order, as many at a time as there is room for, each batch published at once (one atomic
   * store, one wake-up): far fewer cache-line moves per message than one `send()` each. Waits (spins, then sleeps)
   * while the ring is full. Every message is checked before the first is written.
   *
   * @throws {ClosedError} when this end or the peer closed (the messages before it may have gone);
   * {@linkcode MessageTooLargeError} when one exceeds `maxMessage` (nothing is sent); the signal's reason when it
   * aborts the wait (the messages before it may have gone).
   *
   * @example
   * ```ts
   * import { shm } from "ipckit";
   * const [a, handle] = shm.pair({ capacity: 4096 });
   * const b = shm.fromHandle(handle);
   * await a.sendMany([new Uint8Array([1]), new Uint8Array([2, 2]), new Uint8Array([3, 3, 3])]);
   * console.log((await b.receiveMany()).map((m) => m.length)); // [1, 2, 3]
   * await a.close();
   * await b.close();
   * ```
   */
  sendMany(messages: readonly Uint8Array[], options?: { signal?: AbortSignal }): Promise<void> {
    let sent = 0;
    try {
      this.#checkArray(messages);
      const refused = this.#sendRefused();
      if (refused) throw refused;
      if (options?.signal?.aborted) throw abortError(options.signal);
      // The first try checks every message as it copies them (and those past the room): nothing goes if one is bad.
      // Behind a waiting send, there is no try now: they are checked first.
      if (this.#writes.inside === 0) {
        sent = this.#tryWriteMany(messages, 0, this.maxMessage);
        if (sent === messages.length) return DONE;
      } else this.#checkMany(messages, 0);
    } catch (e) {
      return Promise.reject(e);
    }
    const put = () => {
      sent += this.#tryWriteMany(messages, sent, -1);
      return sent === messages.length;
    };
    return this.#sendSlow(put, options?.signal);
  }

  /**
   * Sends as many of `messages` (from `from`) as there is room for now, published at once; returns how many went
   * (0 when the ring is full or a waiting `send()` holds the turn). For hot loops; `sendMany()` is the waiting
   * form.
   *
   * @throws {ClosedError} when this end or the peer closed; {@linkcode MessageTooLargeError} when one of them
   * exceeds `maxMessage` (nothing is sent).
   */
  trySendMany(messages: readonly Uint8Array[], from = 0): number {
    if (this.#writes.inside > 0) return 0;
    const refused = this.#sendRefused();
    if (refused) throw refused;
    this.#checkArray(messages);
    return this.#tryWriteMany(messages, from, this.maxMessage);
  }

  #checkArray(messages: readonly Uint8Array[]): void {
    if (!Array.isArray(messages)) {
      throw new TypeError(`Cannot send on ${this.#p.description}: sendMany takes an array of Uint8Array`);
    }
  }

  /** Throws for the first message from `from` that is not a Uint8Array or is over `maxMessage`. */
  #checkMany(messages: readonly Uint8Array[], from: number): void {
    for (let i = from; i < messages.length; i++) {
      if (!sendable(messages[i], this.maxMessage)) throw this.#refused(messages, i);
    }
  }

  /** Why `messages[i]` cannot be sent. */
  #refused(messages: readonly Uint8Array[], i: number): TypeError | MessageTooLargeError {
    const m = messages[i];
    return m instanceof Uint8Array
      ? this.#tooLarge(m.length)
      : new TypeError(`Cannot send on ${this.#p.description}: message ${i} is not a Uint8Array`);
  }

  #tooLarge(n: number): MessageTooLargeError {
    return new MessageTooLargeError(
      `Cannot send a message of ${n} bytes on ${this.#p.description}: it exceeds maxMessage (${this.maxMessage} bytes)`,
      n,
      this.maxMessage,
    );
  }

  /** Writes what fits of `messages` from `from`; with `limit` 0 or more, the ring checks them all (`Ring.tryWriteMany`). */
  #tryWriteMany(messages: readonly Uint8Array[], from: number, limit: number): number {
    let k: number;
    try {
      k = this.#p.out.tryWriteMany(messages, from, messages.length, limit);
    } catch (e) {
      throw this.#corrupt(e);
    }
    if (k > 0) this.#wakeConsumer();
    else if (k < 0) throw this.#refused(messages, -1 - k);
    return k;
  }

  /** The peer wrote an impossible read position: no later send can be trusted either. */
  #corrupt(e: unknown): unknown {
    if (e instanceof ProtocolError) this.#peerGone ??= e;
    return e;
  }

  /** Whether a send may go now (else {@linkcode #sendRefused} says why). */
  #canSend(out: Ring): boolean {
    return !this.#closed && this.#loans.send === undefined && this.#peerGone === undefined &&
      (out.flagsSeen & CONSUMER_CLOSED) === 0;
  }

  #sendRefused(): Error | undefined {
    if (this.#canSend(this.#p.out)) return undefined;
    if (this.#closed) return this.#closedError("send");
    const loan = this.#loans.send;
    if (loan) {
      return new IpcError(
        `Cannot send on ${this.#p.description}: a loan of ${loan.bytes.length} bytes is out (commit() or abandon() it first)`,
      );
    }
    if (this.#peerGone) return this.#peerGone;
    if (this.#p.out.flagsSeen & CONSUMER_CLOSED) {
      return new ClosedError(`Cannot send on ${this.#p.description}: the peer closed it`);
    }
    return undefined;
  }

  /** Wakes the peer if it announced that it sleeps for data (the first to see the announcement takes it). */
  #wakeConsumer(): void {
    const parked = this.#p.out.takeConsumerSleeping();
    this.#peerParked = parked;
    if (parked) this.#wake(this.#p.outBase + I_WRITE);
  }

  /** Wakes the peer if it announced that it sleeps for room. */
  #wakeProducer(): void {
    if (this.#p.in.takeProducerSleeping()) this.#wake(this.#p.inBase + I_READ);
  }

  /** Wakes the peer, asleep on the word at `index`: through the doorbell if there is one. */
  #wake(index: number): void {
    this.#stats.values[WAKES]!++;
    if (this.#p.bell) this.#p.bell.ring();
    else this.#p.waiter.wake(index);
  }

  /** Waits for room until `put()` says everything went (it wakes the consumer for what it wrote). */
  async #sendSlow(put: () => boolean, signal: AbortSignal | undefined): Promise<void> {
    // Queued behind another waiting send, an abort ends the wait at once (the turnstile let go of this one then).
    const turn = this.#writes.enter(signal);
    if (turn) await turn.catch(() => Promise.reject(abortError(signal!)));
    try {
      const out = this.#p.out;
      const idle = this.#sendIdle;
      const spinUs = idle.next();
      let spinning = spinUs > 0;
      const start = performance.now();
      const spinUntil = start + spinUs / 1000;
      let yieldAt = start + YIELD_MS;
      // For its first ROOM_WAIT_MS of spinning, a send waits for a little more room than it needs (ROOM_WANTED, or a
      // quarter of the ring): a consumer behind a faster producer then frees a run of records undisturbed, where one
      // record at a time would have this side read R after every record it frees, and take R's line from it each
      // time (10-25 % of a 64 B stream, measured). Bounded in time: a consumer may stop short of that (it waits for
      // something this side sends next), and then any room does.
      const wanted = Math.min(out.capacity >> 2, ROOM_WANTED);
      for (let first = true;; first = false) {
        const refused = this.#sendRefused();
        if (refused) throw refused;
        const picky = !first && spinning && performance.now() - start < ROOM_WAIT_MS;
        if ((!picky || this.#freeBytes(out) >= wanted) && put()) {
          if (spinning) idle.found();
          return;
        }
        if (signal?.aborted) throw abortError(signal);
        if (spinning) {
          // A full ring empties at the consumer's pace. Looking at R on every turn would take R's cache line from
          // the consumer, which writes it for every message it takes, and slow it down (2x, measured): look every
          // sixteenth turn.
          for (let k = 1; k < 16; k++) await DONE;
          const t = performance.now();
          if (t < spinUntil) {
            if (t >= yieldAt) {
              this.#checkPeer(t);
              yieldAt = t + YIELD_MS;
              await macrotask();
            } else await DONE; // spin between microtasks, as receive() does
            continue;
          }
          spinning = false;
          idle.ranOut();
        }
        this.#checkPeer(performance.now());
        // As in receive: announce the sleep, then try once more before sleeping.
        out.producerSleeping = true;
        this.#stats.values[SLEEPS]!++;
        const r = out.readPosition();
        if (put()) {
          out.producerSleeping = false;
          return;
        }
        if (!(out.flags & CONSUMER_CLOSED)) await this.#sleep(this.#p.outBase + I_READ, r, SLEEP_MS, signal);
        out.producerSleeping = false;
      }
    } finally {
      this.#writes.leave();
    }
  }

  /**
   * Sends without waiting and without a promise: true if the message went into the ring, false when the ring is
   * full (nothing written). For hot loops; `send()` is the waiting form.
   *
   * @throws {ClosedError} when this end or the peer closed; {@linkcode MessageTooLargeError} over `maxMessage`.
   */
  trySend(message: Uint8Array): boolean {
    if (this.#writes.inside > 0) return false; // keep order behind sends that wait
    const out = this.#p.out;
    // The checks as one small predicate, the errors out of line: a JIT inlines this whole path, the ring's write too.
    if (!this.#canSend(out)) throw this.#sendRefused();
    if (message.length > this.maxMessage) throw this.#tooLarge(message.length);
    return this.#tryWrite(out, message);
  }

  /**
   * Sends the first `length` bytes of `data` as one message, as {@linkcode trySend} does: for a sender that built the
   * message in a buffer of its own (RPC's encoder), no array of the message's size is made.
   *
   * @throws as {@linkcode trySend}; `RangeError` when `length` is not an integer from 0 to `data.byteLength`.
   */
  trySendPart(data: Uint8Array, length: number): boolean {
    if (!(Number.isInteger(length) && length >= 0 && length <= data.length)) {
      throw new RangeError(`Cannot send ${length} bytes of a message of ${data.length}`);
    }
    if (this.#writes.inside > 0) return false; // keep order behind sends that wait
    const refused = this.#sendRefused();
    if (refused) throw refused;
    if (length > this.maxMessage) throw this.#tooLarge(length);
    return this.#tryWrite(this.#p.out, data, length);
  }

  /** The outgoing ring's free bytes now; corrupt positions end the channel as a write would. */
  #freeBytes(out: Ring): number {
    try {
      return out.freeBytes();
    } catch (e) {
      throw this.#corrupt(e);
    }
  }

  /** Writes one message if there is room, and wakes the consumer if it sleeps. */
  #tryWrite(out: Ring, message: Uint8Array, length: number = message.length): boolean {
    let done: boolean;
    try {
      done = out.tryWrite(message, length);
    } catch (e) {
      throw this.#corrupt(e);
    }
    if (done) this.#wakeConsumer();
    return done;
  }

  /**
   * Receives without waiting: the next message, or undefined when none is there. For hot loops; `receive()` is
   * the waiting form.
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received.
   */
  tryReceive(): Uint8Array | undefined {
    // The usual case straight to the ring: #tryTake calls its reader through a closure, which no JIT inlines.
    if (this.#canRead()) {
      const input = this.#p.in;
      let m: Uint8Array | undefined;
      try {
        m = input.tryRead(this.maxMessage);
      } catch (e) {
        throw this.#readFailed(e);
      }
      if (m !== undefined) {
        this.#wakeProducer();
        return m;
      }
      if (!(input.flagsSeen & PRODUCER_CLOSED)) return undefined;
    }
    return this.#tryTake(this.#readOne); // closed, a loan out, the peer closed...: the general path says what
  }

  /**
   * Receives the next message; waits (spins, then sleeps) while there is none.
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received;
   * {@linkcode TimeoutError} after `timeout` ms; the signal's reason when it aborts the wait.
   */
  receive(options?: { signal?: AbortSignal; timeout?: number }): Promise<Uint8Array> {
    return this.#take(this.#readOne, options);
  }

  /**
   * Receives the next message as `read` makes it, where it lies in the ring: `read(data, offset, length)` sees the
   * message as `data.subarray(offset, offset + length)`, valid only during the call (keep a copy of what you keep:
   * the space goes back to the producer), and what it returns (anything but undefined) is what this resolves with.
   * No array per message: RPC's decoder reads its messages this way. Waits (spins, then sleeps) while there is none.
   * What `read` throws rejects the receive after its message counted as received, and the channel goes on; a `read`
   * that returns undefined is a `TypeError` of that kind. `read` cannot receive on this channel (an `IpcError`).
   *
   * @throws as {@linkcode receive}.
   */
  receiveWith<T>(
    read: (data: Uint8Array, offset: number, length: number) => T,
    options?: { signal?: AbortSignal; timeout?: number },
  ): Promise<T> {
    let reader: (ring: Ring) => T | undefined;
    try {
      reader = this.#reader(read);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#take(reader, options);
  }

  /**
   * {@linkcode receiveWith} without waiting: what `read` returned, or undefined when no message is there.
   *
   * @throws as {@linkcode tryReceive}, and what `read` throws.
   */
  tryReceiveWith<T>(read: (data: Uint8Array, offset: number, length: number) => T): T | undefined {
    return this.#tryTake(this.#reader(read));
  }

  /** The ring reader of `read` (the last one is kept: a caller passes the same function every time). */
  #reader<T>(read: (data: Uint8Array, offset: number, length: number) => T): (ring: Ring) => T | undefined {
    if (read === this.#lastRead) return this.#lastReader as (ring: Ring) => T | undefined;
    if (typeof read !== "function") {
      throw new TypeError(`Cannot receive on ${this.#p.description}: read must be a function`);
    }
    const limit = this.maxMessage;
    // What `read` throws comes out of the ring as a HandlerFailure, as a drain handler's does.
    const guarded = (data: Uint8Array, offset: number, length: number): T => {
      const value = read(data, offset, length);
      if (value === undefined) {
        throw new HandlerFailure(new TypeError("Cannot receive with a read function that returned undefined"));
      }
      return value;
    };
    const reader = (ring: Ring) => ring.tryReadWith(guarded, limit);
    this.#lastRead = read;
    this.#lastReader = reader;
    return reader;
  }

  /**
   * Receives every message waiting, up to `max` (all by default), as one array, taken from the ring at once (one
   * atomic store); waits (spins, then sleeps) while there is none, then returns at least one.
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received;
   * {@linkcode TimeoutError} after `timeout` ms; the signal's reason when it aborts the wait; `RangeError` when
   * `max` is not a positive integer.
   */
  receiveMany(options?: { max?: number; signal?: AbortSignal; timeout?: number }): Promise<Uint8Array[]> {
    let read: (ring: Ring) => Uint8Array[] | undefined;
    try {
      read = this.#readMany(options?.max);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#take(read, options);
  }

  /**
   * Receives without waiting every message waiting, up to `max` (all by default); an empty array when there is none.
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received; `RangeError`
   * when `max` is not a positive integer.
   */
  tryReceiveMany(max?: number): Uint8Array[] {
    return this.#tryTake(this.#readMany(max)) ?? [];
  }

  /**
   * Receives the next message into `target` (no allocation: for large messages in a loop, reuse one buffer) and
   * returns its length; waits (spins, then sleeps) while there is none.
   *
   * @throws {RangeError} when the message is larger than `target` (it stays: receive it into a larger one);
   * otherwise as {@linkcode receive}.
   *
   * @example
   * ```ts
   * import { shm } from "ipckit";
   * const [a, handle] = shm.pair({ capacity: 1 << 20 });
   * const b = shm.fromHandle(handle);
   * const buffer = new Uint8Array(64 * 1024);
   * await a.send(new Uint8Array(1000).fill(7));
   * const n = await b.receiveInto(buffer);
   * console.log(n, buffer[999]); // 1000 7
   * await a.close();
   * await b.close();
   * ```
   */
  receiveInto(target: Uint8Array, options?: { signal?: AbortSignal; timeout?: number }): Promise<number> {
    if (!(target instanceof Uint8Array)) {
      return Promise.reject(new TypeError(`Cannot receive on ${this.#p.description}: the target must be a Uint8Array`));
    }
    return this.#take((ring) => ring.tryReadInto(target, this.maxMessage), options);
  }

  /**
   * Receives the next message into `target` without waiting: its length, or undefined when none is there.
   *
   * @throws {RangeError} when the message is larger than `target` (it stays); otherwise as {@linkcode tryReceive}.
   */
  tryReceiveInto(target: Uint8Array): number | undefined {
    if (!(target instanceof Uint8Array)) {
      throw new TypeError(`Cannot receive on ${this.#p.description}: the target must be a Uint8Array`);
    }
    return this.#tryTake((ring) => ring.tryReadInto(target, this.maxMessage));
  }

  /**
   * Hands every waiting message (up to `max`) to `handler` where it lies in the ring, without copying or
   * allocating: the message is `data.subarray(offset, offset + length)`, valid only during the call. The fastest
   * way to consume many small messages; returns how many were handled (0 when none was waiting). A message that
   * wraps around the end of the ring is handed as a copy. The handler cannot receive on this channel: such a
   * receive throws an `IpcError` (the drain has not taken its messages yet, so the receive would get them again).
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received; what `handler`
   * throws (its message counts as received).
   *
   * @example
   * ```ts
   * import { shm } from "ipckit";
   * const [a, handle] = shm.pair({ capacity: 4096 });
   * const b = shm.fromHandle(handle);
   * a.trySendMany([new Uint8Array([1, 2]), new Uint8Array([3])]);
   * let sum = 0;
   * const n = b.tryDrain((data, offset, length) => {
   *   for (let i = offset; i < offset + length; i++) sum += data[i]!;
   * });
   * console.log(n, sum); // 2 6
   * await a.close();
   * await b.close();
   * ```
   */
  tryDrain(handler: (data: Uint8Array, offset: number, length: number) => void, max = Infinity): number {
    this.#checkDrain(handler, max);
    if (this.#canRead()) {
      // The usual case straight to the ring, as #read runs it (the handler may call back in: #reading refuses that),
      // without #tryTake's reader closure, which no JIT inlines.
      const input = this.#p.in;
      let k: number;
      this.#reading = true;
      try {
        k = input.drain(handler, max, this.maxMessage);
      } catch (e) {
        throw this.#readFailed(e);
      } finally {
        this.#reading = false;
      }
      if (k > 0) {
        this.#wakeProducer();
        return k;
      }
      if (!(input.flagsSeen & PRODUCER_CLOSED)) return 0;
    }
    if (this.#reading) throw this.#reentered(); // before the fields below change under the read that runs
    // One reader for every call (a caller's `max` often changes from call to call): it finds the call's handler and
    // max here, and lets go of the handler after. (A handler cannot drain again: `#read` refuses.)
    this.#drainHandler = handler;
    this.#drainMax = max;
    try {
      return this.#tryTake(this.#drainNow) ?? 0;
    } finally {
      this.#drainHandler = undefined;
    }
  }

  /** Set while a read of the incoming ring runs (a drain handler or a `receiveWith` read may call back in). */
  #reading = false;

  /** The error of a receive from inside a read: that read has not taken its messages yet, this one would get them
   * a second time. */
  #reentered(): IpcError {
    return new IpcError(`Cannot receive on ${this.#p.description} inside a drain handler or a receiveWith read`);
  }

  #drainHandler: ((data: Uint8Array, offset: number, length: number) => void) | undefined;
  #drainMax = Infinity;
  readonly #drainNow = (ring: Ring): number | undefined => {
    // What the handler throws comes out of the ring as a HandlerFailure (`#read` throws it on, the channel goes on).
    const k = ring.drain(this.#drainHandler!, this.#drainMax, this.maxMessage);
    return k > 0 ? k : undefined;
  };

  /**
   * Waits (spins, then sleeps) until a message is there, then hands every waiting message (up to `max`) to
   * `handler` as {@linkcode tryDrain} does; resolves with how many were handled (at least one).
   *
   * @throws as {@linkcode receive}, and what `handler` throws.
   */
  drain(
    handler: (data: Uint8Array, offset: number, length: number) => void,
    options?: { max?: number; signal?: AbortSignal; timeout?: number },
  ): Promise<number> {
    let read: (ring: Ring) => number | undefined;
    try {
      read = this.#drainer(handler, options?.max);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#take(read, options);
  }

  /** The reader of a waiting `drain()`: one per call (it waits anyway), holding its handler and max across the wait. */
  #drainer(
    handler: (data: Uint8Array, offset: number, length: number) => void,
    max = Infinity,
  ): (ring: Ring) => number | undefined {
    this.#checkDrain(handler, max);
    const limit = this.maxMessage;
    // What the handler throws comes out of the ring as a HandlerFailure (`#read` throws it on, the channel goes on).
    return (ring: Ring) => {
      const k = ring.drain(handler, max, limit);
      return k > 0 ? k : undefined;
    };
  }

  #checkDrain(handler: (data: Uint8Array, offset: number, length: number) => void, max: number): void {
    if (typeof handler !== "function") {
      throw new TypeError(`Cannot drain ${this.#p.description}: the handler must be a function`);
    }
    if (!(max === Infinity || (Number.isSafeInteger(max) && max >= 1))) {
      throw new RangeError(`Cannot drain up to ${max} messages: max must be a positive integer`);
    }
  }

  readonly #readOne = (ring: Ring): Uint8Array | undefined => ring.tryRead(this.maxMessage);

  #readMany(max = Infinity): (ring: Ring) => Uint8Array[] | undefined {
    if (max === this.#lastManyMax) return this.#lastMany!;
    if (!(max === Infinity || (Number.isSafeInteger(max) && max >= 1))) {
      throw new RangeError(`Cannot receive up to ${max} messages: max must be a positive integer`);
    }
    const limit = this.maxMessage;
    const many = (ring: Ring) => {
      const out: Uint8Array[] = [];
      return ring.tryReadMany(out, max, limit) > 0 ? out : undefined;
    };
    this.#lastManyMax = max;
    this.#lastMany = many;
    return many;
  }

  /**
   * Lends `length` bytes of the ring to fill in place, if there is room now (see `shm/loan.ts`): write the message
   * into `loan.bytes`, then `loan.commit()`. No copy of the message is made (but for one that would wrap around the
   * end of the ring). Until the loan is committed or abandoned, other sends on this end are refused. Undefined when
   * there is no room, or a waiting send holds the turn.
   *
   * @throws {ClosedError} when this end or the peer closed; {@linkcode MessageTooLargeError} over `maxMessage`;
   * {@linkcode IpcError} while another loan is out; `RangeError` when `length` is not a non-negative integer.
   */
  tryLoan(length: number): SendLoan | undefined {
    this.#checkLoanLength(length);
    if (this.#writes.inside > 0) return undefined;
    const refused = this.#sendRefused();
    if (refused) throw refused;
    return this.#lendOut(length);
  }

  /**
   * {@linkcode tryLoan} that waits (spins, then sleeps) for room.
   *
   * @throws as {@linkcode tryLoan}; the signal's reason when it aborts the wait.
   *
   * @example
   * ```ts
   * import { shm } from "ipckit";
   * const [a, handle] = shm.pair({ capacity: 1 << 20 });
   * const b = shm.fromHandle(handle);
   * const loan = await a.loan(64 * 1024);
   * loan.bytes.fill(1); // written straight into the ring
   * loan.commit();
   * using got = await b.receiveLoan(); // and read straight from it
   * console.log(got.bytes.length); // 65536
   * got.release();
   * await a.close();
   * await b.close();
   * ```
   */
  loan(length: number, options?: { signal?: AbortSignal }): Promise<SendLoan> {
    let loan: SendLoan | undefined;
    try {
      this.#checkLoanLength(length);
      const refused = this.#sendRefused();
      if (refused) throw refused;
      if (options?.signal?.aborted) throw abortError(options.signal);
      if (this.#writes.inside === 0 && (loan = this.#lendOut(length)) !== undefined) return Promise.resolve(loan);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#sendSlow(() => (loan = this.#lendOut(length)) !== undefined, options?.signal).then(() => loan!);
  }

  #checkLoanLength(length: number): void {
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`Cannot lend ${length} bytes: the length must be a non-negative integer`);
    }
    if (length > this.maxMessage) throw this.#tooLarge(length);
  }

  /** A send loan of `length` bytes where the next message goes, or undefined when there is no room. */
  #lendOut(length: number): SendLoan | undefined {
    const out = this.#p.out;
    let start: number;
    try {
      start = out.reserve(length);
    } catch (e) {
      throw this.#corrupt(e);
    }
    return start < 0 ? undefined : this.#loans.lendSend(out, start, length);
  }

  /** Publishes a committed send loan (`wrapped`: its bytes, for a message that wraps around the end of the ring). */
  #commitLoan(length: number, wrapped: Uint8Array | undefined): void {
    const refused = this.#sendRefused();
    if (refused) throw refused;
    try {
      this.#p.out.commitLoan(length, wrapped);
    } catch (e) {
      throw this.#corrupt(e);
    }
    this.#wakeConsumer();
  }

  /**
   * Receives the next message lent where it lies in the ring, without copying it (see `shm/loan.ts`), or undefined
   * when none is there: read `loan.bytes`, then `loan.release()`. Until then other receives on this end are refused.
   *
   * @throws as {@linkcode tryReceive}; {@linkcode IpcError} while another received loan is out.
   */
  tryReceiveLoan(): ReceiveLoan | undefined {
    return this.#tryTake(this.#lender);
  }

  /**
   * {@linkcode tryReceiveLoan} that waits (spins, then sleeps) for a message.
   *
   * @throws as {@linkcode receive}; {@linkcode IpcError} while another received loan is out.
   */
  receiveLoan(options?: { signal?: AbortSignal; timeout?: number }): Promise<ReceiveLoan> {
    return this.#take(this.#lender, options);
  }

  readonly #lender = (ring: Ring): ReceiveLoan | undefined => {
    const n = ring.lend(this.maxMessage);
    return n < 0 ? undefined : this.#loans.lendReceive(ring, n);
  };

  /** Takes a released receive loan of `length` bytes. */
  #releaseLoan(length: number): void {
    if (this.#closed) return; // the memory is gone; so is the peer's interest in the space
    this.#p.in.releaseLoan(length);
    this.#wakeProducer();
  }

  /** The no-wait form of every receive: what `read` takes now, or undefined. */
  #tryTake<T>(read: (ring: Ring) => T | undefined): T | undefined {
    if (this.#closed) throw this.#closedError("receive");
    if (this.#reads.inside > 0) return undefined;
    const m = this.#read(read);
    // A plain look at the flags first (every empty poll passes here), then an ordered one before the ring again.
    if (m !== undefined || !(this.#p.in.flagsSeen & PRODUCER_CLOSED) || !(this.#p.in.flags & PRODUCER_CLOSED)) return m;
    // The peer closed: what it published before the flag is there to be read now.
    const last = this.#read(read);
    if (last !== undefined) return last;
    throw (this.#peerGone ??= new ClosedError(`Cannot receive on ${this.#p.description}: the peer closed it`));
  }

  /** The waiting form of every receive. */
  #take<T>(read: (ring: Ring) => T | undefined, options?: { signal?: AbortSignal; timeout?: number }): Promise<T> {
    if (this.#closed) return Promise.reject(this.#closedError("receive"));
    if (this.#peerGone && !this.#p.in.readable()) return Promise.reject(this.#peerGone);
    const timeout = options?.timeout;
    if (timeout !== undefined && !(timeout >= 0)) {
      return Promise.reject(new RangeError(`Cannot receive with timeout ${timeout}: it must be >= 0 milliseconds`));
    }
    if (options?.signal?.aborted) return Promise.reject(abortError(options.signal));
    if (this.#reads.inside === 0) {
      try {
        const m = this.#read(read);
        if (m !== undefined) return Promise.resolve(m);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.#receiveSlow(read, options?.signal, timeout);
  }

  /** Whether a read may run now, with no waiting receive before it (else #tryTake and #read say why). */
  #canRead(): boolean {
    return this.#reads.inside === 0 && !this.#closed && this.#broken === undefined &&
      this.#loans.receive === undefined && !this.#reading;
  }

  /** Runs `read` on the incoming ring; wakes the producer when something was taken. */
  #read<T>(read: (ring: Ring) => T | undefined): T | undefined {
    if (this.#broken) throw this.#broken;
    if (this.#loans.receive) {
      throw new IpcError(`Cannot receive on ${this.#p.description}: a received loan is out (release() it first)`);
    }
    if (this.#reading) throw this.#reentered();
    let m: T | undefined;
    this.#reading = true;
    try {
      m = read(this.#p.in);
    } catch (e) {
      throw this.#readFailed(e);
    } finally {
      this.#reading = false;
    }
    if (m !== undefined) this.#wakeProducer();
    return m;
  }

  /** What a read that threw `e` throws on; a corrupt ring or a message over our limit ends the channel first. */
  #readFailed(e: unknown): unknown {
    if (e instanceof HandlerFailure) {
      this.#wakeProducer(); // what the handler saw was taken
      return e.error;
    }
    if (e instanceof RangeError) return e; // a target too small: the message stays, the channel goes on
    // A corrupt ring or a message over our limit: this channel cannot go on. Tell the peer too.
    this.#broken = this.#peerGone ??= new ClosedError(`Cannot use ${this.#p.description}: ${(e as Error).message}`, {
      cause: e,
    });
    this.#p.in.setFlag(CONSUMER_CLOSED);
    this.#p.waiter.wake(this.#p.inBase + I_READ);
    return e;
  }

  async #receiveSlow<T>(
    read: (ring: Ring) => T | undefined,
    signal: AbortSignal | undefined,
    timeout: number | undefined,
  ): Promise<T> {
    // Queued behind another waiting receive, an abort ends the wait at once (the turnstile let go of this one then). A
    // receive that found the turnstile free has just looked at the ring (`#take`): its first look here comes a turn
    // later.
    const turn = this.#reads.enter(signal);
    await (turn === undefined ? DONE : turn.catch(() => Promise.reject(abortError(signal!))));
    try {
      const input = this.#p.in;
      const idle = this.#receiveIdle;
      // The clock is read first only for a timeout: otherwise at the eighth look (performance.now() costs 40-90 ns,
      // more than a look at the ring), and the spin's time counts from there.
      const deadline = timeout === undefined ? Infinity : performance.now() + timeout;
      const spinUs = idle.next(this.#peerParked);
      let spinUntil = -1;
      let spinning = spinUs > 0;
      let spins = 0;
      let yieldAt = 0;
      let bounded = false;
      for (;;) {
        if (this.#closed) throw this.#closedError("receive");
        const m = this.#read(read);
        if (m !== undefined) {
          if (spinning) idle.found();
          return m;
        }
        // A plain look at the flags, then an ordered one, then the ring again: what the peer published before it
        // closed is delivered before the end.
        if (input.flagsSeen & PRODUCER_CLOSED && input.flags & PRODUCER_CLOSED) {
          const last = this.#read(read);
          if (last !== undefined) return last;
          throw (this.#peerGone ??= new ClosedError(`Cannot receive on ${this.#p.description}: the peer closed it`));
        }
        if (this.#peerGone) throw this.#peerGone;
        if (signal?.aborted) throw abortError(signal);
        // Spin between microtasks, never inside one: the code that will send (often the reply to what this side
        // just received) may be waiting in the microtask queue, and runs before each turn of this loop. The clock
        // costs more than a look at the ring, so the spin reads it every eighth turn.
        if (spinning && (++spins & 7) !== 0) {
          await DONE;
          continue;
        }
        const t = performance.now();
        if (spinUntil < 0) {
          spinUntil = t + spinUs / 1000;
          yieldAt = t + YIELD_MS;
        }
        if (t >= deadline) {
          throw new TimeoutError(`Cannot receive on ${this.#p.description}: timed out after ${timeout} ms`);
        }
        if (spinning && t < spinUntil) {
          if (t >= yieldAt) {
            // A long spin ("spin"): let timers and I/O run, and see whether the peer still lives.
            yieldAt = t + YIELD_MS;
            if (this.#peerDied(t)) continue;
            await macrotask();
          } else await DONE;
          continue;
        }
        if (spinning) {
          spinning = false;
          idle.ranOut();
        }
        if (this.#peerDied(t)) {
          // What the peer wrote whole before it died is delivered first (it may have written since the look
          // above), as a socket delivers its buffer before the end.
          const last = this.#read(read);
          if (last !== undefined) return last;
          throw this.#peerGone!;
        }
        // Announce the sleep, then look again: a message published before the flag was seen is found here, and
        // one published after it wakes us (or changes the word, so the wait returns at once).
        input.consumerSleeping = true;
        // A message the producer published with a plain store may still be in its CPU's store buffer, and its look
        // at our announcement may have come before it: the fence makes one of the two seen (`os/fence.ts`).
        const fenced = this.#p.fence !== undefined && input.producerPublishesPlainly;
        if (fenced && !this.#p.fence!()) {
          // The barrier failed (the kernel could not allocate it): no sleep on a look that may miss a record; look
          // again after a turn of the event loop.
          input.consumerSleeping = false;
          await macrotask();
          continue;
        }
        this.#stats.values[SLEEPS]!++;
        const w = input.writePosition();
        if (!input.readable() && !(input.flags & PRODUCER_CLOSED)) {
          // While the producer publishes plainly it looks at our announcement with a plain load (`Ring`'s
          // takeConsumerSleeping): the first such sleep of a wait has a bound, a look that came late costs at most
          // that (later ones need none: the producer looks afresh at each publication).
          const until = fenced && !bounded ? Math.min(deadline, t + SLEEP_MS) : deadline;
          bounded ||= fenced;
          await this.#sleep(this.#p.inBase + I_WRITE, w, Math.min(SLEEP_MS, deadline - t), signal, until);
        }
        input.consumerSleeping = false;
      }
    } finally {
      this.#reads.leave();
    }
  }

  /**
   * Sleeps until the peer wakes us, the time passes, or `signal` aborts (which wakes our own wait). With a doorbell
   * that still sounds the wait needs no time limit but the caller's `deadline` (performance.now() time): a peer
   * that dies ends the doorbell's connection. Otherwise it lasts at most `ms`, and the caller checks the peer.
   */
  #sleep(
    index: number,
    value: number,
    ms: number,
    signal: AbortSignal | undefined,
    deadline = Infinity,
  ): Promise<void> {
    const bell = this.#p.bell;
    if (bell && !bell.silent) {
      return bell.wait(deadline === Infinity ? Infinity : deadline - performance.now(), signal, ms);
    }
    const wait = this.#p.waiter.wait(index, value, ms);
    if (signal === undefined) return wait;
    return wait.finally(onAbort(signal, () => this.#p.waiter.wake(index)));
  }

  /**
   * Whether the peer is gone (closed, failed or dead); notes a dead peer process. Its liveness is read (a look in
   * /proc) at most every 100 ms, or at once when the doorbell went silent (the kernel ends the connection of a
   * process that dies).
   */
  #peerDied(now: number): boolean {
    if (this.#peerGone === undefined && (now - this.#checked >= SLEEP_MS || this.#p.bell?.silent)) {
      this.#checked = now;
      if (!this.#p.peerAlive()) {
        this.#peerGone = new ClosedError(`Cannot use ${this.#p.description}: the peer process died`);
      }
    }
    return this.#peerGone !== undefined;
  }

  #checkPeer(now: number): void {
    if (this.#peerDied(now)) throw this.#peerGone;
  }

  /** This end's calls after `close()`: `ClosedError`, saying why when something else than the user closed it. */
  #closedError(op: "send" | "receive"): ClosedError {
    return this.#closedBy ?? new ClosedError(`Cannot ${op} on ${this.#p.description}: it is closed`);
  }

  /** Messages this end sent and received so far: what a listener's idle watch looks at for traffic. */
  get traffic(): number {
    const v = this.#stats.values;
    return v[MESSAGES_OUT]! + v[MESSAGES_IN]!;
  }

  /**
   * @internal Closes this end as {@linkcode close} does, its pending and later calls rejecting with `reason` (a
   * listener closing a channel idle too long).
   */
  closeWith(reason: ClosedError): Promise<void> {
    if (!this.#closed) this.#closedBy = reason;
    return this.close();
  }

  /**
   * Closes this end; idempotent. The peer receives what was sent before, then `ClosedError`; its sends fail.
   * The memory is released once no pending call of this end uses it.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#stats.close();
    const p = this.#p;
    p.out.setFlag(PRODUCER_CLOSED);
    p.in.setFlag(CONSUMER_CLOSED);
    // Wake everyone who may sleep on this channel: the peer (data/room) and our own pending calls. Closing the
    // doorbell wakes both sides' waits on it.
    p.bell?.close();
    p.waiter.wake(p.outBase + I_WRITE);
    p.waiter.wake(p.outBase + I_READ);
    p.waiter.wake(p.inBase + I_WRITE);
    p.waiter.wake(p.inBase + I_READ);
    return Promise.all([this.#reads.idle(), this.#writes.idle()]).then(() => p.release());
  }

  /** Closes this end (`close()`). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The handle of a thread channel (`shm.pair`), to rebuild it elsewhere; undefined for process channels. */
  get handle(): ShmHandle | undefined {
    return this.#handle;
  }
}
