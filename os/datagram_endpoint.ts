/**
 * The contract of a bound datagram socket, as the datagram socket and channel of `transports/datagram.ts` use it:
 * a UDP socket (`transports/udp.ts`, over the runtime's) or a Unix datagram socket (`os/unix_dgram_socket.ts`, over
 * libc) implements it. It lives with the OS objects, below the transports that consume it, so a socket here can
 * implement it without importing upward.
 *
 * @module
 */

/** Receives what an endpoint reads. */
export interface DatagramSink<A> {
  /** A datagram; `data` is a fresh buffer. */
  data(data: Uint8Array, from: A): void;
  /** A datagram of `size` bytes, over the limit given to `start()`, was discarded. */
  tooLarge(size: number, from: A): void;
  /** The socket failed; nothing more arrives. */
  error(error: Error): void;
}

/** A bound datagram socket of one transport. */
export interface DatagramEndpoint<A> {
  /** Describes the socket in messages, like `UDP 127.0.0.1:4000`. */
  readonly description: string;
  /** The address this socket is bound to. */
  readonly address: A;
  /** Whether datagrams are never lost between live sockets (the OS makes the sender wait instead). */
  readonly reliable: boolean;
  /** The largest datagram the transport carries, in bytes. */
  readonly limit: number;
  /** Whether the peer may be on another host. */
  readonly crossHost: boolean;
  /** Starts reading; datagrams over `limit` bytes are reported to `sink.tooLarge`. */
  start(sink: DatagramSink<A>, limit: number): void;
  /** Flow control, for reliable endpoints: stop reading, so that senders wait (unreliable ones ignore it). */
  pause(): void;
  resume(): void;
  /** Restricts the socket to one peer (the OS discards datagrams from others). */
  connect(to: A): Promise<void>;
  /** Sends one datagram, to the connected peer when `to` is undefined. Returns undefined when sent at once. */
  send(data: Uint8Array, to: A | undefined, signal?: AbortSignal): Promise<void> | undefined;
  /** Closes the socket (and removes a socket file it created). */
  close(): Promise<void>;
  /** Whether two addresses are the same. */
  same(a: A, b: A): boolean;
  /** An address for messages. */
  format(a: A): string;
}
