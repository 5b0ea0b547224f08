/**
 * What UDP and Unix datagram sockets share: a bound socket that sends to and receives from anyone
 * ({@linkcode DatagramSocket}), and a Channel to one peer ({@linkcode DatagramChannel}). Each transport supplies a
 * {@linkcode DatagramEndpoint}; these classes keep the queueing, limits, timeouts and close rules once.
 *
 * Datagram semantics, for both classes:
 * - one `send()` is one datagram; one `receive()` returns one whole datagram;
 * - there is no connection: `close()` is local, and the peer is neither told nor able to tell;
 * - a datagram larger than this side's `maxMessage` is discarded on arrival and counted in `dropped`; a channel then
 *   ends with `MessageTooLargeError`, as the Channel contract asks, because its peer broke the agreed limit;
 * - receiving more than `highWaterMark` bytes that nobody reads: a reliable endpoint (Unix) stops reading and the
 *   sender waits; an unreliable one (UDP) discards the newest datagrams and counts them in `dropped`.
 *
 * @module
 */
import { Fifo } from "../async/fifo.ts";
import { Waiters } from "../async/waiters.ts";
import { ClosedError, MessageTooLargeError } from "../errors.ts";
import type { DatagramEndpoint } from "../os/datagram_endpoint.ts";
import {
  BaseChannel,
  type Capabilities,
  channelLimits,
  type ChannelOptions,
  MESSAGE_OVERHEAD,
  messageIterator,
  receiveFrom,
  type ReceiveOptions,
  type SendOptions,
} from "./channel.ts";

/** One received datagram and its sender. */
export interface Datagram<A> {
  readonly data: Uint8Array;
  /** The sender's address (a Unix sender that did not bind has the empty address `""`). */
  readonly from: A;
}

// The endpoint contract lives with the OS objects (a Unix datagram socket in os/ implements it); re-exported here.
export type { DatagramEndpoint, DatagramSink } from "../os/datagram_endpoint.ts";

/** Options of datagram sockets and channels. */
export type DatagramOptions = ChannelOptions;

function checkData(data: unknown, description: string): void {
  if (!(data instanceof Uint8Array)) {
    throw new TypeError(`Cannot send on ${description}: the message must be a Uint8Array`);
  }
}

function tooLarge(size: number, limit: number, description: string): MessageTooLargeError {
  return new MessageTooLargeError(
    `Cannot send a message of ${size} bytes on ${description}: it exceeds maxMessage (${limit} bytes)`,
    size,
    limit,
  );
}

/**
 * A bound datagram socket: sends to any address, receives from anyone. `connect(peer)` turns it into a Channel to
 * one peer.
 *
 * @example
 * ```ts
 * import { DatagramSocket, udp } from "ipckit";
 * await using server = await udp.bind({ port: 0 });
 * console.log(server instanceof DatagramSocket); // true
 * await using client = await udp.bind({ port: 0 });
 * for (const word of ["one", "two", "stop"]) await client.send(new TextEncoder().encode(word), server.address);
 * for await (const { data, from } of server) {
 *   const word = new TextDecoder().decode(data);
 *   if (word === "stop") break;
 *   await server.send(data, from); // answer whoever sent it
 * }
 * console.log(new TextDecoder().decode((await client.receive({ timeout: 1000 })).data)); // "one"
 * console.log(server.dropped); // 0: nothing was discarded
 * ```
 */
export class DatagramSocket<A> implements AsyncIterable<Datagram<A>>, AsyncDisposable {
  readonly maxMessage: number;
  readonly highWaterMark: number;
  #endpoint: DatagramEndpoint<A>;
  #queue = new Fifo<Datagram<A>>();
  #queuedBytes = 0;
  #waiters = new Waiters<Datagram<A>>();
  #paused = false;
  #dropped = 0;
  #closed: Error | undefined;
  #closing: Promise<void> | undefined;

  constructor(endpoint: DatagramEndpoint<A>, options: DatagramOptions = {}) {
    const limits = channelLimits(options, endpoint.limit);
    this.maxMessage = limits.maxMessage;
    this.highWaterMark = limits.highWaterMark;
    this.#endpoint = endpoint;
    endpoint.start({
      data: (data, from) => this.#deliver({ data, from }),
      tooLarge: () => void this.#dropped++,
      error: (e) => this.#end(new ClosedError(`Cannot receive on ${endpoint.description}: ${e.message}`, { cause: e })),
    }, this.maxMessage);
  }

  /** The address this socket is bound to. */
  get address(): A {
    return this.#endpoint.address;
  }

  /** Datagrams discarded on arrival: over `maxMessage`, or (UDP) beyond `highWaterMark` while nobody read. */
  get dropped(): number {
    return this.#dropped;
  }

  /** True once closed (or turned into a channel). */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Sends one datagram to `to`. Resolves once the OS took it (a Unix socket waits while the receiver's queue is
   * full; UDP never waits, and a datagram may still be lost on the way).
   *
   * @throws {MessageTooLargeError} over `maxMessage`; {@linkcode ClosedError} after `close()`; `NotFoundError` when no
   * Unix socket is bound at `to`.
   */
  send(data: Uint8Array, to: A, options?: SendOptions): Promise<void> {
    try {
      checkData(data, this.#endpoint.description);
      if (this.#closed) throw new ClosedError(`Cannot send on ${this.#endpoint.description}: it is closed`);
      if (data.byteLength > this.maxMessage) {
        throw tooLarge(data.byteLength, this.maxMessage, this.#endpoint.description);
      }
      options?.signal?.throwIfAborted();
      return this.#endpoint.send(data, to, options?.signal) ?? Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Receives the next datagram; `timeout` and `signal` give up without losing one. */
  receive(options?: ReceiveOptions): Promise<Datagram<A>> {
    const d = this.#queue.shift();
    if (d !== undefined) {
      this.#queuedBytes -= d.data.byteLength + MESSAGE_OVERHEAD;
      if (this.#paused && this.#queuedBytes < this.highWaterMark / 2) {
        this.#paused = false;
        this.#endpoint.resume();
      }
      return Promise.resolve(d);
    }
    if (this.#closed) return Promise.reject(this.#closed);
    return receiveFrom(this.#waiters, this.#endpoint.description, options);
  }

  #deliver(d: Datagram<A>): void {
    if (this.#closed) return;
    if (this.#waiters.wake(d)) return;
    if (this.#queuedBytes >= this.highWaterMark && !this.#endpoint.reliable) {
      this.#dropped++;
      return;
    }
    this.#queue.push(d);
    this.#queuedBytes += d.data.byteLength + MESSAGE_OVERHEAD; // empty datagrams fill the queue too
    if (this.#queuedBytes >= this.highWaterMark && this.#endpoint.reliable && !this.#paused) {
      this.#paused = true;
      this.#endpoint.pause();
    }
  }

  #end(error: Error): Datagram<A>[] {
    this.#closed ??= error;
    this.#waiters.fail(this.#closed);
    this.#queuedBytes = 0;
    return this.#queue.clear();
  }

  /**
   * Restricts this socket to `peer` and returns it as a Channel: sends go to `peer`, datagrams from anyone else
   * are discarded. This socket object is closed; datagrams from `peer` it had queued move to the channel.
   */
  async connect(peer: A, options: DatagramOptions = {}): Promise<DatagramChannel<A>> {
    if (this.#closed) throw new ClosedError(`Cannot connect ${this.#endpoint.description}: it is closed`);
    await this.#endpoint.connect(peer);
    const e = new ClosedError(
      `Cannot use ${this.#endpoint.description}: it became a channel to ${this.#endpoint.format(peer)}`,
    );
    const queued = this.#end(e).filter((d) => this.#endpoint.same(d.from, peer)).map((d) => d.data);
    if (this.#paused) this.#endpoint.resume();
    return new DatagramChannel(this.#endpoint, options, queued);
  }

  /** Closes the socket; pending `receive()` calls reject with `ClosedError`. Idempotent. */
  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    if (this.#closed) return Promise.resolve(); // became a channel: the channel owns the socket
    this.#end(new ClosedError(`Cannot receive on ${this.#endpoint.description}: it is closed`));
    return (this.#closing = this.#endpoint.close());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Iterates received datagrams until the socket is closed. */
  [Symbol.asyncIterator](): AsyncIterator<Datagram<A>> {
    return messageIterator(this);
  }
}

/**
 * A Channel over a datagram socket connected to one peer. See the module doc for what differs from streams.
 *
 * @example
 * ```ts
 * import { DatagramChannel, runtime, unixDgram } from "ipckit";
 * const path = `/tmp/ipckit-channel-${(await runtime()).pid}.dgram`;
 * await using server = await unixDgram.bind(path);
 * await using client = await unixDgram.connect(path);
 * console.log(client instanceof DatagramChannel, client.capabilities.datagram); // true true
 * await client.send(new Uint8Array([1]));
 * const { from } = await server.receive({ timeout: 1000 });
 * console.log(from === client.address); // true: the client's autobound address
 * ```
 */
export class DatagramChannel<A> extends BaseChannel {
  readonly capabilities: Capabilities;
  #endpoint: DatagramEndpoint<A>;
  #dropped = 0;
  /** Over highWaterMark on an unreliable endpoint: arrivals are discarded. */
  #full = false;

  constructor(endpoint: DatagramEndpoint<A>, options: DatagramOptions = {}, queued: Uint8Array[] = []) {
    super(endpoint.description, options, endpoint.limit);
    const { reliable, limit, crossHost } = endpoint;
    this.capabilities = { ordered: reliable, reliable, maxMessage: limit, crossHost, datagram: true };
    this.#endpoint = endpoint;
    for (const m of queued) this.deliver(m);
    endpoint.start({
      data: (data) => {
        if (this.#full) this.#dropped++;
        else this.deliver(data);
      },
      tooLarge: (size) => {
        this.#dropped++;
        this.end(
          new MessageTooLargeError(
            `Cannot receive on ${endpoint.description}: the peer sent ${size} bytes, over maxMessage (${this.maxMessage} bytes)`,
            size,
            this.maxMessage,
          ),
        );
      },
      error: (e) => this.end(new ClosedError(`Cannot receive on ${endpoint.description}: ${e.message}`, { cause: e })),
    }, this.maxMessage);
  }

  /** Datagrams discarded on arrival: over `maxMessage`, or (UDP) beyond `highWaterMark` while nobody read. */
  get dropped(): number {
    return this.#dropped;
  }

  /** The local address. */
  get address(): A {
    return this.#endpoint.address;
  }

  // No connection to lose: sending stays possible after receiving ended.
  protected override get sendAfterEnd(): boolean {
    return true;
  }

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
    return this.#endpoint.send(message, undefined, signal);
  }

  protected override _pause(): void {
    if (this.#endpoint.reliable) this.#endpoint.pause();
    else this.#full = true;
  }

  protected override _resume(): void {
    if (this.#endpoint.reliable) this.#endpoint.resume();
    else this.#full = false;
  }

  protected _close(): Promise<void> {
    return this.#endpoint.close();
  }
}
