/**
 * One end of an RPC connection over any Channel: it calls the other side's handlers and serves its own (both sides
 * may serve at once). The wire protocol is in `protocol.ts`.
 *
 * Semantics:
 * - calls are matched to replies by id; any number may be in flight;
 * - a handler runs with `this` = `{ signal, method, peer }`: `signal` aborts when the caller cancels (its own
 *   AbortSignal crossed the wire), when the call's deadline passes, or when the connection closes;
 * - a handler that returns an AsyncIterable streams it: the caller's promise resolves to an AsyncIterable, and the
 *   handler is pulled no further than the caller's credit (`window` items; more as the caller consumes them);
 * - a handler's throw arrives as a `RemoteError` (name, message, stack, `data`); an unknown method as
 *   `MethodNotFoundError`; when the connection ends, pending calls reject with `ClosedError`;
 * - only the handler object's own function properties are callable: no prototype walk, so `constructor`,
 *   `__proto__` or `toString` are unknown methods.
 *
 * @module
 */
import { abortError, ClosedError, IpcError, MethodNotFoundError, ProtocolError, TimeoutError } from "../errors.ts";
import type { Channel } from "../transports/channel.ts";
import { cbor, type Codec } from "../transports/codec.ts";
import {
  BYE,
  CALL,
  CANCEL,
  CREDIT,
  END,
  ERROR,
  fromWire,
  HELLO,
  isAsyncIterable,
  ITEM,
  kindOf,
  MAGIC,
  MAJOR,
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

/** Options of {@linkcode RpcPeer}. */
export interface RpcOptions {
  /** How messages are encoded: `cbor` (default; Uint8Array travels as bytes) or `json`. Both sides must agree. */
  codec?: Codec;
  /** The handlers this side serves (own function properties only). */
  handlers?: object;
  /** The default deadline of every call, in milliseconds (none by default). */
  timeout?: number;
  /** How many stream items may be in flight per stream before the handler waits (default 16). */
  window?: number;
  /** Called with errors thrown by notification handlers (they have no caller to reject). */
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

interface Pending {
  method: string;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  cleanup(): void;
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
  readonly #handlers = new Map<string, AnyFunction>();
  readonly #timeout: number | undefined;
  readonly #window: number;
  readonly #onError: (error: unknown) => void;
  #nextId = 1;
  readonly #pending = new Map<number, Pending>();
  readonly #streams = new Map<number, RemoteStream>();
  readonly #serving = new Map<number, Call>();
  #helloSeen = false;
  #ended: Error | undefined;
  readonly #done: Promise<void>;

  constructor(channel: Channel, options: RpcOptions = {}) {
    this.channel = channel;
    this.#codec = options.codec ?? cbor;
    this.#timeout = options.timeout;
    this.#window = options.window ?? 16;
    if (!Number.isInteger(this.#window) || this.#window < 1) {
      throw new RangeError(`Cannot use an RPC window of ${options.window}: it must be a positive integer`);
    }
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
    this.#send([HELLO, MAGIC, MAJOR, MINOR]);
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
  callWith(method: string, params: unknown[], options: CallOptions = {}): Promise<unknown> {
    if (typeof method !== "string") return Promise.reject(new TypeError("Cannot call: the method must be a string"));
    if (this.#ended) return Promise.reject(this.#ended);
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    const timeout = options.timeout ?? this.#timeout;
    if (timeout !== undefined && !(timeout >= 0)) {
      return Promise.reject(new RangeError(`Cannot call "${method}" with timeout ${timeout}: it must be >= 0 ms`));
    }
    const id = this.#nextId++;
    if (signal === undefined && timeout === undefined) {
      // The common case: no timer, no listener, no closures beyond the promise's own.
      return new Promise<unknown>((resolve, reject) => {
        this.#pending.set(id, { method, resolve, reject, cleanup: NOOP });
        this.#send([CALL, id, method, params, null, this.#window]).catch((e) => this.#settle(id, e, false));
      });
    }
    return new Promise<unknown>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => this.#giveUp(id, abortError(signal!));
      const p: Pending = {
        method,
        resolve,
        reject,
        cleanup: () => {
          if (timer !== undefined) clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      };
      this.#pending.set(id, p);
      if (timeout !== undefined) {
        timer = setTimeout(
          () => this.#giveUp(id, new TimeoutError(`Remote call "${method}" timed out after ${timeout} ms`)),
          timeout,
        );
      }
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#send([CALL, id, method, params, timeout ?? null, this.#window]).catch((e) => this.#settle(id, e, false));
    });
  }

  /** Calls `method` without waiting for (or getting) a reply. Resolves once the message is sent. */
  notify(method: string, ...params: unknown[]): Promise<void> {
    if (this.#ended) return Promise.reject(this.#ended);
    return this.#send([NOTIFY, method, params]);
  }

  /** Closes the connection: pending calls reject with `ClosedError`, running handlers are aborted. */
  async close(): Promise<void> {
    if (!this.#ended) await this.#send([BYE]).catch(() => {});
    this.#end(new ClosedError("Cannot complete the RPC call: the connection was closed"));
    await this.channel.close();
    await this.#done;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #send(message: unknown[]): Promise<void> {
    let bytes: Uint8Array;
    try {
      bytes = this.#codec.encode(message);
    } catch (e) {
      return Promise.reject(
        new TypeError(`Cannot encode an RPC message with ${this.#codec.name}: ${(e as Error).message}`, { cause: e }),
      );
    }
    return this.channel.send(bytes);
  }

  /** Sends without caring whether it arrives (replies to a peer that may be gone). */
  #post(message: unknown[]): void {
    this.#send(message).catch(() => {});
  }

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
    if (ok) p.resolve(value);
    else p.reject(value);
  }

  async #loop(): Promise<void> {
    let end: Error = new ClosedError("Cannot complete the RPC call: the peer closed the connection");
    try {
      // receive() rather than `for await`: two promise turns less per message.
      for (;;) {
        const bytes = await this.channel.receive();
        if (this.#ended) break;
        this.#dispatch(this.#codec.decode(bytes));
      }
    } catch (e) {
      end = e instanceof ClosedError
        ? end // the channel's own wording ("the peer closed it") would name the transport, not the call
        : e instanceof ProtocolError || e instanceof IpcError
        ? e
        : new ProtocolError(`Cannot read the RPC connection: ${(e as Error)?.message}`, { cause: e });
      if (e instanceof ProtocolError && !this.#ended) {
        // Tell a peer that speaks something else why, then hang up.
        this.#post([ERROR, null, toWire(e)]);
      }
    }
    this.#end(end);
    await this.channel.close().catch(() => {});
  }

  #end(error: Error): void {
    if (this.#ended) return;
    this.#ended = error;
    for (const id of [...this.#pending.keys()]) this.#settle(id, error, false);
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
          `Cannot start RPC: incompatible protocol versions (this side ${MAJOR}.${MINOR}, the peer ${String(msg[2])}.${
            String(msg[3])
          })`,
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
        const method = this.#pending.get(id)?.method ?? this.#streams.get(id)?.method ?? "?";
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
        const s = this.#serving.get(this.#id(msg));
        const n = msg[2];
        if (s && Number.isInteger(n) && (n as number) > 0) {
          s.credit += n as number;
          s.wake?.();
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
    if (!Number.isSafeInteger(id)) throw new ProtocolError(`Cannot read an RPC message: bad id ${String(id)}`);
    return id as number;
  }

  #lookup(method: unknown): AnyFunction | undefined {
    return typeof method === "string" ? this.#handlers.get(method) : undefined;
  }

  #notified(msg: unknown[]): void {
    const fn = this.#lookup(msg[1]);
    if (!fn || !Array.isArray(msg[2])) {
      this.#onError(
        new MethodNotFoundError(`Notification "${String(msg[1])}" has no handler`, { name: "MethodNotFoundError" }),
      );
      return;
    }
    const context: CallContext = { signal: AbortSignal.abort(), method: msg[1] as string, peer: this as RpcPeer };
    Promise.resolve().then(() => fn.apply(context, msg[2] as unknown[])).catch((e) => this.#onError(e));
  }

  #serve(msg: unknown[]): void {
    const id = this.#id(msg);
    const [, , method, params, timeout, credit] = msg;
    const fn = this.#lookup(method);
    if (!fn) {
      return this.#post([ERROR, id, {
        name: "MethodNotFoundError",
        message: `no method ${JSON.stringify(String(method))}`,
      }]);
    }
    if (!Array.isArray(params)) {
      return this.#post([ERROR, id, { name: "TypeError", message: "the params are not an array" }]);
    }
    const call = new Call(method as string, this as RpcPeer, Number.isInteger(credit) ? credit as number : 16);
    let result: unknown;
    try {
      result = fn.apply(call, params);
    } catch (e) {
      return this.#fail(id, call, e);
    }
    // A plain value from a synchronous handler: reply at once, with nothing to cancel or time out.
    if (result === null || (typeof result !== "object" && typeof result !== "function")) {
      return this.#result(id, result);
    }
    // A promise or a stream runs on: the caller may cancel it, and its deadline applies.
    this.#serving.set(id, call);
    if (typeof timeout === "number" && timeout >= 0) {
      call.timer = setTimeout(
        () => call.cancel(new TimeoutError(`Call "${String(method)}" passed its deadline of ${timeout} ms`)),
        timeout,
      );
    }
    if (typeof (result as PromiseLike<unknown>).then === "function") {
      (result as PromiseLike<unknown>).then((r) => this.#reply(id, call, r), (e) => this.#fail(id, call, e));
    } else this.#reply(id, call, result);
  }

  #finish(id: number, call: Call): void {
    if (call.timer !== undefined) clearTimeout(call.timer);
    this.#serving.delete(id);
  }

  #fail(id: number, call: Call, error: unknown): void {
    this.#finish(id, call);
    if (!call.aborted) this.#post([ERROR, id, toWire(error)]);
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

  #result(id: number, result: unknown): void {
    // A result the codec cannot encode is the handler's error, not a silent loss.
    this.#send([RESULT, id, result]).catch((e) => {
      if (e instanceof TypeError) this.#post([ERROR, id, toWire(e)]);
    });
  }

  async #stream(id: number, call: Call, source: AsyncIterable<unknown>): Promise<void> {
    await this.#send([STREAM, id]);
    const it = source[Symbol.asyncIterator]();
    try {
      for (;;) {
        while (call.credit === 0 && !call.aborted) await new Promise<void>((r) => (call.wake = r));
        if (call.aborted) return;
        const { value, done } = await it.next();
        if (done) break;
        if (call.aborted) return;
        call.credit--;
        await this.#send([ITEM, id, value]);
      }
      await this.#send([END, id]);
    } finally {
      if (call.aborted) await it.return?.();
    }
  }
}

/**
 * A call being served: the handler's `this`. Its AbortSignal is made on first use only (most handlers never look),
 * already aborted if the call was cancelled before.
 */
class Call implements CallContext {
  readonly method: string;
  readonly peer: RpcPeer;
  /** Stream items the caller will still take. */
  credit: number;
  wake: (() => void) | undefined;
  timer: ReturnType<typeof setTimeout> | undefined;
  aborted = false;
  #controller: AbortController | undefined;
  #reason: unknown;

  constructor(method: string, peer: RpcPeer, credit: number) {
    this.method = method;
    this.peer = peer;
    this.credit = credit;
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  cancel(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
    this.wake?.();
  }
}

/** The caller's side of a streamed result. */
class RemoteStream implements AsyncIterable<unknown> {
  readonly method: string;
  #items: unknown[] = [];
  #waiter: { resolve(r: IteratorResult<unknown>): void; reject(e: unknown): void } | undefined;
  #done = false;
  #error: unknown;
  #consumed = 0;
  readonly #window: number;
  readonly #credit: (n: number) => void;
  readonly #cancel: () => void;

  constructor(method: string, window: number, credit: (n: number) => void, cancel: () => void) {
    this.method = method;
    this.#window = window;
    this.#credit = credit;
    this.#cancel = cancel;
  }

  push(value: unknown): void {
    if (this.#waiter) {
      const w = this.#waiter;
      this.#waiter = undefined;
      this.#took();
      w.resolve({ done: false, value });
    } else this.#items.push(value);
  }

  finish(): void {
    this.#done = true;
    this.#waiter?.resolve({ done: true, value: undefined });
    this.#waiter = undefined;
  }

  fail(error: unknown): void {
    if (this.#done) return;
    this.#done = true;
    this.#error = error;
    this.#waiter?.reject(error);
    this.#waiter = undefined;
  }

  /** One item consumed: grant more credit every half window. */
  #took(): void {
    if (++this.#consumed >= Math.ceil(this.#window / 2)) {
      this.#credit(this.#consumed);
      this.#consumed = 0;
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<unknown> {
    return {
      next: () => {
        if (this.#items.length > 0) {
          this.#took();
          return Promise.resolve({ done: false, value: this.#items.shift() });
        }
        if (this.#error !== undefined) return Promise.reject(this.#error);
        if (this.#done) return Promise.resolve({ done: true, value: undefined });
        return new Promise((resolve, reject) => (this.#waiter = { resolve, reject }));
      },
      return: () => {
        if (!this.#done) {
          this.#done = true;
          this.#cancel();
        }
        return Promise.resolve({ done: true, value: undefined });
      },
    };
  }
}
