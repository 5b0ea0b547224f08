/**
 * The record channel: one duplex {@linkcode Channel} over any queue-like OS object that moves whole records (a
 * POSIX message queue, a System V queue, the file queue). The queue itself is a small {@linkcode RecordPort}; this
 * base owns everything else, once: the send turns and the cutting of messages into records, the receive pump with
 * pause/resume and reassembly, the peer's liveness, the END on close, and the create/open handshake.
 *
 * ## Records
 *
 * Every record starts with one kind byte (`transports/records.ts`, byte-compatible with every earlier version):
 *
 * ```text
 * 0  DATA   the rest is the last (or only) piece of a user message (a 0-byte message is just this byte)
 * 1  MORE   the rest is a piece of a user message, more pieces follow (pieces are recordSize - 1 bytes at most)
 * 2  END    the sender closed: the receiver has every message, then ClosedError
 * 3  HELLO  then the sender's pid and start-time tag (`os/liveness.ts`), each u32 little-endian (9 bytes); a
 *           5-byte HELLO (pid only) is accepted too
 * ```
 *
 * END is in band, after the data, so a user message can never be taken for it and a close never overtakes data.
 *
 * ## Handshake
 *
 * The creator makes the OS objects ({@linkcode RecordConnection.create}) and puts its HELLO; the opener opens them
 * (retrying while they do not exist, for `wait` ms, backoff 1 ms doubling to 50 ms), takes that HELLO and answers
 * with its own. Each side learns the other's pid and start time from the HELLO. A creator's HELLO is taken by one
 * opener only: an opener that finds none within 10 s (or the port's `greetingWait`) is refused with
 * `AlreadyExistsError`. When the handshake fails, the port's `abandon()` removes what a creator made and closes
 * what an opener opened.
 *
 * ## The wait policy (one, for every port)
 *
 * Every wait is a loop of bounded slices: try without waiting (`tryTake`/`tryPut`); if that did nothing, check
 * close, abort and the peer's liveness, then wait one slice, either
 * - the port's native wait (`take(ms)`/`put(record, ms)`, e.g. `mq_timedreceive` off the main thread) of at most
 *   {@linkcode SLICE_MS} (100 ms), when the port has one: a record is noticed at once; or
 * - an async/ `delay` of the backoff {@linkcode POLL} (0, 1, 2, 4 … 20 ms, reset by every record), when it has not:
 *   a record arriving at an idle queue is noticed within 20 ms, a busy queue is read back to back.
 * So no thread is ever blocked for more than 100 ms (a process can always exit), and a dead peer (gone, a zombie,
 * or its pid reused: `os/liveness.ts`) is noticed within about 100 ms; the pump looks once more after seeing it
 * dead, so records (even END) the peer committed just before dying are delivered.
 *
 * ## Adding a queue transport
 *
 * 1. Write the OS object in `os/` (no channel logic), if it is new.
 * 2. Write one port file in `transports/` (60-250 lines): a class implementing {@linkcode RecordPort} over the OS
 *    object, and a `channel(address, options)` that calls {@linkcode connect} with a {@linkcode RecordConnection}
 *    (description, capabilities, `create()` and `open()` returning the port). `transports/mq.ts`,
 *    `transports/sysv.ts` and `transports/file_queue.ts` are the three examples.
 * 3. Add its fixture: a `tests/conformance/fixtures_<name>.ts` like `fixtures_mq.ts` and its line in
 *    `tests/conformance/registry.ts` (the test file it names runs `await conformance("<name>")`): the channel
 *    conformance suite (and the RPC suite, if the line asks) then checks it on every runtime and across runtimes. A
 *    new OS queue object also gets one entry in `tests/conformance/queue_object_fixtures.ts` (the queue-object
 *    suite).
 *
 * @module
 */
import { abortError, AlreadyExistsError, ClosedError, NotFoundError, ProtocolError, TimeoutError } from "../errors.ts";
import { Backoff, Deadline, delay, retry, Turns } from "../async/mod.ts";
import { type Native, native } from "../ffi/native.ts";
import { alive, type Identity } from "../os/liveness.ts";
import { runtime } from "../runtimes/detect.ts";
import { BaseChannel, type Capabilities, type Channel, type ChannelOptions } from "./channel.ts";
import { DATA, END, HELLO, helloIdentity, helloRecord, MORE, Reassembler, writeRecords } from "./records.ts";

/** The longest native wait, in milliseconds: a blocked thread cannot be stopped, so it must return by itself. */
export const SLICE_MS = 100;
/** The pauses of a port without native waits: 0 (one macrotask), then 1 ms doubling to 20 ms. */
export const POLL = { first: 0, max: 20 } as const;
/** How long an opener waits at least for the creator's HELLO once the OS objects exist, in milliseconds. */
const GREETING_WAIT = 10_000;
/** Pauses between attempts to open OS objects that do not exist yet. */
const OPEN_BACKOFF = { first: 1, max: 50 } as const;
const END_RECORD = new Uint8Array([END]);

/**
 * A queue-like OS object as the record channel sees it: records in one direction, records out in the other. Records
 * are byte strings whose first byte is the kind (see the module doc); a port never looks inside them, except that a
 * port with a separate lane for greetings (System V's message types) routes HELLO records there.
 */
export interface RecordPort {
  /** The largest record, kind byte included: messages are cut into pieces of `recordSize - 1` bytes. */
  readonly recordSize: number;
  /**
   * The peer's next record, without waiting; undefined when there is none.
   *
   * @param limit the largest record the receiver accepts (a port that reads unbounded records checks it first).
   * @param greeting true while waiting for the peer's HELLO (ports with a greeting lane take from it).
   * @throws {ClosedError} when the OS object is gone; {@linkcode ProtocolError} for a damaged record.
   */
  tryTake(limit: number, greeting: boolean): Uint8Array | undefined;
  /** Optional native wait: the peer's next record within `ms` milliseconds, or undefined. */
  take?(ms: number, greeting: boolean): Promise<Uint8Array | undefined>;
  /** Puts a record for the peer without waiting (a port may finish it asynchronously); false when full. */
  tryPut(record: Uint8Array): boolean | Promise<boolean>;
  /** Optional native wait: puts the record within `ms` milliseconds; false when the queue stayed full. */
  put?(record: Uint8Array, ms: number): Promise<boolean>;
  /** The handshake is done (both HELLOs exchanged): e.g. the creator removes the names nobody needs any more. */
  connected?(): void | Promise<void>;
  /** The peer process died: e.g. remove an object nobody else will remove. */
  peerDied?(): void;
  /** Releases the OS objects once the channel closed (`peerClosed`: the peer's END was read). */
  release(end: { peerClosed: boolean; peerAlive: boolean }): void | Promise<void>;
  /** Undoes a failed handshake: a creator removes what it made, an opener closes what it opened. */
  abandon(): void | Promise<void>;
}

/** How {@linkcode connect} makes or opens a port. */
export interface RecordConnection<P extends RecordPort> {
  /** For messages: `mq channel "/jobs"`. */
  readonly description: string;
  readonly capabilities: Capabilities;
  /** Creator: makes the OS objects. @throws {AlreadyExistsError} when they exist. */
  create(): Promise<P>;
  /** Opener: opens them. @throws {NotFoundError} while they do not exist (retried until `wait` ran out). */
  open(): Promise<P>;
  /** How long an opener waits at least for the creator's HELLO once the objects exist (default 10 000 ms). */
  readonly greetingWait?: number;
}

/** Options every record channel takes. */
export interface RecordChannelOptions extends ChannelOptions {
  /** true: make the OS objects and wait for the peer; false (default): open the peer's. */
  create?: boolean;
  /** Opener: how long to wait for the creator's objects, in milliseconds. Default 0. */
  wait?: number;
  /** Aborts waiting for the peer. */
  signal?: AbortSignal;
}

/**
 * Connects one side of a record channel: creates the OS objects and waits for the peer (`options.create`), or
 * opens the creator's; see the module doc for the handshake.
 *
 * @example
 * ```ts
 * // transports/mq.ts, in short:
 * // return connect({ description, capabilities, create: () => MqPort.create(...), open: () => MqPort.open(...) },
 * //   options);
 * ```
 * @throws {AlreadyExistsError} (create) when the objects exist; (open) when the channel has its peer already.
 * @throws {NotFoundError} (open) when the objects do not exist after `wait` milliseconds.
 * @throws {RangeError} for a negative `wait`; the signal's reason when aborted.
 */
export async function connect<P extends RecordPort>(
  how: RecordConnection<P>,
  options: RecordChannelOptions,
): Promise<Channel> {
  const { description } = how;
  const wait = options.wait ?? 0;
  if (!options.create && !(wait >= 0)) {
    throw new RangeError(`Cannot open ${description}: wait must be >= 0 milliseconds`);
  }
  const pid = (await runtime()).pid;
  const ffi = await native();
  const { signal } = options;
  const deadline = Deadline.after(wait);
  const port = options.create ? await how.create() : await retry(() => how.open(), {
    wait,
    retryable: (e) => e instanceof NotFoundError,
    backoff: new Backoff(OPEN_BACKOFF),
    ...(signal ? { signal } : {}),
  });
  try {
    if (options.create) await port.tryPut(helloRecord(pid));
    const floor = Deadline.after(Math.max(deadline.remaining, how.greetingWait ?? GREETING_WAIT));
    const peer = helloIdentity(
      await greeting(port, options.create ? Deadline.after(undefined) : floor, signal),
      description,
    );
    if (!options.create && !(await port.tryPut(helloRecord(pid)))) {
      throw new AlreadyExistsError(`Cannot open ${description}: it already has its peer`);
    }
    await port.connected?.();
    return new RecordChannel(ffi, port, peer, how, options);
  } catch (e) {
    await port.abandon();
    if (e instanceof TimeoutError) {
      throw new AlreadyExistsError(`Cannot open ${description}: it already has its peer (no greeting is waiting)`, {
        cause: e,
      });
    }
    throw e;
  }
}

/** Waits for the peer's HELLO by the wait policy; TimeoutError after `deadline`. */
async function greeting(port: RecordPort, deadline: Deadline, signal: AbortSignal | undefined): Promise<Uint8Array> {
  const backoff = new Backoff(POLL);
  for (;;) {
    const record = port.tryTake(9, true);
    if (record !== undefined) return record;
    if (signal?.aborted) throw abortError(signal);
    if (deadline.passed) throw new TimeoutError("Cannot connect: no greeting from the creator");
    const ms = Math.min(deadline.remaining, port.take ? SLICE_MS : backoff.next());
    if (port.take) {
      const r = await port.take(ms, true);
      if (r !== undefined) return r;
    } else await delay(ms, signal);
  }
}

/** The channel over one port; see the module doc. */
class RecordChannel extends BaseChannel {
  readonly capabilities: Capabilities;
  readonly #ffi: Native;
  readonly #port: RecordPort;
  readonly #peer: Identity;
  readonly #sends = new Turns();
  /** Aborted by close: ends the pump's pauses. */
  readonly #stop = new AbortController();
  readonly #pump: Promise<void>;
  #paused = false;
  #wake: (() => void) | undefined;
  #peerClosed = false;
  #peerDead = false;

  constructor(
    ffi: Native,
    port: RecordPort,
    peer: Identity,
    how: RecordConnection<RecordPort>,
    options: ChannelOptions,
  ) {
    super(how.description, options, how.capabilities.maxMessage);
    this.capabilities = how.capabilities;
    this.#ffi = ffi;
    this.#port = port;
    this.#peer = peer;
    this.#pump = this.#run();
  }

  #peerAlive(): boolean {
    if (this.#peerDead) return false;
    if (alive(this.#peer.id, this.#peer.tag, this.#ffi)) return true;
    this.#peerDead = true;
    return false;
  }

  /** Throws when sending cannot succeed any more: the peer closed or died. */
  #checkPeer(): void {
    if (this.#peerClosed) throw new ClosedError(`Cannot send on ${this.description}: the peer closed it`);
    if (!this.#peerAlive()) throw new ClosedError(`Cannot send on ${this.description}: the peer process died`);
  }

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> {
    return this.#sends.run(() => writeRecords(message, this.#port.recordSize, this.#put, signal));
  }

  /** Puts one record: at once when the queue has room (no promise), else by the wait policy. */
  #put = (record: Uint8Array, signal?: AbortSignal): Promise<void> | undefined => {
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const r = this.#port.tryPut(record);
    return r === true ? undefined : this.#putWaiting(record, r, signal);
  };

  async #putWaiting(record: Uint8Array, first: false | Promise<boolean>, signal?: AbortSignal): Promise<void> {
    if (first !== false && await first) return;
    const port = this.#port;
    const backoff = new Backoff(POLL);
    for (;;) {
      this.#checkPeer();
      if (signal?.aborted) throw abortError(signal);
      if (port.put) {
        if (await port.put(record, SLICE_MS)) return;
      } else await delay(backoff.next(), signal);
      const r = port.tryPut(record);
      if (r === true || (r !== false && await r)) return;
    }
  }

  protected override _pause(): void {
    this.#paused = true;
  }

  protected override _resume(): void {
    this.#paused = false;
    this.#wake?.();
  }

  /** Moves records into the channel until END, the peer's death, a protocol error or close. */
  async #run(): Promise<void> {
    const port = this.#port;
    const limit = this.maxMessage + 1;
    const assembler = new Reassembler(this.maxMessage, this.description);
    const backoff = new Backoff(POLL);
    const stop = this.#stop.signal;
    let sawDead = false;
    try {
      while (!stop.aborted) {
        if (this.#paused) {
          await new Promise<void>((r) => (this.#wake = r));
          this.#wake = undefined;
          continue;
        }
        let record = port.tryTake(limit, false);
        if (record === undefined) {
          if (sawDead) {
            port.peerDied?.();
            return this.end(new ClosedError(`Cannot receive on ${this.description}: the peer process died`));
          }
          // Once dead, look once more: the peer may have sent records (even END) just before dying.
          if (!this.#peerAlive()) sawDead = true;
          else if (port.take) record = await port.take(SLICE_MS, false);
          else await delay(backoff.next(), stop);
          if (record === undefined) continue;
        }
        backoff.reset();
        const kind = record[0];
        if (kind === DATA || kind === MORE) {
          const whole = assembler.take(record);
          if (whole !== undefined) this.deliver(whole);
        } else if (kind === END) {
          this.#peerClosed = true;
          return this.end();
        } else if (kind !== HELLO) {
          return this.end(new ProtocolError(`Cannot receive on ${this.description}: unknown record kind ${kind}`));
        }
      }
    } catch (e) {
      if (!stop.aborted) this.end(e as Error);
    }
  }

  protected async _close(): Promise<void> {
    await this.#sends.idle();
    if (!this.#peerClosed) {
      try {
        await this.#put(END_RECORD);
      } catch { /* the peer is gone or closed: nobody to tell */ }
    }
    this.#stop.abort();
    this.#wake?.();
    await this.#pump;
    await this.#port.release({ peerClosed: this.#peerClosed, peerAlive: this.#peerAlive() });
  }
}
