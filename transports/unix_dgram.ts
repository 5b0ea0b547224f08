/**
 * Unix datagram sockets (AF_UNIX, SOCK_DGRAM): message boundaries kept by the kernel, no connection, and on Linux
 * reliable and ordered: a sender waits while the receiver's queue is full instead of losing datagrams. No runtime
 * exposes them (Deno's `unixpacket` is unstable, Node and Bun have none), so ipckit reaches them through libc.
 *
 * - `unixDgram.bind(path)`: a socket bound at `path` that sends to any socket path and receives from anyone.
 * - `unixDgram.connect(path)`: a {@linkcode Channel} to the socket at `path`. It binds itself to an autobound
 *   abstract address (Linux picks a unique name like `@00012`), so the peer can answer.
 * - `socket.connect(peer)`: turns a bound socket into a Channel to `peer`.
 *
 * Addresses are socket file paths; a name starting with `@` is in Linux's abstract namespace (no file, gone with the
 * socket). Payloads travel as they are, so Python's `socket.AF_UNIX, socket.SOCK_DGRAM` or any C program is a peer.
 *
 * Sizes: a datagram may hold up to the sender's send buffer minus 32 bytes: 212 960 bytes with Linux's default
 * `net.core.wmem_default`; `sendBuffer` raises it up to `net.core.wmem_max`. A process sending to an unbound or
 * vanished path gets `NotFoundError`.
 *
 * The socket itself (libc calls, waiting in the thread's one shared `poll(2)`, bind with a race-free mode) is the OS
 * object `os/unix_dgram_socket.ts` (made by `os/unix_dgram_open.ts`); this file is the adapter over it.
 *
 * @example
 * ```ts
 * import { runtime, unixDgram } from "ipckit";
 * const path = `/tmp/ipckit-app-${(await runtime()).pid}.dgram`;
 * await using server = await unixDgram.bind(path);
 * await using client = await unixDgram.connect(path);
 * await client.send(new TextEncoder().encode("ping"));
 * const { data, from } = await server.receive();
 * await server.send(data, from); // `from` is the client's autobound "@xxxxx" address
 * console.log(new TextDecoder().decode(await client.receive())); // "ping"
 * ```
 *
 * @module
 */
import { OVERHEAD, sockaddr } from "../os/unix_dgram_socket.ts";
import { openSocket } from "../os/unix_dgram_open.ts";
import type { Capabilities } from "./channel.ts";
import { type DatagramChannel, type DatagramOptions, DatagramSocket } from "./datagram.ts";

/**
 * What a Unix datagram channel promises (the size is Linux's default; see the module doc).
 *
 * @example
 * ```ts
 * import { unixDgram } from "ipckit";
 * console.log(unixDgram.capabilities.datagram, unixDgram.capabilities.reliable); // true true (on Linux)
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: 212_992 - OVERHEAD,
  crossHost: false,
  datagram: true,
};

/** Options of {@linkcode bind} and {@linkcode connect}. */
export interface UnixDgramOptions extends DatagramOptions {
  /** SO_SNDBUF in bytes: the largest datagram this socket can send is the result minus 32 (Linux doubles it). */
  sendBuffer?: number;
  /**
   * Permission bits of the socket file a path-bound socket creates: who may send to it. 0o600 (only this user) by
   * default; the file never exists with other bits, whatever the umask. Abstract (`@name`) addresses have no file.
   */
  mode?: number;
}

/** Options of {@linkcode connect}. */
export interface UnixDgramConnectOptions extends UnixDgramOptions {
  /** A path (or `@name`) to bind this end to, instead of an autobound abstract name. */
  bind?: string;
}

/**
 * Binds a Unix datagram socket at `path` (a file the socket creates and `close()` removes; `@name` is abstract).
 *
 * @throws {AlreadyExistsError} when something exists at `path`; `NotFoundError` when its directory does not.
 *
 * @example
 * ```ts
 * import { runtime, unixDgram } from "ipckit";
 * const pid = (await runtime()).pid;
 * await using collector = await unixDgram.bind(`@ipckit-metrics-${pid}`); // abstract: no file to remove
 * await using reporter = await unixDgram.connect(collector.address); // any number of them, from any process
 * await reporter.send(new TextEncoder().encode("cpu 12"));
 * await reporter.send(new TextEncoder().encode("mem 34"));
 * for (let i = 0; i < 2; i++) {
 *   const { data, from } = await collector.receive({ timeout: 1000 });
 *   console.log(new TextDecoder().decode(data), from === reporter.address); // "cpu 12" true, then "mem 34" true
 * }
 * ```
 */
export async function bind(path: string, options: UnixDgramOptions = {}): Promise<DatagramSocket<string>> {
  if (path === "") throw new TypeError("Cannot bind a Unix datagram socket: the path is empty");
  const endpoint = await openSocket(path, options, `bind Unix datagram socket "${path}"`);
  try {
    return new DatagramSocket(endpoint, options);
  } catch (e) {
    await endpoint.close();
    throw e;
  }
}

/**
 * A Channel to the Unix datagram socket at `path`. This end autobinds an abstract address unless `options.bind`
 * names one. Nothing is sent to connect: the peer learns of this channel from its first datagram.
 *
 * @throws {NotFoundError} when no socket is bound at `path`.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, unixDgram } from "ipckit";
 * const path = `/tmp/ipckit-echo-${(await runtime()).pid}.dgram`;
 * try {
 *   await unixDgram.connect(path);
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true: no socket is bound there
 * }
 * await using server = await unixDgram.bind(path);
 * await using client = await unixDgram.connect(path); // a Channel to one peer
 * await client.send(new Uint8Array([1, 2]));
 * const first = await server.receive({ timeout: 1000 });
 * await using reply = await server.connect(first.from); // the server's Channel back to this client
 * await reply.send(first.data);
 * console.log(await client.receive({ timeout: 1000 })); // Uint8Array [1, 2]
 * ```
 */
export async function connect(path: string, options: UnixDgramConnectOptions = {}): Promise<DatagramChannel<string>> {
  const what = `connect a Unix datagram channel to "${path}"`;
  sockaddr(path, what);
  const endpoint = await openSocket(options.bind ?? "", options, what);
  try {
    return await new DatagramSocket(endpoint, options).connect(path, options);
  } catch (e) {
    await endpoint.close();
    throw e;
  }
}
