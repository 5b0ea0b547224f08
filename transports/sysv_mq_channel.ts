/**
 * The duplex {@linkcode Channel} over one System V message queue (`sysv.channel`). Message types separate the
 * directions and the greetings:
 *
 * ```text
 * type 1  creator → opener    type 3  creator's HELLO (taken by exactly one opener)
 * type 2  opener → creator    type 4  opener's HELLO
 * ```
 *
 * Every queue message starts with one kind byte, as in the POSIX mq channel:
 *
 * ```text
 * 0  DATA   the rest is the last (or only) piece of a user message (a 0-byte message is just this byte)
 * 1  MORE   the rest is a piece of a user message, more pieces follow (pieces are msgmax - 1 bytes at most)
 * 2  END    the sender closed: the receiver has every message, then ClosedError
 * 3  HELLO  then the sender's pid and start-time tag (`os/liveness.ts`), each u32 little-endian (types 3 and 4
 *           only; a 5-byte HELLO, pid only, is accepted too)
 * ```
 *
 * A background pump moves the messages of this side's type into the channel (so the queue, 16 KiB by default,
 * keeps draining while the application is busy), polling with the backoff of `sysv_mq.ts` (up to 20 ms) when it is
 * empty, and checking the peer's pid and start time (`os/liveness.ts`: a zombie or a reused pid counts as dead): a
 * dead peer ends the channel with `ClosedError`.
 *
 * **Who removes the queue.** A queue has no name to unlink early, and `IPC_RMID` discards unread messages, so it
 * is removed by the side that knows both sides are done: the side that closes second (it has read the peer's END,
 * or finds it while draining after its own END), or a side that sees its peer process dead. If one side closed
 * and the other then dies without closing, the queue stays (`ipcs -q`; `ipcrm -q <id>`).
 *
 * The creator asks for a 1 MiB queue (`msg_qbytes`) when it may (root or CAP_SYS_RESOURCE), else keeps msgmnb.
 * Both directions share the queue's bytes: a side that stops reading past `highWaterMark` also makes its own
 * sends wait once the queue is full.
 *
 * @module
 */
import {
  abortError,
  AlreadyExistsError,
  ClosedError,
  NotFoundError,
  PermissionError,
  ProtocolError,
} from "../errors.ts";
import { type Native, native } from "../ffi/native.ts";
import { runtime } from "../runtimes/detect.ts";
import { BaseChannel, type Capabilities, type Channel, type ChannelOptions } from "./channel.ts";
import { MAX_FRAME } from "./framing.ts";
import { DATA, END, helloIdentity, helloRecord, MORE, Reassembler, writeRecords } from "./records.ts";
import { alive, type Identity } from "../os/liveness.ts";
import { create, open, type SysvMessage, type SysvQueue } from "./sysv_mq.ts";

/**
 * What a SysV channel promises. Messages of any size up to 4 GiB - 1 (sent in pieces).
 *
 * @example
 * ```ts
 * import { sysv } from "ipckit";
 * console.log(sysv.capabilities.ordered); // true
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_FRAME,
  crossHost: false,
  datagram: false,
};

/** Options of {@linkcode channel}. */
export interface SysvChannelOptions extends ChannelOptions {
  /** true: create the queue and wait for the peer; false (default): open the creator's. */
  create?: boolean;
  /** Permission bits of the queue (creator). Default 0o600. */
  mode?: number;
  /** The queue's capacity in bytes (creator). Default 1 MiB when permitted, else msgmnb. */
  queueBytes?: number;
  /** Opener: how long to wait for the creator's queue, in milliseconds. Default 0. */
  wait?: number;
  /** Aborts waiting for the peer. */
  signal?: AbortSignal;
}
const TO_OPENER = 1, TO_CREATOR = 2, HELLO_TO_OPENER = 3, HELLO_TO_CREATOR = 4;
const WANTED_QUEUE_BYTES = 1024 * 1024;
/** How long an opener waits for the greeting of a queue that exists, at least, in milliseconds. */
const GREETING_FLOOR_MS = 2000;
/** The longest pause between two attempts of a waiting call, in milliseconds. */
const MAX_BACKOFF = 20;

/** @internal Sleeps `ms` (0: one macrotask), ending early when `signal` aborts. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** @internal The next pause of the backoff 0, 1, 2, 4 … 20 ms. */
export const nextDelay = (d: number): number => d === 0 ? 1 : Math.min(d * 2, MAX_BACKOFF);

const hello = helloRecord;
const greeting = (m: SysvMessage, what: string): Identity => helloIdentity(m.data, what);

/** A Channel over one SysV queue; see the module doc. */
class SysvChannel extends BaseChannel {
  readonly capabilities: Capabilities = capabilities;
  readonly #q: SysvQueue;
  readonly #ffi: Native;
  readonly #peer: Identity;
  readonly #inType: number;
  readonly #outType: number;
  #sendTurn: Promise<unknown> = Promise.resolve();
  #pump: Promise<void>;
  #paused = false;
  #stopping = false;
  #wake: (() => void) | undefined;
  #peerClosed = false;
  #peerDead = false;

  constructor(ffi: Native, q: SysvQueue, creator: boolean, peer: Identity, o: ChannelOptions, what: string) {
    super(what, o);
    this.#ffi = ffi;
    this.#q = q;
    this.#peer = peer;
    this.#inType = creator ? TO_CREATOR : TO_OPENER;
    this.#outType = creator ? TO_OPENER : TO_CREATOR;
    this.#pump = this.#run();
  }

  #peerAlive(): boolean {
    if (this.#peerDead) return false;
    if (alive(this.#peer.id, this.#peer.tag, this.#ffi)) return true;
    this.#peerDead = true;
    return false;
  }

  #check(): void {
    if (this.#peerClosed) throw new ClosedError(`Cannot send on ${this.description}: the peer closed it`);
    if (!this.#peerAlive()) throw new ClosedError(`Cannot send on ${this.description}: the peer process died`);
  }

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> {
    const p = this.#sendTurn.then(() => writeRecords(message, this.#q.maxMessage, (r, s) => this.#put(r, s), signal));
    this.#sendTurn = p.catch(() => {});
    return p;
  }

  async #put(chunk: Uint8Array, signal?: AbortSignal): Promise<void> {
    for (let delay = 0;; delay = nextDelay(delay)) {
      if (signal?.aborted) throw abortError(signal);
      let sent: boolean;
      try {
        sent = this.#q.trySend(this.#outType, chunk);
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
        throw new ClosedError(`Cannot send on ${this.description}: the queue was removed`, { cause: e });
      }
      if (sent) return;
      this.#check();
      await pause(delay, signal);
    }
  }

  protected override _pause(): void {
    this.#paused = true;
  }

  protected override _resume(): void {
    this.#paused = false;
    this.#wake?.();
  }

  /** Moves queue messages into the channel until END, the peer's death, a protocol error or close. */
  async #run(): Promise<void> {
    const assembler = new Reassembler(this.maxMessage, this.description);
    let delay = 0;
    try {
      while (!this.#stopping) {
        if (this.#paused) {
          await new Promise<void>((r) => (this.#wake = r));
          this.#wake = undefined;
          continue;
        }
        const m = this.#q.tryReceive({ type: this.#inType });
        if (m === undefined) {
          if (!this.#peerAlive()) {
            this.#remove(); // nobody else will read or remove it: everything for us was read
            return this.end(new ClosedError(`Cannot receive on ${this.description}: the peer process died`));
          }
          await pause(delay);
          delay = nextDelay(delay);
          continue;
        }
        delay = 0;
        const kind = m.data[0];
        if (kind === DATA || kind === MORE) {
          let whole: Uint8Array | undefined;
          try {
            whole = assembler.take(m.data);
          } catch (e) {
            return this.end(e as Error);
          }
          if (whole !== undefined) this.deliver(whole);
        } else if (kind === END) {
          this.#peerClosed = true;
          return this.end();
        } else {
          return this.end(new ProtocolError(`Cannot receive on ${this.description}: unknown message kind ${kind}`));
        }
      }
    } catch (e) {
      if (!this.#stopping) {
        this.end(
          e instanceof NotFoundError
            ? new ClosedError(`Cannot receive on ${this.description}: the queue was removed`, { cause: e })
            : e as Error,
        );
      }
    }
  }

  #remove(): void {
    try {
      this.#q.remove();
    } catch { /* removed already (by the peer, or twice here) */ }
  }

  protected async _close(): Promise<void> {
    await this.#sendTurn;
    if (!this.#peerClosed && this.#peerAlive()) {
      try {
        await this.#put(new Uint8Array([END]));
      } catch { /* the peer is gone or closed: nobody to tell */ }
    }
    this.#stopping = true;
    this.#wake?.();
    await this.#pump;
    // Has the peer closed too? Look for its END among what is left for us (discarded: we are closed).
    try {
      while (!this.#peerClosed) {
        const m = this.#q.tryReceive({ type: this.#inType });
        if (m === undefined) break;
        if (m.data[0] === END) this.#peerClosed = true;
      }
    } catch { /* the queue is gone */ }
    if (this.#peerClosed || !this.#peerAlive()) this.#remove();
    else this.#q.close(); // the peer removes it when it closes
  }
}

/**
 * A duplex {@linkcode Channel} over the System V queue with key `k`. With `create: true`, creates it (mode 0600)
 * and waits for one peer; otherwise opens the creator's queue (waiting up to `wait` ms for it to appear).
 *
 * @example
 * ```ts
 * import { runtime, sysv } from "ipckit";
 * const k = await sysv.key((await runtime()).pid);
 * // Usually two processes: the creator waits for the opener; the last to close removes the queue.
 * const [a, b] = await Promise.all([sysv.channel(k, { create: true }), sysv.channel(k, { wait: 10_000 })]);
 * await b.send(new TextEncoder().encode("over one System V queue"));
 * console.log(new TextDecoder().decode(await a.receive())); // "over one System V queue"
 * await a.close();
 * await b.close();
 * ```
 * @throws {AlreadyExistsError} (create) when a queue has that key; {@linkcode NotFoundError} (open) when none
 * appears within `wait`; the signal's reason when aborted (the creator then removes the queue).
 */
export async function channel(k: number, options: SysvChannelOptions = {}): Promise<Channel> {
  const pid = (await runtime()).pid;
  const ffi = await native();
  const what = `System V channel with key 0x${(k >>> 0).toString(16)}`;
  return options.create
    ? await createChannel(ffi, k, pid, options, what)
    : await openChannel(ffi, k, pid, options, what);
}

async function createChannel(
  ffi: Native,
  k: number,
  pid: number,
  options: SysvChannelOptions,
  what: string,
): Promise<Channel> {
  const mode = options.mode ?? 0o600;
  let q: SysvQueue;
  if (options.queueBytes !== undefined) q = await create(k, { mode, maxBytes: options.queueBytes });
  else {
    q = await create(k, { mode });
    try {
      if (q.info.maxBytes < WANTED_QUEUE_BYTES) q.setMaxBytes(WANTED_QUEUE_BYTES);
    } catch (e) {
      if (!(e instanceof PermissionError)) {
        q.remove();
        throw e;
      }
    }
  }
  try {
    q.trySend(HELLO_TO_OPENER, hello(pid));
    const peer = greeting(
      await q.receive({ type: HELLO_TO_CREATOR, ...(options.signal ? { signal: options.signal } : {}) }),
      what,
    );
    return new SysvChannel(ffi, q, true, peer, options, what);
  } catch (e) {
    q.remove();
    throw e;
  }
}

async function openChannel(
  ffi: Native,
  k: number,
  pid: number,
  options: SysvChannelOptions,
  what: string,
): Promise<Channel> {
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open ${what}: wait must be >= 0 milliseconds`);
  const deadline = Date.now() + wait;
  let q: SysvQueue | undefined;
  for (let delay = 1; !q; delay = Math.min(delay * 2, 50)) {
    options.signal?.throwIfAborted();
    try {
      q = await open(k);
    } catch (e) {
      if (!(e instanceof NotFoundError) || Date.now() >= deadline) throw e;
      await pause(delay, options.signal);
    }
  }
  try {
    // The creator posts its greeting right after creating the queue (no await in between), so a queue without one
    // has its peer already; the floor only covers a creator descheduled in that instant.
    const greetingMessage = await q.receive({
      type: HELLO_TO_OPENER,
      timeout: Math.max(deadline - Date.now(), GREETING_FLOOR_MS),
      ...(options.signal ? { signal: options.signal } : {}),
    }).catch((e) => {
      if (e instanceof NotFoundError || e.name !== "TimeoutError") throw e;
      throw new AlreadyExistsError(`Cannot open ${what}: it already has its peer (no greeting is waiting)`);
    });
    const peer = greeting(greetingMessage, what);
    q.trySend(HELLO_TO_CREATOR, hello(pid));
    return new SysvChannel(ffi, q, false, peer, options, what);
  } catch (e) {
    q.close();
    throw e;
  }
}
