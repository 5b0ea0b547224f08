/**
 * One end of an RPC connection over any Channel: it calls the other side's handlers and serves its own (both sides
 * may serve at once). The wire protocol is in `protocol.ts`.
 *
 * Semantics:
 * - calls are matched to replies by id; a caller may send any number, and a server handles up to `maxInFlight`
 *   (default 1024) at once per connection, calls and notifications together: past it a call is answered at once
 *   with a `RemoteError` named `QueueFullError`, a notification is dropped and reported to `onError`;
 * - a server stops reading while its replies back up (the caller does not read them): more than
 *   `replyHighWaterMark` bytes (default 1 MiB) handed to the channel and not yet taken; it reads again when half
 *   went out. What one connection can make a server hold is bounded either way;
 * - a handler runs with `this` = `{ signal, method, peer }`: `signal` aborts when the caller cancels (its own
 *   AbortSignal crossed the wire), when the call's deadline passes, or when the connection closes;
 * - a handler that returns an AsyncIterable streams it: the caller's promise resolves to an AsyncIterable, and the
 *   handler is pulled no further than the caller's credit (`window` items; more as the caller consumes them);
 * - a handler's throw arrives as a `RemoteError` (name, message, `code`, `data`; the stack only when the server
 *   sets `exposeStack: true`, as it names the server's files); an unknown method as `MethodNotFoundError`; when
 *   the connection ends, pending calls reject with `ClosedError`;
 * - a peer that breaks the protocol (a bad id, a call id already in flight, a stream credit out of range, more
 *   stream items than granted, a message the codec refuses) ends the connection with `ProtocolError`;
 * - only the handler object's own function properties are callable: no prototype walk, so `constructor`,
 *   `__proto__` or `toString` are unknown methods.
 *
 * Why one file of ~600 lines: one RPC peer is one state machine (calls, replies, in-flight limits, cancellation,
 * streams, close) over shared private state; the wire format, the limits and the streams are apart already
 * (`protocol.ts`, `limits.ts`, `stream.ts`).
 *
 * @module
 */
import { onAbort, within } from "../async/mod.ts";
import {
  abortError,
  ClosedError,
  IpcError,
  MessageTooLargeError,
  MethodNotFoundError,
  ProtocolError,
  QueueFullError,
  TimeoutError,
} from "../errors.ts";
import { type Counters, track } from "../shm/stats.ts";
import { type Latency, LatencyFamily, UNTIMED } from "../shm/stats_latency.ts";
import type { Channel } from "../transports/channel.ts";
import { cbor, type Codec } from "../transports/codec.ts";
import { frameBuffer } from "../transports/cbor.ts";
import { checkLimits, Outbox, type ServerLimits } from "./limits.ts";
import { Call, checkCredit, RemoteStream } from "./stream.ts";
import { PendingCalls } from "./pending.ts";
import { decodeMessage, decodeMessageAt, writeCall, writeResult, written } from "./wire_cbor.ts";
import {
  BYE,
  CALL,
  CANCEL,
  CREDIT,
  describe,
  END,
  ERROR,
  fromWire,
  HELLO,
  isAsyncIterable,
  ITEM,
  kindOf,
  MAGIC,
  MAJOR,
  MAX_DEADLINE,
  MAX_WINDOW,
  MINOR,
  NOTIFY,
  RESULT,
  STREAM,
  toWire,
} from "./protocol.ts";

/** What a handler sees as `this`. */
export interface CallContext {
  /** Aborts when the caller cancels, the deadline passes, or the connection closes. */
  readonly signal: AbortSignal;
  /** The method called. */
  readonly method: string;
  /** The connection, to call the caller back. */
  readonly peer: RpcPeer;
}

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => unknown;

/** The caller's view of a handler object: every function returns a promise (a stream for AsyncIterables). */
export type RemoteApi<H> = {
  [K in keyof H as H[K] extends AnyFunction ? K : never]: H[K] extends (...args: infer A) => infer R
    ? (...args: A) => Promise<Awaited<R> extends AsyncIterable<infer T> ? AsyncIterable<T> : Awaited<R>>
    : never;
};

/** Options of {@linkcode RpcPeer}; the {@linkcode ServerLimits} bound what the other side can make it hold. */
export interface RpcOptions extends ServerLimits {
  /** How messages are encoded: `cbor` (default; Uint8Array travels as bytes) or `json`. Both sides must agree. */
  codec?: Codec;
  /** This connection's name in `ipckit stats` (its first 52 bytes). Default `rpc <n>`. */
  name?: string;
  /** The handlers this side serves (own function properties only). */
  handlers?: object;
  /** The default deadline of every call, in milliseconds (none by default). */
  timeout?: number;
  /** How many stream items may be in flight per stream before the handler waits (default 16, at most 2^20). */
  window?: number;
  /**
   * Called with errors of notifications (they have no caller to reject): a handler's throw, an unknown method, a
   * notification dropped past `maxInFlight` (`QueueFullError`).
   */
  onError?: (error: unknown) => void;
}

/** Options of one call. */
export interface CallOptions {
  /** Cancels the call: it rejects with the signal's reason and the handler's signal aborts. */
  signal?: AbortSignal;
  /** The deadline in milliseconds: the call rejects with `TimeoutError` and the handler's signal aborts. */
  timeout?: number;
}

const NOOP = () => {};
/** What a message that decodes to undefined reads as (`kindOf` refuses it): undefined means "none" to receiveWith. */
const UNDEFINED_MESSAGE = Object.freeze({});
/** Reads an RPC message where it lies in the channel (see `RingChannel.receiveWith`). */
const readMessage = (data: Uint8Array, offset: number, length: number): unknown =>
  decodeMessageAt(data, offset, length) ?? UNDEFINED_MESSAGE;
const NO_OPTIONS: CallOptions = Object.freeze({});
const RESOLVED = Promise.resolve();
// Where a peer's counters are (`COUNTERS.rpc` of shm/stats.ts).
const CALLS = 0, CALLS_FAILED = 1, CALLS_SETTLED = 2, SERVED = 3, SERVED_FAILED = 4, SERVED_DONE = 5;
let peers = 0;
/** Results settled in one turn of the read loop at most: the rest wait a turn, so a flood cannot hold the loop. */
const MAX_RESULTS_PER_TURN = 256;
/** How long `close()` waits for its BYE to go out before it closes anyway (a peer that reads nothing). */
const BYE_WAIT_MS = 2000;

/** Where the answer of one call goes (see {@linkcode RpcPeer.callInto}). */
export interface CallSink {
  /** The method called (set by the peer). */
  method: string;
  /** Called once with the result (or, for a streaming handler, the AsyncIterable). */
  resolve(value: unknown): void;
  /** Called once with the error (a `RemoteError`, `ClosedError`, `TimeoutError`, the signal's reason...). */
  reject(error: unknown): void;
  /** The peer's own: set by the peer, called before the answer. */
  cleanup(): void;
  /** The peer's own: the call's latency slot (`ipckit stats`), set by the peer. */
  latency?: Latency | undefined;
  /** The peer's own: when the call started, if it is one that is timed. */
  started?: number;
}

/**
 * One end of an RPC connection. See the module doc.
 *
 * @example
 * ```ts
 * import { RpcPeer, shm } from "ipckit";
 * const [a, handle] = shm.pair();
 * const log: string[] = [];
 * const handlers = {
 *   log: (line: string) => void log.push(line),
 *   async *ticks(n: number) {
 *     for (let i = 1; i <= n; i++) yield i;
 *   },
 * };
 * const server = new RpcPeer(a, { handlers }); // what rpc.serve(channel, handlers) makes
 * const client = new RpcPeer<typeof handlers>(shm.fromHandle(handle), { timeout: 5000 }); // rpc.connect(channel)
 * await client.notify("log", "no reply expected"); // resolves once sent
 * for await (const t of await client.api.ticks(3)) console.log(t); // 1, 2, 3: streamed with backpressure
 * const controller = new AbortController();
 * const pending = client.callWith("ticks", [1], { signal: controller.signal });
 * controller.abort(); // cancels the call, on both sides
 * console.log(await pending.catch((e) => e.name)); // "AbortError"
 * console.log(await client.call("log", "by name"), log); // undefined ["no reply expected", "by name"]
 * await client.close();
 * await server.done; // the server saw the end too
 * console.log("closed");
 * ```
 */
export class RpcPeer<Remote = Record<string, AnyFunction>> implements AsyncDisposable {
  /** The typed proxy: `peer.api.add(1, 2)` is `peer.call("add", 1, 2)`. */
  readonly api: RemoteApi<Remote>;
  readonly channel: Channel;
  readonly #codec: Codec;
  /** The default `cbor` codec: CALL and RESULT take `wire_cbor.ts`'s path. */
  readonly #cbor: boolean;
  /** With `#cbor`, over a channel that lends its bytes (`receiveWith`): messages decoded where they lie. */
  readonly #inPlace: boolean;
  readonly #handlers = new Map<string, AnyFunction>();
  readonly #timeout: number | undefined;
  readonly #window: number;
  readonly #onError: (error: unknown) => void;
  readonly #maxInFlight: number;
  readonly #exposeStack: boolean;
  readonly #outbox: Outbox;
  /** Notifications whose handler has not settled yet (they count toward maxInFlight with the calls served). */
  #notifying = 0;
  #nextId = 1;
  readonly #pending = new PendingCalls<CallSink>();
  readonly #streams = new Map<number, RemoteStream>();
  readonly #serving = new Map<number, Call>();
  /** The live counters (`ipckit stats`): `COUNTERS.rpc` of shm/stats.ts. */
  readonly #stats: Counters;
  /** Per method: calls made from here and calls served here, counted and timed (`<name> · call <method>`). */
  readonly #callTimes: LatencyFamily;
  readonly #serveTimes: LatencyFamily;
  #helloSeen = false;
  #ended: Error | undefined;
  readonly #done: Promise<void>;

  constructor(channel: Channel, options: RpcOptions = {}) {
    this.channel = channel;
    const name = options.name ?? `rpc ${++peers}`;
    this.#stats = track("rpc", name);
    this.#callTimes = new LatencyFamily(`${name} · call `);
    this.#serveTimes = new LatencyFamily(`${name} · serve `);
    this.#codec = options.codec ?? cbor;
    this.#cbor = this.#codec === cbor;
    this.#inPlace = this.#cbor && channel.receiveWith !== undefined && channel.tryReceiveWith !== undefined;
    this.#timeout = options.timeout;
    this.#window = options.window ?? 16;
    if (!checkCredit(this.#window)) {
      throw new RangeError(
        `Cannot use an RPC window of ${options.window}: it must be an integer from 1 to ${MAX_WINDOW}`,
      );
    }
    const limits = checkLimits(options, "start RPC");
    this.#maxInFlight = limits.maxInFlight;
    this.#exposeStack = limits.exposeStack;
    this.#outbox = new Outbox(channel, limits.replyHighWaterMark);
    this.#onError = options.onError ?? (() => {});
    const handlers = options.handlers ?? {};
    for (const key of Object.keys(handlers)) {
      const fn = (handlers as Record<string, unknown>)[key];
      if (typeof fn === "function") this.#handlers.set(key, fn as AnyFunction);
    }
    this.api = new Proxy({}, {
      get: (_, name) =>
        typeof name === "string" && name !== "then" ? (...args: unknown[]) => this.call(name, ...args) : undefined,
    }) as RemoteApi<Remote>;
    this.#send([HELLO, MAGIC, MAJOR, MINOR]).catch(NOOP); // a failed channel ends the read loop too
    this.#done = this.#loop();
  }

  /** Resolves when the connection has ended (either side closed it, or it failed). */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Calls `method` with `params`. */
  call(method: string, ...params: unknown[]): Promise<unknown> {
    return this.callWith(method, params);
  }

  /** Calls `method` with `params` and per-call options (cancellation, deadline). */
  callWith(method: string, params: unknown[], options: CallOptions = NO_OPTIONS): Promise<unknown> {
    return new Promise<unknown>((resolve, reject) => {
      this.callInto(method, params, options, {
        method,
        resolve,
        reject,
        cleanup: NOOP,
        latency: undefined,
        started: 0,
      });
    });
  }

  /**
   * Calls `method` as {@linkcode callWith} does, but hands the answer to `sink` (its `resolve` or `reject`, once)
   * instead of a promise: for a caller that already keeps one object per call (the pool's tasks), no promise and
   * no reaction per call. `sink.cleanup` is this peer's: it is set here, and called before the answer.
   */
  callInto(method: string, params: unknown[], options: CallOptions, sink: CallSink): void {
    if (typeof method !== "string") return sink.reject(new TypeError("Cannot call: the method must be a string"));
    if (this.#ended) return sink.reject(this.#ended);
    const signal = options.signal;
    if (signal?.aborted) return sink.reject(abortError(signal));
    const timeout = options.timeout ?? this.#timeout;
    if (timeout !== undefined && !(timeout >= 0)) {
      return sink.reject(new RangeError(`Cannot call "${method}" with timeout ${timeout}: it must be >= 0 ms`));
    }
    const id = this.#nextId++;
    sink.method = method;
    sink.cleanup = NOOP;
    this.#pending.set(id, sink);
    this.#stats.values[CALLS]!++;
    const latency = sink.latency = this.#callTimes.of(method);
    sink.started = latency.start();
    // No timer for a deadline a timer cannot hold (it would fire at once): such a deadline means none.
    if (signal === undefined && (timeout === undefined || timeout > MAX_DEADLINE)) {
      // The common case: no timer, no listener, no closure.
      return this.#sendCall(id, method, params, null);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let unlisten = NOOP;
    sink.cleanup = () => {
      if (timer !== undefined) clearTimeout(timer);
      unlisten();
    };
    if (timeout !== undefined && timeout <= MAX_DEADLINE) {
      timer = setTimeout(
        () => this.#giveUp(id, new TimeoutError(`Remote call "${method}" timed out after ${timeout} ms`)),
        timeout,
      );
    }
    unlisten = onAbort(signal, () => this.#giveUp(id, abortError(signal!)));
    this.#sendCall(id, method, params, timeout ?? null);
  }

  /** Calls `method` without waiting for (or getting) a reply. Resolves once the message is sent. */
  notify(method: string, ...params: unknown[]): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    return this.#send([NOTIFY, method, params]);
  }

  /** Closes the connection: pending calls reject with `ClosedError`, running handlers are aborted. */
  async close(): Promise<void> {
    if (!this.#ended) {
      // Wait for the BYE (datagram peers learn of the end only from it), but not for ever: a peer that reads
      // nothing would hold the close.
      await within(this.#send([BYE]), BYE_WAIT_MS);
    }
    this.#end(new ClosedError("Cannot complete the RPC call: the connection was closed"));
    await this.channel.close();
    await this.#done;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #decode(bytes: Uint8Array): unknown {
    return this.#cbor ? decodeMessage(bytes) : this.#codec.decode(bytes);
  }

  /** Encodes a message; a value the codec cannot encode is a TypeError. */
  #encode(message: unknown[]): Uint8Array {
    try {
      return this.#codec.encode(message);
    } catch (e) {
      throw this.#encodeError(e);
    }
  }

  #encodeError(e: unknown): TypeError {
    return new TypeError(`Cannot encode an RPC message with ${this.#codec.name}: ${(e as Error)?.message}`, {
      cause: e,
    });
  }

  /** Sends a message of this side's own (a call, a notification, BYE). */
  #send(message: unknown[]): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = this.#encode(message);
      if (this.channel.trySend?.(bytes)) return RESOLVED;
    } catch (e) {
      return Promise.reject(e);
    }
    return this.channel.send(bytes);
  }

  /** Sends call `id`; a failure (the codec refuses it, the channel is closed) rejects that call. */
  #sendCall(id: number, method: string, params: unknown[], timeout: number | null): void {
    let bytes: Uint8Array;
    const channel = this.channel;
    try {
      if (this.#cbor) {
        const n = writeCall(id, method, params, timeout, this.#window);
        // Copied from the encoder's buffer into the ring (with room): no array, no promise, no reaction.
        try {
          if (channel.trySendPart?.(frameBuffer(), n)) return;
        } catch (e) {
          return this.#settle(id, e, false);
        }
        bytes = written(n);
      } else bytes = this.#codec.encode([CALL, id, method, params, timeout, this.#window]);
    } catch (e) {
      return this.#settle(id, this.#encodeError(e), false);
    }
    try {
      // (A channel that refused the part just now would refuse the whole too: straight to send().)
      if (!(this.#cbor && channel.trySendPart) && channel.trySend?.(bytes)) return;
    } catch (e) {
      return this.#settle(id, e, false);
    }
    this.channel.send(bytes).catch((e) => this.#settle(id, e, false));
  }

  /** Sends a message that answers the peer (a reply, a stream item, a credit): it counts toward the outbox. */
  #emit(message: unknown[]): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = this.#encode(message);
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#outbox.send(bytes);
  }

  /** Sends an answer without caring whether it arrives (the peer may be gone). */
  #post(message: unknown[]): void {
    let bytes: Uint8Array;
    try {
      bytes = this.#encode(message);
    } catch {
      return;
    }
    void this.#outbox.send(bytes, NOOP);
  }

  /**
   * Sends the reply to call `id` (a RESULT or an ERROR). A reply that cannot go (the codec refuses the value, or it
   * exceeds the channel's maxMessage) becomes a small ERROR, so the caller always gets an answer.
   */
  #answer(id: number, message: unknown[], last = false): void {
    let bytes: Uint8Array;
    try {
      bytes = this.#encode(message);
    } catch (e) {
      return this.#fallback(id, e, last);
    }
    void this.#outbox.send(bytes, (e) => {
      if (e instanceof MessageTooLargeError) this.#fallback(id, e, last);
    });
  }

  /** Sends the RESULT of call `id` (see `#answer`). */
  #result(id: number, value: unknown): void {
    if (!this.#cbor) return this.#answer(id, [RESULT, id, value]);
    let n: number;
    try {
      n = writeResult(id, value);
    } catch (e) {
      return this.#fallback(id, this.#encodeError(e), false);
    }
    const channel = this.channel;
    let bytes: Uint8Array | undefined;
    try {
      // Taken at once (a shared-memory ring with room): no array, no closure for the error, no promise.
      if (channel.trySendPart !== undefined) {
        if (channel.trySendPart(frameBuffer(), n)) return;
      } else if (channel.trySend?.(bytes = written(n))) return;
    } catch (e) {
      if (e instanceof MessageTooLargeError) this.#fallback(id, e, false);
      return; // a closed channel: the caller hears of it from the channel's end
    }
    void this.#outbox.send(bytes ?? written(n), (e) => {
      if (e instanceof MessageTooLargeError) this.#fallback(id, e, false);
    });
  }

  #fallback(id: number, error: unknown, last: boolean): void {
    if (!last) this.#answer(id, [ERROR, id, toWire(error, this.#exposeStack)], true);
  }

  /** Calls `onError` (which must not break the read loop). */
  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch { /* the application's callback failed: nothing to tell */ }
  }

  readonly #notifyDone = (): void => void this.#notifying--;
  readonly #notifyFailed = (e: unknown): void => {
    this.#notifying--;
    this.#report(e);
  };

  /** The caller gave up on call `id`: reject it and tell the server to stop. */
  #giveUp(id: number, error: unknown): void {
    if (!this.#pending.has(id) && !this.#streams.has(id)) return;
    this.#settle(id, error, false);
    this.#streams.get(id)?.fail(error);
    this.#streams.delete(id);
    this.#post([CANCEL, id]);
  }

  #settle(id: number, value: unknown, ok: boolean): void {
    const p = this.#pending.get(id);
    if (!p) return;
    this.#pending.delete(id);
    p.cleanup();
    p.latency?.end(p.started ?? UNTIMED, ok);
    const v = this.#stats.values;
    v[CALLS_SETTLED]!++;
    if (ok) p.resolve(value);
    else {
      v[CALLS_FAILED]!++;
      p.reject(value);
    }
  }

  async #loop(): Promise<void> {
    let end: Error = new ClosedError("Cannot complete the RPC call: the peer closed the connection");
    try {
      // receive() rather than `for await`: two promise turns less per message.
      let held: unknown;
      for (;;) {
        // Replies back up (the peer does not read them): read no more calls until half of them went out.
        if (this.#outbox.full) {
          await this.#outbox.drained();
          if (this.#ended) break;
        }
        let message: unknown;
        if (held === undefined) {
          message = this.#inPlace
            ? await this.channel.receiveWith!(readMessage)
            : this.#decode(await this.channel.receive());
        } else {
          // A message read behind replies: its turn comes after what the replies' callers do next.
          message = held;
          held = undefined;
          await null;
        }
        if (this.#ended) break;
        this.#dispatch(message);
        // Let what the message set going run first (a caller resumed by its result sends its next call, a handler's
        // reply goes out): the bookkeeping below and the next wait are this side's, off the round trip's path.
        await null;
        if (this.#ended) break;
        held = this.#settleWaitingResults();
      }
    } catch (e) {
      end = e instanceof ClosedError
        ? end // the channel's own wording ("the peer closed it") would name the transport, not the call
        : e instanceof ProtocolError || e instanceof IpcError
        ? e
        : new ProtocolError(`Cannot read the RPC connection: ${(e as Error)?.message}`, { cause: e });
      if (e instanceof ProtocolError && !this.#ended) {
        // Tell a peer that speaks something else why, then hang up.
        this.#post([ERROR, null, toWire(e, this.#exposeStack)]);
      }
    }
    this.#end(end);
    await this.channel.close().catch(() => {});
  }

  /**
   * Settles the calls whose results already wait in the channel, without a promise turn each (a pool's master gets
   * them in bursts); only results, only from a channel that can be read without waiting. Returns the first message
   * of another kind, read but not handled (it waits for the next turn), or undefined.
   */
  #settleWaitingResults(): unknown {
    const channel = this.channel;
    if (channel.tryReceive === undefined) return undefined;
    for (let n = 0; n < MAX_RESULTS_PER_TURN && !this.#ended; n++) {
      let message: unknown;
      if (this.#inPlace) {
        message = channel.tryReceiveWith!(readMessage);
        if (message === undefined) return undefined;
      } else {
        const bytes = channel.tryReceive();
        if (bytes === undefined) return undefined;
        message = this.#decode(bytes);
      }
      if (kindOf(message) !== RESULT) return message;
      this.#dispatch(message);
    }
    return undefined;
  }

  #end(error: Error): void {
    if (this.#ended) return;
    this.#ended = error;
    this.#stats.close();
    this.#outbox.wake();
    for (const id of this.#pending.ids()) this.#settle(id, error, false);
    this.#callTimes.close();
    this.#serveTimes.close();
    for (const s of this.#streams.values()) s.fail(error);
    this.#streams.clear();
    for (const s of this.#serving.values()) s.cancel(error);
    this.#serving.clear();
  }

  #dispatch(m: unknown): void {
    const kind = kindOf(m);
    const msg = m as unknown[];
    if (!this.#helloSeen) {
      if (kind === ERROR) throw this.#connectionError(msg[2]);
      if (kind !== HELLO || msg[1] !== MAGIC) {
        throw new ProtocolError("Cannot start RPC: the peer's first message is not an ipckit-rpc HELLO");
      }
      if (msg[2] !== MAJOR) {
        throw new ProtocolError(
          `Cannot start RPC: incompatible protocol versions (this side ${MAJOR}.${MINOR}, the peer ${
            describe(msg[2])
          }.${describe(msg[3])})`,
        );
      }
      this.#helloSeen = true;
      return;
    }
    switch (kind) {
      case CALL:
        return this.#serve(msg);
      case NOTIFY:
        return this.#notified(msg);
      case RESULT:
        return this.#settle(this.#id(msg), msg[2], true);
      case ERROR: {
        if (msg[1] === null) throw this.#connectionError(msg[2]);
        const id = this.#id(msg);
        const method = this.#pending.get(id)?.method ?? this.#streams.get(id)?.method;
        if (method === undefined) return; // a late answer to a call given up
        const error = fromWire(msg[2], method);
        this.#settle(id, error, false);
        this.#streams.get(id)?.fail(error);
        this.#streams.delete(id);
        return;
      }
      case CANCEL:
        this.#serving.get(this.#id(msg))?.cancel(new DOMException("The caller cancelled the call", "AbortError"));
        return;
      case STREAM: {
        const id = this.#id(msg);
        const p = this.#pending.get(id);
        if (!p) return this.#post([CANCEL, id]); // the caller gave up meanwhile
        const stream = new RemoteStream(p.method, this.#window, (n) => this.#post([CREDIT, id, n]), () => {
          this.#streams.delete(id);
          this.#post([CANCEL, id]);
        });
        this.#streams.set(id, stream);
        // The deadline and the signal still apply while the stream runs: keep them, but settle the promise.
        this.#pending.delete(id);
        p.latency?.end(p.started ?? UNTIMED, true); // timed to its first answer
        this.#stats.values[CALLS_SETTLED]!++;
        p.resolve(stream);
        return;
      }
      case ITEM:
        return this.#streams.get(this.#id(msg))?.push(msg[2]);
      case END: {
        const id = this.#id(msg);
        this.#streams.get(id)?.finish();
        this.#streams.delete(id);
        return;
      }
      case BYE:
        throw new ClosedError("Cannot complete the RPC call: the peer closed the connection");
      case CREDIT: {
        const id = this.#id(msg);
        const n = msg[2];
        const s = this.#serving.get(id);
        if (s) return s.grant(n);
        // A credit for a stream that ended meanwhile is normal; a credit no caller would send is not.
        if (!checkCredit(n)) {
          throw new ProtocolError(`Cannot read an RPC message: a stream credit of ${describe(n)} is out of range`);
        }
        return;
      }
      default:
        throw new ProtocolError(`Cannot read an RPC message: unknown kind ${kind}`);
    }
  }

  #connectionError(w: unknown): ProtocolError {
    const e = fromWire(w, "(connection)");
    return new ProtocolError(`The peer ended the RPC connection: ${e.remoteName}: ${e.message}`, { cause: e });
  }

  #id(msg: unknown[]): number {
    const id = msg[1];
    if (!Number.isSafeInteger(id)) throw new ProtocolError(`Cannot read an RPC message: bad id ${describe(id)}`);
    return id as number;
  }

  #lookup(method: unknown): AnyFunction | undefined {
    return typeof method === "string" ? this.#handlers.get(method) : undefined;
  }

  #notified(msg: unknown[]): void {
    const fn = this.#lookup(msg[1]);
    if (!fn || !Array.isArray(msg[2])) {
      return this.#report(
        new MethodNotFoundError(`Notification ${describe(msg[1])} has no handler`, { name: "MethodNotFoundError" }),
      );
    }
    if (this.#serving.size + this.#notifying >= this.#maxInFlight) {
      return this.#report(
        new QueueFullError(`Cannot run notification ${describe(msg[1])}: ${this.#busy()}`),
      );
    }
    this.#notifying++;
    const context: CallContext = { signal: AbortSignal.abort(), method: msg[1] as string, peer: this as RpcPeer };
    Promise.resolve().then(() => fn.apply(context, msg[2] as unknown[])).then(this.#notifyDone, this.#notifyFailed);
  }

  #busy(): string {
    return `${this.#maxInFlight} calls and notifications are in flight on this connection (maxInFlight)`;
  }

  #serve(msg: unknown[]): void {
    const id = this.#id(msg);
    const method = msg[2], params = msg[3], timeout = msg[4], credit = msg[5];
    // Two calls under one id would share one entry: the first could then never be cancelled nor counted.
    if (this.#serving.has(id)) {
      throw new ProtocolError(`Cannot read an RPC message: call id ${id} is already in flight`);
    }
    if (credit !== undefined && !checkCredit(credit)) {
      throw new ProtocolError(
        `Cannot read an RPC message: a call's stream window of ${describe(credit)} is out of range`,
      );
    }
    const fn = this.#lookup(method);
    if (!fn) {
      return this.#answer(id, [ERROR, id, { name: "MethodNotFoundError", message: `no method ${describe(method)}` }]);
    }
    if (!Array.isArray(params)) {
      return this.#answer(id, [ERROR, id, { name: "TypeError", message: "the params are not an array" }]);
    }
    if (this.#serving.size + this.#notifying >= this.#maxInFlight) {
      return this.#answer(id, [ERROR, id, {
        name: "QueueFullError",
        message: `Cannot serve ${describe(method)}: ${this.#busy()}`,
      }]);
    }
    const call = new Call(method as string, this as RpcPeer, credit ?? 16);
    this.#stats.values[SERVED]!++;
    const latency = call.latency = this.#serveTimes.of(method as string);
    call.started = latency.start();
    let result: unknown;
    try {
      result = fn.apply(call, params);
    } catch (e) {
      return this.#fail(id, call, e);
    }
    // A plain value from a synchronous handler: reply at once, with nothing to cancel or time out.
    if (result === null || (typeof result !== "object" && typeof result !== "function")) {
      this.#stats.values[SERVED_DONE]!++;
      latency.end(call.started, true);
      return this.#result(id, result);
    }
    // A promise or a stream runs on: the caller may cancel it, and its deadline applies.
    this.#serving.set(id, call);
    if (typeof timeout === "number" && timeout >= 0 && timeout <= MAX_DEADLINE) {
      call.timer = setTimeout(
        () => call.cancel(new TimeoutError(`Call "${String(method)}" passed its deadline of ${timeout} ms`)),
        timeout,
      );
    }
    if (typeof (result as PromiseLike<unknown>).then === "function") {
      (result as PromiseLike<unknown>).then((r) => this.#reply(id, call, r), (e) => this.#fail(id, call, e));
    } else this.#reply(id, call, result);
  }

  #finish(id: number, call: Call, ok = true): void {
    if (call.timer !== undefined) clearTimeout(call.timer);
    this.#serving.delete(id);
    this.#stats.values[SERVED_DONE]!++;
    call.latency?.end(call.started, ok);
  }

  #fail(id: number, call: Call, error: unknown): void {
    this.#stats.values[SERVED_FAILED]!++;
    this.#finish(id, call, false);
    if (!call.aborted) this.#answer(id, [ERROR, id, toWire(error, this.#exposeStack)]);
  }

  #reply(id: number, call: Call, result: unknown): void {
    if (call.aborted) return this.#finish(id, call);
    if (isAsyncIterable(result)) {
      this.#stream(id, call, result).then(() => this.#finish(id, call), (e) => this.#fail(id, call, e));
      return;
    }
    this.#finish(id, call);
    this.#result(id, result);
  }

  async #stream(id: number, call: Call, source: AsyncIterable<unknown>): Promise<void> {
    await this.#emit([STREAM, id]);
    const it = source[Symbol.asyncIterator]();
    try {
      for (;;) {
        while (call.credit === 0 && !call.aborted) await new Promise<void>((r) => (call.wake = r));
        if (call.aborted) return;
        const { value, done } = await it.next();
        if (done) break;
        if (call.aborted) return;
        call.credit--;
        await this.#emit([ITEM, id, value]);
      }
      await this.#emit([END, id]);
    } finally {
      if (call.aborted) await it.return?.();
    }
  }
}
