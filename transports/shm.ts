/**
 * The shared memory channel: two rings (one per direction, see `shm/ring.ts`) in one POSIX shared memory segment
 * between processes of any runtime, or in one SharedArrayBuffer between threads.
 *
 * Waiting: `receive()` on an empty ring (and `send()` on a full one) first spins for `spin` microseconds (the
 * peer usually answers within that on a busy machine). The spin checks the ring once per microtask turn, so code
 * already queued (the handler that will send a reply, say) runs while it spins. Then it sleeps without freezing the
 * event loop: futex(2) off
 * the main thread between processes, `Atomics.waitAsync` between threads. A side that publishes wakes the other
 * only when it sleeps. Sleeps last at most 100 ms at a time, and between them the peer is checked (its pid and
 * start time, `os/liveness.ts`: a zombie or a process that took over a dead peer's pid counts as dead): if the peer
 * process died, `receive()`/`send()` reject with `ClosedError` within about 100 ms.
 *
 * Messages larger than the ring (`capacity - 8` bytes) are rejected with `MessageTooLargeError`; choose the
 * capacity for the largest message. A full ring makes `send()` wait (backpressure).
 *
 * ## Segment layout (little-endian)
 *
 * ```text
 * offset       size          field
 * 0            4             magic 0x43435049 (the bytes "IPCC")
 * 4            4             version: 1
 * 8            4             ring capacity C
 * 12           4             attached: 0, then 1 once the opener attached (a futex word)
 * 16           48            reserved, 0
 * 64           192 + C       ring 0: creator -> opener
 * 256 + C      192 + C       ring 1: opener -> creator
 * ```
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const name = `/ipckit-app-${(await runtime()).pid}`;
 * // Usually two processes (a Deno and a Bun one, say): create waits for open.
 * const [a, b] = await Promise.all([
 *   shm.create(name, { capacity: 1 << 20 }),
 *   shm.open(name, { wait: 5000 }),
 * ]);
 * await b.send(new TextEncoder().encode("hello"));
 * console.log(new TextDecoder().decode(await a.receive())); // "hello"
 * await a.close();
 * await b.close();
 * ```
 *
 * Why one file of ~700 lines (200 of them docs): the `ShmChannel` (fast and slow send and receive paths, wake-ups,
 * peer checks, close) and the four ways to make one (create, open, pair, fromHandle); moving the makers apart belongs
 * with the shared-memory rework of this channel.
 *
 * @module
 */
import { Backoff, onAbort, retry } from "../async/mod.ts";
import { type Native, native } from "../ffi/native.ts";
import {
  abortError,
  AlreadyExistsError,
  ClosedError,
  MessageTooLargeError,
  NotFoundError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import { alive, type Identity, self } from "../os/liveness.ts";
import { CONSUMER_CLOSED, I_READ, I_WRITE, PRODUCER_CLOSED, Ring, ringCapacity, ringSize } from "../shm/ring.ts";
import { checkName, SharedMemory } from "../shm/segment.ts";
import { atomicsWaiter, futexWaiter, type Waiter } from "../shm/wait.ts";
import { type Capabilities, type Channel, messageIterator, type ReceiveOptions, type SendOptions } from "./channel.ts";

const MAGIC = 0x43435049;
const VERSION = 1;
const HEADER = 64;
const I_CAPACITY = 2;
const I_ATTACHED = 3;
/** Longest single sleep; liveness and flags are re-checked in between. */
const SLEEP_MS = 100;
const DEFAULT_CAPACITY = 1 << 20;
const DEFAULT_SPIN_US = 50;

/** Options of the shm channel. */
export interface ShmOptions {
  /** Data bytes of each ring (rounded up to a power of two, at least 64); 1 MiB by default. create/pair only. */
  capacity?: number;
  /** Largest message, at most `capacity - 8`; the ring's limit by default. */
  maxMessage?: number;
  /** Microseconds to spin before sleeping when there is nothing to receive (or no room); 50 by default. */
  spin?: number;
  /** Aborts waiting for the peer (create) or for the segment (open). */
  signal?: AbortSignal;
  /** open only: milliseconds to wait for the creator's segment to appear; 0 (the default) fails at once. */
  wait?: number;
  /** create only: permission bits of the segment; 0o600 by default. */
  mode?: number;
}

/** What a shared-memory channel end needs to be rebuilt in another thread: post it to a Worker. */
export interface ShmHandle {
  readonly buffer: SharedArrayBuffer;
  readonly side: 0 | 1;
  readonly spin?: number;
}

/**
 * Total bytes of a channel's buffer for a ring capacity.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * console.log(shm.channelSize(1 << 20)); // 2097600: a 64-byte header and two rings of 192 + 1 MiB
 * ```
 */
export function channelSize(capacity: number): number {
  return HEADER + 2 * ringSize(capacity);
}

function initLayout(buffer: ArrayBufferLike, capacity: number): Int32Array {
  const head = new Int32Array(buffer, 0, HEADER / 4);
  Ring.init(buffer, HEADER, capacity);
  Ring.init(buffer, HEADER + ringSize(capacity), capacity);
  head[1] = VERSION;
  head[I_CAPACITY] = capacity;
  Atomics.store(head, 0, MAGIC);
  return head;
}

function rings(buffer: ArrayBufferLike, side: 0 | 1): { out: Ring; in: Ring } {
  const head = new Int32Array(buffer, 0, HEADER / 4);
  if (Atomics.load(head, 0) !== MAGIC || head[1] !== VERSION) {
    throw new ProtocolError("Cannot attach to the shm channel: the segment holds no ipckit channel of this version");
  }
  const capacity = head[I_CAPACITY]!;
  const r0 = Ring.attach(buffer, HEADER);
  const r1 = Ring.attach(buffer, HEADER + ringSize(capacity));
  return side === 0 ? { out: r0, in: r1 } : { out: r1, in: r0 };
}

/** Checks `maxMessage` against a ring capacity before anything is created. */
function checkMaxMessage(maxMessage: unknown, capacity: number): void {
  if (maxMessage === undefined) return;
  const limit = capacity - 8;
  if (!Number.isSafeInteger(maxMessage) || (maxMessage as number) < 0 || (maxMessage as number) > limit) {
    throw new RangeError(`Cannot use maxMessage ${String(maxMessage)}: it must be an integer from 0 to ${limit}`);
  }
}

function spinOption(spin: unknown): number {
  const us = spin ?? DEFAULT_SPIN_US;
  if (typeof us !== "number" || !(us >= 0)) throw new RangeError(`Cannot use spin ${String(spin)}: it must be >= 0`);
  return us;
}

interface Parts {
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
 * One end of a shared-memory channel.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 4096 });
 * const b: shm.ShmChannel = shm.fromHandle(handle);
 * // The hot-loop forms: no promise, no wait.
 * let sent = 0;
 * while (a.trySend(new Uint8Array([sent]))) sent++; // until the ring is full
 * let received = 0;
 * while (b.tryReceive() !== undefined) received++;
 * console.log(sent === received, sent > 100); // true true
 * console.log(a.handle !== undefined); // true: a thread channel, which another worker can rebuild
 * await a.close();
 * await b.close();
 * ```
 */
export class ShmChannel implements Channel {
  readonly capabilities: Capabilities;
  readonly maxMessage: number;
  readonly #p: Parts;
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
  constructor(parts: Parts, handle?: ShmHandle) {
    this.#p = parts;
    this.#handle = handle;
    const ringMax = parts.out.maxMessage;
    const max = parts.maxMessage ?? ringMax;
    if (!Number.isSafeInteger(max) || max < 0 || max > ringMax) {
      throw new RangeError(`Cannot use maxMessage ${max}: it must be an integer from 0 to ${ringMax} (capacity - 8)`);
    }
    this.maxMessage = max;
    this.capabilities = { ordered: true, reliable: true, maxMessage: ringMax, crossHost: false, datagram: false };
  }

  get closed(): boolean {
    return this.#closed || this.#peerGone !== undefined;
  }

  send(message: Uint8Array, options?: SendOptions): Promise<void> {
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

  receive(options?: ReceiveOptions): Promise<Uint8Array> {
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
        this.#checkPeer();
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

  #checkPeer(): void {
    if (this.#peerGone === undefined && !this.#p.peerAlive()) {
      this.#peerGone = new ClosedError(`Cannot use ${this.#p.description}: the peer process died`);
    }
    if (this.#peerGone) throw this.#peerGone;
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

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return messageIterator(this);
  }

  /** The handle of a thread channel (`shm.pair`), to rebuild it elsewhere; undefined for process channels. */
  get handle(): ShmHandle | undefined {
    return this.#handle;
  }
}

function processParts(
  ffi: Native,
  segment: SharedMemory,
  side: 0 | 1,
  peer: Identity,
  options: ShmOptions,
): Parts {
  const words = new Int32Array(segment.buffer);
  const { out, in: input } = rings(segment.buffer, side);
  return {
    description: `shm channel "${segment.name}"`,
    out,
    in: input,
    waiter: futexWaiter(ffi, words, segment.address),
    outBase: out.offset / 4,
    inBase: input.offset / 4,
    spinUs: spinOption(options.spin),
    maxMessage: options.maxMessage,
    peerAlive: () => alive(peer.id, peer.tag, ffi),
    release: () => segment.close(),
  };
}

/**
 * Creates the segment `name` holding a channel and waits for a peer to `open` it. Once the peer attached, the name
 * is removed (so nothing is left in /dev/shm if either process dies later); the mapping lives on.
 *
 * @throws {AlreadyExistsError} when the name exists.
 *
 * @example
 * ```ts
 * import { runtime, runtimeArgv, shm } from "ipckit";
 * const rt = await runtime();
 * const [role, name] = rt.args();
 * if (role === "child") {
 *   await using parent = await shm.open(name!, { wait: 10_000 });
 *   for await (const message of parent) await parent.send(message.reverse()); // until the parent closes
 * } else {
 *   const segment = `/ipckit-calc-${rt.pid}`;
 *   const argv = [...runtimeArgv("bun"), rt.fromFileUrl(import.meta.url), "child", segment];
 *   const child = rt.spawn(argv, { stdio: "inherit" });
 *   // Waits for the child to open it, then removes the name: nothing is left in /dev/shm after a crash.
 *   await using channel = await shm.create(segment, { capacity: 1 << 16, signal: AbortSignal.timeout(10_000) });
 *   await channel.send(new Uint8Array([1, 2, 3]));
 *   console.log(await channel.receive()); // Uint8Array [3, 2, 1], from a Bun process
 *   await channel.close();
 *   await child.exited;
 * }
 * ```
 */
export async function create(name: string, options: ShmOptions = {}): Promise<ShmChannel> {
  checkName(name);
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  spinOption(options.spin);
  checkMaxMessage(options.maxMessage, capacity);
  const ffi = await native();
  const segment = await SharedMemory.create(name, {
    size: channelSize(capacity),
    ...(options.mode === undefined ? {} : { mode: options.mode }),
  });
  let unlinked = false;
  try {
    const head = initLayout(segment.buffer, capacity);
    const { out, in: input } = rings(segment.buffer, 0);
    const me = self(ffi);
    out.setOwner("producer", me);
    input.setOwner("consumer", me);
    const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
    const unlisten = onAbort(options.signal, () => waiter.wake(I_ATTACHED));
    try {
      while (Atomics.load(head, I_ATTACHED) === 0) {
        options.signal?.throwIfAborted();
        await waiter.wait(I_ATTACHED, 0, SLEEP_MS);
      }
    } finally {
      unlisten();
    }
    segment.unlink();
    unlinked = true;
    const channel = new ShmChannel(processParts(ffi, segment, 0, out.owner("consumer"), options));
    return channel;
  } catch (e) {
    if (!unlinked) segment.unlink();
    segment.close();
    throw e;
  }
}

/**
 * Opens the channel a peer created at `name`.
 *
 * @throws {NotFoundError} when there is no such segment (after `wait` milliseconds).
 * @throws {AlreadyExistsError} when the channel already has its peer.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, shm } from "ipckit";
 * const name = `/ipckit-late-${(await runtime()).pid}`;
 * try {
 *   await shm.open(name); // wait 0 (the default): fails at once when nobody created it
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true
 * }
 * const opening = shm.open(name, { wait: 5000 }); // retries until the creator is there
 * const created = await shm.create(name);
 * const opened = await opening;
 * await opened.send(new Uint8Array([1]));
 * console.log(await created.receive()); // Uint8Array [1]
 * await opened.close();
 * await created.close();
 * ```
 */
export async function open(name: string, options: ShmOptions = {}): Promise<ShmChannel> {
  checkName(name);
  spinOption(options.spin);
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open shm channel "${name}": wait must be >= 0 milliseconds`);
  const ffi = await native();
  // Until the creator made the segment (NotFoundError) and wrote its header (ProtocolError), for `wait` ms.
  const segment = await retry(async () => {
    const segment = await SharedMemory.open(name);
    const head = new Int32Array(segment.buffer, 0, HEADER / 4);
    if (segment.size >= HEADER && Atomics.load(head, 0) === MAGIC) return segment;
    segment.close();
    throw new ProtocolError(`Cannot open shm channel "${name}": the segment holds no ipckit channel`);
  }, {
    wait,
    retryable: (e) => e instanceof NotFoundError || e instanceof ProtocolError,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    backoff: new Backoff({ first: 1, max: 20 }),
  });
  try {
    const head = new Int32Array(segment.buffer, 0, HEADER / 4);
    const { out, in: input } = rings(segment.buffer, 1);
    if (segment.size < channelSize(head[I_CAPACITY]!)) {
      throw new ProtocolError(`Cannot open shm channel "${name}": the segment is smaller than its layout`);
    }
    const me = self(ffi);
    out.setOwner("producer", me);
    input.setOwner("consumer", me);
    if (Atomics.compareExchange(head, I_ATTACHED, 0, 1) !== 0) {
      throw new AlreadyExistsError(`Cannot open shm channel "${name}": it already has its peer`);
    }
    const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
    waiter.wake(I_ATTACHED);
    return new ShmChannel(processParts(ffi, segment, 1, input.owner("producer"), options));
  } catch (e) {
    segment.close();
    throw e;
  }
}

/**
 * A channel between threads over a SharedArrayBuffer: returns this end and the handle of the other end. Post the
 * handle to a Worker and rebuild it there with {@linkcode fromHandle} (once, in one place).
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * if (parent !== null) {
 *   // In the worker thread (this same module): rebuild the other end and echo one message.
 *   parent.onMessage(async (handle) => {
 *     const channel = shm.fromHandle(handle as shm.ShmHandle);
 *     await channel.send(await channel.receive());
 *     await channel.close();
 *   });
 * } else {
 *   const [here, there] = shm.pair({ capacity: 64 * 1024 });
 *   const worker = rt.worker(new URL(import.meta.url));
 *   worker.postMessage(there);
 *   await here.send(new TextEncoder().encode("to the worker and back"));
 *   console.log(new TextDecoder().decode(await here.receive())); // "to the worker and back"
 *   await here.close();
 *   await worker.terminate();
 * }
 * ```
 */
export function pair(options: ShmOptions = {}): [ShmChannel, ShmHandle] {
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  const spin = spinOption(options.spin);
  checkMaxMessage(options.maxMessage, capacity);
  const buffer = new SharedArrayBuffer(channelSize(capacity));
  initLayout(buffer, capacity);
  Atomics.store(new Int32Array(buffer, 0, HEADER / 4), I_ATTACHED, 1);
  const mine: ShmHandle = { buffer, side: 0, spin };
  return [fromHandle(mine, options.maxMessage), { buffer, side: 1, spin }];
}

/**
 * Rebuilds a thread channel end from its handle.
 *
 * @throws {ProtocolError} when the buffer holds no channel.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [here, handle] = shm.pair({ capacity: 4096 });
 * const there = shm.fromHandle(handle); // usually in another worker, from a posted handle (see pair)
 * await there.send(new Uint8Array([9]));
 * console.log(await here.receive()); // Uint8Array [9]
 * await here.close();
 * await there.close();
 * ```
 */
export function fromHandle(handle: ShmHandle, maxMessage?: number): ShmChannel {
  if (!(handle?.buffer instanceof SharedArrayBuffer) || (handle.side !== 0 && handle.side !== 1)) {
    throw new TypeError("Cannot rebuild a shm channel: the handle needs a SharedArrayBuffer and a side of 0 or 1");
  }
  const { out, in: input } = rings(handle.buffer, handle.side);
  const words = new Int32Array(handle.buffer);
  return new ShmChannel({
    description: `shm thread channel (side ${handle.side})`,
    out,
    in: input,
    waiter: atomicsWaiter(words),
    outBase: out.offset / 4,
    inBase: input.offset / 4,
    spinUs: spinOption(handle.spin),
    maxMessage,
    peerAlive: () => true,
    release: () => {},
  }, handle);
}
