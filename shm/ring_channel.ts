/**
 * The shared-memory channel's mechanics: one end of a duplex channel made of two rings (`shm/ring.ts`), one per
 * direction, in a shared segment between processes or a SharedArrayBuffer between threads (the layout, and how the
 * parts of an end are made, is `shm/ring_channel_layout.ts`). The public face, `shm.ShmChannel`, adds the Channel
 * contract's capabilities and iteration on top (`transports/shm.ts`).
 *
 * - **Framing**: each message is one record of the ring (a length word, then the bytes); a message over
 *   `maxMessage` is refused before anything is written, and one arriving over it breaks the channel (both sides
 *   learn it).
 * - **Waiting**: `receive()` on an empty ring (and `send()` on a full one) first spins for `spin` microseconds,
 *   looking at the ring once per microtask turn, so code already queued (the handler that will send a reply, say)
 *   runs while it spins. Then it sleeps without freezing the event loop (`shm/wait.ts`: futex(2) off the main
 *   thread between processes, `Atomics.waitAsync` between threads). A side that publishes wakes the other only when
 *   it announced that it sleeps. Sleeps last at most 100 ms; between them the peer is checked (`os/liveness.ts`), so
 *   a dead peer process ends `receive()`/`send()` with `ClosedError` within about 100 ms, `receive()` only after the
 *   messages the peer wrote whole before it died (as a socket delivers its buffer before the end).
 * - **Order**: waiting sends (and receives) take turns, and the no-wait forms step aside while one waits.
 * - **Close**: flags in both rings, then every sleeper on the channel is woken; the memory is released once no
 *   pending call of this end uses it.
 *
 * @module
 */
import { onAbort } from "../async/mod.ts";
import { abortError, ClosedError, MessageTooLargeError, ProtocolError, TimeoutError } from "../errors.ts";
import { CONSUMER_CLOSED, I_READ, I_WRITE, PRODUCER_CLOSED, type Ring } from "./ring.ts";
import type { Waiter } from "./wait.ts";

/** Longest single sleep; liveness and flags are re-checked in between. */
export const SLEEP_MS = 100;

/** What a shared-memory channel end needs to be rebuilt in another thread: post it to a Worker. */
export interface ShmHandle {
  readonly buffer: SharedArrayBuffer;
  readonly side: 0 | 1;
  readonly spin?: number;
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
  #peerGone: ClosedError | ProtocolError | undefined;
  /** Set when the incoming ring cannot be read any more (corrupt, or a message over our limit). */
  #broken: ClosedError | undefined;
  #readers = 0;
  #readTurn: Promise<void> = Promise.resolve();
  #writers = 0;
  #writeTurn: Promise<void> = Promise.resolve();
  #handle: ShmHandle | undefined;

  /** @internal Use `shm.create`, `shm.open`, `shm.pair` or `shm.fromHandle`. */
  constructor(parts: ChannelParts, handle?: ShmHandle) {
    this.#p = parts;
    this.#handle = handle;
    const ringMax = parts.out.maxMessage;
    const max = parts.maxMessage ?? ringMax;
    if (!Number.isSafeInteger(max) || max < 0 || max > ringMax) {
      throw new RangeError(`Cannot use maxMessage ${max}: it must be an integer from 0 to ${ringMax} (capacity - 8)`);
    }
    this.maxMessage = max;
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
    if (message.byteLength > this.maxMessage) {
      return Promise.reject(
        new MessageTooLargeError(
          `Cannot send a message of ${message.byteLength} bytes on ${this.#p.description}: it exceeds maxMessage (${this.maxMessage} bytes)`,
          message.byteLength,
          this.maxMessage,
        ),
      );
    }
    if (options?.signal?.aborted) return Promise.reject(abortError(options.signal));
    try {
      if (this.#writers === 0 && this.#p.out.tryWrite(message)) {
        this.#wakeConsumer();
        return Promise.resolve();
      }
    } catch (e) {
      return Promise.reject(this.#corrupt(e));
    }
    return this.#sendSlow(message, options?.signal);
  }

  /** The peer wrote an impossible read position: no later send can be trusted either. */
  #corrupt(e: unknown): unknown {
    if (e instanceof ProtocolError) this.#peerGone ??= e;
    return e;
  }

  #sendRefused(): Error | undefined {
    if (this.#closed) return new ClosedError(`Cannot send on ${this.#p.description}: it is closed`);
    if (this.#peerGone) return this.#peerGone;
    if (this.#p.out.flags & CONSUMER_CLOSED) {
      return new ClosedError(`Cannot send on ${this.#p.description}: the peer closed it`);
    }
    return undefined;
  }

  #wakeConsumer(): void {
    if (this.#p.out.consumerSleeping) this.#p.waiter.wake(this.#p.outBase + I_WRITE);
  }

  #wakeProducer(): void {
    if (this.#p.in.producerSleeping) this.#p.waiter.wake(this.#p.inBase + I_READ);
  }

  async #sendSlow(message: Uint8Array, signal: AbortSignal | undefined): Promise<void> {
    this.#writers++;
    const turn = this.#writeTurn;
    let release!: () => void;
    this.#writeTurn = new Promise((r) => (release = r));
    try {
      await turn;
      const out = this.#p.out;
      const spinUntil = performance.now() + this.#p.spinUs / 1000;
      for (;;) {
        const refused = this.#sendRefused();
        if (refused) throw refused;
        if (this.#tryWrite(out, message)) return this.#wakeConsumer();
        if (signal?.aborted) throw abortError(signal);
        if (performance.now() < spinUntil) {
          await undefined; // spin between microtasks, as receive() does
          continue;
        }
        this.#checkPeer();
        // As in receive: announce the sleep, then try once more before sleeping.
        out.producerSleeping = true;
        const r = out.readPosition();
        if (this.#tryWrite(out, message)) {
          out.producerSleeping = false;
          return this.#wakeConsumer();
        }
        if (!(out.flags & CONSUMER_CLOSED)) await this.#sleep(this.#p.outBase + I_READ, r, SLEEP_MS, signal);
        out.producerSleeping = false;
      }
    } finally {
      this.#writers--;
      release();
    }
  }

  /**
   * Sends without waiting and without a promise: true if the message went into the ring, false when the ring is
   * full (nothing written). For hot loops; `send()` is the waiting form.
   *
   * @throws {ClosedError} when this end or the peer closed; {@linkcode MessageTooLargeError} over `maxMessage`.
   */
  trySend(message: Uint8Array): boolean {
    if (this.#writers > 0) return false; // keep order behind sends that wait
    const refused = this.#sendRefused();
    if (refused) throw refused;
    if (message.byteLength > this.maxMessage) {
      throw new MessageTooLargeError(
        `Cannot send a message of ${message.byteLength} bytes on ${this.#p.description}: it exceeds maxMessage (${this.maxMessage} bytes)`,
        message.byteLength,
        this.maxMessage,
      );
    }
    if (!this.#tryWrite(this.#p.out, message)) return false;
    this.#wakeConsumer();
    return true;
  }

  #tryWrite(out: Ring, message: Uint8Array): boolean {
    try {
      return out.tryWrite(message);
    } catch (e) {
      throw this.#corrupt(e);
    }
  }

  /**
   * Receives without waiting: the next message, or undefined when none is there. For hot loops; `receive()` is
   * the waiting form.
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received.
   */
  tryReceive(): Uint8Array | undefined {
    if (this.#closed) throw new ClosedError(`Cannot receive on ${this.#p.description}: it is closed`);
    if (this.#readers > 0) return undefined;
    const flags = this.#p.in.flags;
    const m = this.#tryRead();
    if (m === undefined && flags & PRODUCER_CLOSED) {
      throw (this.#peerGone ??= new ClosedError(`Cannot receive on ${this.#p.description}: the peer closed it`));
    }
    return m;
  }

  /**
   * Receives the next message; waits (spins, then sleeps) while there is none.
   *
   * @throws {ClosedError} when this end is closed, or the peer closed and everything was received;
   * {@linkcode TimeoutError} after `timeout` ms; the signal's reason when it aborts the wait.
   */
  receive(options?: { signal?: AbortSignal; timeout?: number }): Promise<Uint8Array> {
    if (this.#closed) return Promise.reject(new ClosedError(`Cannot receive on ${this.#p.description}: it is closed`));
    if (this.#peerGone && !this.#p.in.readable()) return Promise.reject(this.#peerGone);
    const timeout = options?.timeout;
    if (timeout !== undefined && !(timeout >= 0)) {
      return Promise.reject(new RangeError(`Cannot receive with timeout ${timeout}: it must be >= 0 milliseconds`));
    }
    if (options?.signal?.aborted) return Promise.reject(abortError(options.signal));
    if (this.#readers === 0) {
      try {
        const m = this.#tryRead();
        if (m !== undefined) return Promise.resolve(m);
      } catch (e) {
        return Promise.reject(e);
      }
    }
    return this.#receiveSlow(options?.signal, timeout);
  }

  #tryRead(): Uint8Array | undefined {
    if (this.#broken) throw this.#broken;
    let m: Uint8Array | undefined;
    try {
      m = this.#p.in.tryRead(this.maxMessage);
    } catch (e) {
      // A corrupt ring or a message over our limit: this channel cannot go on. Tell the peer too.
      this.#broken = this.#peerGone ??= new ClosedError(`Cannot use ${this.#p.description}: ${(e as Error).message}`, {
        cause: e,
      });
      this.#p.in.setFlag(CONSUMER_CLOSED);
      this.#p.waiter.wake(this.#p.inBase + I_READ);
      throw e;
    }
    if (m !== undefined) this.#wakeProducer();
    return m;
  }

  async #receiveSlow(signal: AbortSignal | undefined, timeout: number | undefined): Promise<Uint8Array> {
    this.#readers++;
    const turn = this.#readTurn;
    let release!: () => void;
    this.#readTurn = new Promise((r) => (release = r));
    try {
      await turn;
      const input = this.#p.in;
      const now = performance.now();
      const deadline = timeout === undefined ? Infinity : now + timeout;
      const spinUntil = now + this.#p.spinUs / 1000;
      let spinning = this.#p.spinUs > 0;
      let spins = 0;
      for (;;) {
        if (this.#closed) throw new ClosedError(`Cannot receive on ${this.#p.description}: it is closed`);
        // Read the flag before the ring: a close published after the last message is seen after it.
        const flags = input.flags;
        const m = this.#tryRead();
        if (m !== undefined) return m;
        if (flags & PRODUCER_CLOSED) {
          throw (this.#peerGone ??= new ClosedError(`Cannot receive on ${this.#p.description}: the peer closed it`));
        }
        if (this.#peerGone) throw this.#peerGone;
        if (signal?.aborted) throw abortError(signal);
        // Spin between microtasks, never inside one: the code that will send (often the reply to what this side
        // just received) may be waiting in the microtask queue, and runs before each turn of this loop. The clock
        // costs more than a look at the ring, so the spin reads it every eighth turn.
        if (spinning && (++spins & 7) !== 0) {
          await undefined;
          continue;
        }
        const t = performance.now();
        if (t >= deadline) {
          throw new TimeoutError(`Cannot receive on ${this.#p.description}: timed out after ${timeout} ms`);
        }
        if (spinning && t < spinUntil) {
          await undefined;
          continue;
        }
        spinning = false;
        if (this.#peerDied()) {
          // What the peer wrote whole before it died is delivered first (it may have written since the look
          // above), as a socket delivers its buffer before the end.
          const last = this.#tryRead();
          if (last !== undefined) return last;
          throw this.#peerGone!;
        }
        // Announce the sleep, then look again: a message published before the flag was seen is found here, and
        // one published after it wakes us (or changes the word, so the wait returns at once).
        input.consumerSleeping = true;
        const w = input.writePosition();
        if (!input.readable() && !(input.flags & PRODUCER_CLOSED)) {
          await this.#sleep(this.#p.inBase + I_WRITE, w, Math.min(SLEEP_MS, deadline - t), signal);
        }
        input.consumerSleeping = false;
      }
    } finally {
      this.#readers--;
      release();
    }
  }

  /** Sleeps until the word changes, the time passes, or `signal` aborts (which wakes our own wait). */
  #sleep(index: number, value: number, ms: number, signal: AbortSignal | undefined): Promise<void> {
    const wait = this.#p.waiter.wait(index, value, ms);
    if (signal === undefined) return wait;
    return wait.finally(onAbort(signal, () => this.#p.waiter.wake(index)));
  }

  /** Whether the peer is gone (closed, failed or dead); notes a dead peer process. */
  #peerDied(): boolean {
    if (this.#peerGone === undefined && !this.#p.peerAlive()) {
      this.#peerGone = new ClosedError(`Cannot use ${this.#p.description}: the peer process died`);
    }
    return this.#peerGone !== undefined;
  }

  #checkPeer(): void {
    if (this.#peerDied()) throw this.#peerGone;
  }

  /**
   * Closes this end; idempotent. The peer receives what was sent before, then `ClosedError`; its sends fail.
   * The memory is released once no pending call of this end uses it.
   */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const p = this.#p;
    p.out.setFlag(PRODUCER_CLOSED);
    p.in.setFlag(CONSUMER_CLOSED);
    // Wake everyone who may sleep on this channel: the peer (data/room) and our own pending calls.
    p.waiter.wake(p.outBase + I_WRITE);
    p.waiter.wake(p.outBase + I_READ);
    p.waiter.wake(p.inBase + I_WRITE);
    p.waiter.wake(p.inBase + I_READ);
    return Promise.all([this.#readTurn, this.#writeTurn]).then(() => p.release());
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
