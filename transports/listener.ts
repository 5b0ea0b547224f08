/**
 * Listeners whose connections queue until `accept()` takes them: the queue and its waiters once
 * ({@linkcode QueuedListener}), and the one over a runtime server ({@linkcode StreamListener}), with the limits a
 * server facing careless or hostile peers needs ({@linkcode ListenerLimits}).
 *
 * @module
 */
import { Fifo } from "../async/fifo.ts";
import { Waiters } from "../async/waiters.ts";
import { ClosedError, TimeoutError } from "../errors.ts";
import type { ByteSink, ByteStream, Server } from "../runtimes/runtime.ts";
import type { Channel, Listener } from "./channel.ts";

/**
 * The accept queue every listener shares: items wait for `accept()`, or `accept()` waits for an item. An item is
 * what the transport queues (a Channel, or a connection not made into one yet); `adopt()` turns it into the
 * Channel `accept()` returns, at the moment it is accepted.
 */
export abstract class QueuedListener<T = Channel> implements Listener {
  #ready = new Fifo<T>();
  #waiters = new Waiters<Channel>();
  #ended: Error | undefined;
  readonly #backlog: number;

  /** @param backlog The most items waiting for `accept()`; `offer()` refuses more. Unbounded by default. */
  constructor(backlog = Infinity) {
    this.#backlog = backlog;
  }

  /** Makes the Channel for an accepted item (the item itself by default). */
  protected adopt(item: T): Channel {
    return item as unknown as Channel;
  }

  /**
   * Hands a new item to a waiting `accept()`, or queues it. Returns false, keeping nothing, when the queue already
   * holds `backlog` items: the caller then closes the item.
   */
  protected offer(item: T): boolean {
    if (this.#waiters.wakeWith(() => this.adopt(item))) return true;
    if (this.#ready.length >= this.#backlog) return false;
    this.#ready.push(item);
    return true;
  }

  /** Items waiting for `accept()`. */
  protected get waiting(): number {
    return this.#ready.length;
  }

  /** True once `stopAccepting` ran. */
  protected get stopped(): boolean {
    return this.#ended !== undefined;
  }

  /** Ends accepting: waiting and later `accept()` calls reject with `error`. Returns the items nobody took. */
  protected stopAccepting(error: Error): T[] {
    this.#ended ??= error;
    this.#waiters.fail(this.#ended);
    return this.#ready.clear();
  }

  accept(options: { signal?: AbortSignal } = {}): Promise<Channel> {
    if (this.#ready.length > 0) {
      try {
        return Promise.resolve(this.adopt(this.#ready.shift()!));
      } catch (e) {
        return Promise.reject(e);
      }
    }
    if (this.#ended) return Promise.reject(this.#ended);
    return this.#waiters.wait(options.signal === undefined ? {} : { signal: options.signal });
  }

  abstract close(): Promise<void>;

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Channel> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (e) {
        if (e instanceof ClosedError) return;
        throw e;
      }
    }
  }
}

/**
 * Limits of a listening socket (`unix.listen`, `tcp.listen`): what a server facing careless or hostile peers needs.
 * Connections refused by a limit are closed at once, before anything is read from them; the peer sees its
 * connection end (EOF or a reset).
 *
 * @example
 * ```ts
 * import type { ListenerLimits } from "ipckit";
 * const limits: ListenerLimits = { backlog: 64, maxConnections: 1000, idleTimeout: 60_000 };
 * console.log(limits.idleTimeout); // 60000: a connection silent for a minute is closed
 * ```
 */
export interface ListenerLimits {
  /**
   * Connections waiting for `accept()`, at most; beyond it new connections are closed at once. A waiting connection
   * reads nothing (its bytes wait in the kernel, whose buffers bound them), so the memory a flood of unaccepted
   * connections costs is bounded by this number. Default {@linkcode DEFAULT_BACKLOG}.
   */
  backlog?: number;
  /**
   * Connections open at once: accepted and not yet closed, plus those waiting for `accept()`. Beyond it new
   * connections are closed at once. Default: no limit (the process's file descriptor limit applies).
   */
  maxConnections?: number;
  /**
   * Milliseconds an accepted connection may go without a byte in either direction; then it is closed, and its
   * `receive()` rejects with a `ClosedError` whose cause is a `TimeoutError` (messages already received stay
   * receivable first). Time while this side has paused reading (its queue is full) does not count. A single message
   * that takes longer than this to reach a slow reader counts as idle. Default 0: never.
   */
  idleTimeout?: number;
}

/**
 * Default {@linkcode ListenerLimits.backlog}: connections waiting for `accept()`, each reading nothing meanwhile.
 *
 * @example
 * ```ts
 * import { DEFAULT_BACKLOG } from "ipckit";
 * console.log(DEFAULT_BACKLOG); // 512: the 513th connection nobody accepted yet is closed at once
 * ```
 */
export const DEFAULT_BACKLOG = 512;

/**
 * Validates {@linkcode ListenerLimits} and fills in the defaults.
 *
 * @throws {RangeError} when a limit is not a positive integer (`idleTimeout`: not a non-negative number).
 */
export function listenerLimits(limits: ListenerLimits = {}, what = "a listener"): Required<ListenerLimits> {
  const backlog = limits.backlog ?? DEFAULT_BACKLOG;
  if (!Number.isSafeInteger(backlog) || backlog < 1) {
    throw new RangeError(`Cannot open ${what} with backlog ${backlog}: it must be a positive integer`);
  }
  const maxConnections = limits.maxConnections ?? Infinity;
  if (maxConnections !== Infinity && (!Number.isSafeInteger(maxConnections) || maxConnections < 1)) {
    throw new RangeError(
      `Cannot open ${what} with maxConnections ${maxConnections}: it must be a positive integer or Infinity`,
    );
  }
  const idleTimeout = limits.idleTimeout ?? 0;
  if (typeof idleTimeout !== "number" || !(idleTimeout >= 0) || idleTimeout > 2 ** 31 - 1) {
    throw new RangeError(
      `Cannot open ${what} with idleTimeout ${idleTimeout}: it must be from 0 (never) to ${2 ** 31 - 1} milliseconds`,
    );
  }
  return { backlog, maxConnections, idleTimeout };
}

/** The server half a StreamListener wraps, plus what to do once it stopped. */
export interface ListenerParts {
  description: string;
  /** Makes the Channel of an accepted connection (it starts reading then). */
  wrap(stream: ByteStream): Channel;
  afterClose?: () => Promise<void>;
}

/**
 * Queues the connections of a runtime server, and makes each a Channel when it is accepted: until then it reads
 * nothing. Applies {@linkcode ListenerLimits}.
 */
export class StreamListener extends QueuedListener<ByteStream> {
  #server: Server | undefined;
  #parts: ListenerParts;
  #closing: Promise<void> | undefined;
  readonly #limits: Required<ListenerLimits>;
  /** Connections counted against maxConnections (waiting or accepted, not closed). */
  #open = 0;
  readonly #idle: IdleWatch | undefined;

  /**
   * @param parts What the transport provides.
   * @param limits The limits; validated here.
   * @throws {RangeError} on an invalid limit.
   */
  constructor(parts: ListenerParts, limits: ListenerLimits = {}) {
    const checked = listenerLimits(limits, parts.description);
    super(checked.backlog);
    this.#parts = parts;
    this.#limits = checked;
    if (checked.idleTimeout > 0) this.#idle = new IdleWatch(checked.idleTimeout, parts.description);
  }

  /** Binds the runtime server; called once by the transport. */
  attach(server: Server): void {
    this.#server = server;
  }

  /** The runtime hands over a new connection. */
  readonly onConnection = (stream: ByteStream): void => {
    if (this.#closing || this.#open >= this.#limits.maxConnections) return stream.close();
    // Counting is only needed for maxConnections and idleTimeout: without them the stream goes on untouched.
    const item = this.#limits.maxConnections === Infinity && this.#idle === undefined
      ? stream
      : new TrackedStream(stream, () => this.#open--);
    if (item !== stream) this.#open++;
    if (!this.offer(item)) item.close();
  };

  protected override adopt(stream: ByteStream): Channel {
    if (stream instanceof TrackedStream) this.#idle?.add(stream);
    try {
      return this.#parts.wrap(stream);
    } catch (e) {
      stream.close();
      throw e;
    }
  }

  /** The bound port (TCP) or 0. */
  get port(): number {
    return this.#server?.port ?? 0;
  }

  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const left = this.stopAccepting(new ClosedError(`Cannot accept on ${this.#parts.description}: it is closed`));
      // Connections nobody accepted are closed (they never started reading); accepted ones belong to their users.
      for (const s of left) s.close();
      await this.#server?.close();
      await this.#parts.afterClose?.();
    })());
  }
}

/**
 * A ByteStream that counts its traffic for the idle watch, knows when reading is paused, and reports its close
 * once (to free its place under maxConnections).
 */
class TrackedStream implements ByteStream, Watched {
  /** Chunks read plus writes made: the idle watch looks for a change. */
  activity = 0;
  paused = false;
  readonly #inner: ByteStream;
  #onClose: (() => void) | undefined;
  #sink: ByteSink | undefined;
  #ended = false;

  constructor(inner: ByteStream, onClose: () => void) {
    this.#inner = inner;
    this.#onClose = onClose;
  }

  get ownsChunks(): boolean {
    return this.#inner.ownsChunks;
  }

  get closed(): boolean {
    return this.#onClose === undefined;
  }

  start(sink: ByteSink): void {
    this.#sink = sink;
    this.#inner.start({
      data: (chunk) => {
        this.activity++;
        sink.data(chunk);
      },
      end: (e) => this.endReading(e),
    });
  }

  /** The idle watch closes it: reading ends with `error`. */
  expire(error: ClosedError): void {
    this.endReading(error);
    this.close();
  }

  /** Ends the reading side once (the runtime's end, or the idle watch's). */
  endReading(error?: Error): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#sink?.end(error);
  }

  pause(): void {
    this.paused = true;
    this.#inner.pause();
  }

  resume(): void {
    this.paused = false;
    this.#inner.resume();
  }

  write(chunk: Uint8Array): Promise<void> | undefined {
    this.activity++;
    return this.#inner.write(chunk);
  }

  end(): Promise<void> {
    return this.#inner.end();
  }

  close(): void {
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.();
    this.#inner.close();
  }
}

/** What the idle watch looks at: a connection's traffic count, and how to close it. */
export interface Watched {
  /** Grows with traffic either way: the watch looks for a change. */
  readonly activity: number;
  /** This side does not read (its own queue is full): not the peer's silence. */
  readonly paused: boolean;
  readonly closed: boolean;
  /** Closes the connection, its `receive()` rejecting with `error` once what was received is taken. */
  expire(error: ClosedError): void;
}

/**
 * Closes accepted connections idle for `ms`. One timer for all of them, ticking every `ms / 4` while any is
 * watched: a connection is closed on the fourth tick in a row that saw no traffic, so between `ms` and 1.25 `ms`
 * after its last byte. The hot path only increments a counter.
 */
export class IdleWatch {
  readonly #ms: number;
  readonly #description: string;
  /** Each watched connection: its `activity` at the last sweep, and how many sweeps in a row saw no change since. */
  readonly #watched = new Map<Watched, { seen: number; quiet: number }>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(ms: number, description: string) {
    this.#ms = ms;
    this.#description = description;
  }

  add(item: Watched): void {
    // The first sweep may come at once: it does not count.
    this.#watched.set(item, { seen: item.activity, quiet: -1 });
    this.#timer ??= setInterval(() => this.#sweep(), Math.max(1, this.#ms / 4));
  }

  #sweep(): void {
    for (const [item, look] of this.#watched) {
      if (item.closed) {
        this.#watched.delete(item);
        continue;
      }
      if (item.activity !== look.seen || item.paused) {
        look.seen = item.activity;
        look.quiet = 0;
      } else if (++look.quiet >= 4) {
        this.#watched.delete(item);
        this.#expire(item);
      }
    }
    if (this.#watched.size === 0) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }

  #expire(item: Watched): void {
    const ms = this.#ms;
    const cause = new TimeoutError(
      `Cannot wait for traffic on a connection of ${this.#description}: timed out after ${ms} ms (idleTimeout)`,
    );
    item.expire(
      new ClosedError(
        `Cannot receive on a connection of ${this.#description}: nothing was sent or received for ${ms} ms (idleTimeout), so it was closed`,
        { cause },
      ),
    );
  }
}
