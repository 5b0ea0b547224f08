/**
 * UDP: datagrams between processes on one host or across hosts, with no delivery guarantee.
 *
 * - `udp.bind({ port, host })`: a socket that sends to any address and receives from anyone.
 * - `udp.connect({ port, host })`: a {@linkcode Channel} to one peer (binds an ephemeral port of its own).
 * - `socket.connect(peer)`: turns a bound socket into a Channel to `peer` (the server side of a two-way exchange).
 *
 * Payloads travel as they are (no framing), so any UDP program is a peer. UDP may lose, duplicate (rarely) and
 * reorder datagrams: the channel's capabilities say `reliable: false, ordered: false`. A datagram carries at most
 * 65 507 bytes over IPv4 (65 527 over IPv6); larger sends reject with `MessageTooLargeError`. Loopback rarely loses
 * anything until the receiver's buffer is full.
 *
 * @example
 * ```ts
 * import { udp } from "ipckit";
 * await using server = await udp.bind({ port: 0 });
 * await using client = await udp.connect(server.address);
 * await client.send(new TextEncoder().encode("ping"));
 * const { data, from } = await server.receive({ timeout: 1000 });
 * await server.send(data, from);
 * console.log(new TextDecoder().decode(await client.receive({ timeout: 1000 }))); // "ping" again
 * ```
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import type { UdpAddress, UdpHandle } from "../runtimes/runtime.ts";
import { MessageTooLargeError, NotFoundError } from "../errors.ts";
import type { Capabilities } from "./channel.ts";
import {
  type DatagramChannel,
  type DatagramEndpoint,
  type DatagramOptions,
  type DatagramSink,
  DatagramSocket,
} from "./datagram.ts";

export type { UdpAddress } from "../runtimes/runtime.ts";

/**
 * The largest UDP payload over IPv4 (65 535 - 8 bytes of UDP header - 20 of IPv4 header).
 *
 * @example
 * ```ts
 * import { MessageTooLargeError, udp } from "ipckit";
 * await using socket = await udp.bind({ port: 0 });
 * try {
 *   await socket.send(new Uint8Array(udp.MAX_DATAGRAM_IPV4 + 1), socket.address);
 * } catch (e) {
 *   console.log(e instanceof MessageTooLargeError); // true
 * }
 * ```
 */
export const MAX_DATAGRAM_IPV4 = 65_507;
/**
 * The largest UDP payload over IPv6 (65 535 - 8 bytes of UDP header).
 *
 * @example
 * ```ts
 * import { udp } from "ipckit";
 * console.log(udp.MAX_DATAGRAM_IPV6 - udp.MAX_DATAGRAM_IPV4); // 20: IPv6 has no 20-byte IPv4 header
 * ```
 */
export const MAX_DATAGRAM_IPV6 = 65_527;

/**
 * What a UDP channel promises (over IPv4).
 *
 * @example
 * ```ts
 * import { udp } from "ipckit";
 * console.log(udp.capabilities.reliable, udp.capabilities.ordered); // false false: check what arrives
 * ```
 */
export const capabilities: Capabilities = {
  ordered: false,
  reliable: false,
  maxMessage: MAX_DATAGRAM_IPV4,
  crossHost: true,
  datagram: true,
};

/** Options of {@linkcode bind}. */
export interface BindOptions extends DatagramOptions {
  /** The local port; 0 (the default) lets the OS pick one (see `socket.address`). */
  port?: number;
  /** The local address; `"127.0.0.1"` by default. `"0.0.0.0"` or `"::"` listen on every interface. */
  host?: string;
  /** Lets several sockets bind the same address (SO_REUSEADDR). */
  reuseAddress?: boolean;
}

/** Options of {@linkcode connect}. */
export interface ConnectOptions extends DatagramOptions {
  /** The local address to bind first; by default an ephemeral port on the loopback (for a loopback peer) or on every interface. */
  bind?: { port?: number; host?: string };
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function isIpv6(host: string): boolean {
  return host.includes(":");
}

function checkAddress(a: { port?: unknown; host?: unknown }, what: string, portRequired: boolean): UdpAddress {
  const port = a.port ?? (portRequired ? undefined : 0);
  if (!Number.isInteger(port) || (port as number) < (portRequired ? 1 : 0) || (port as number) > 65535) {
    throw new RangeError(
      `Cannot ${what}: port ${String(port)} must be an integer from ${portRequired ? 1 : 0} to 65535`,
    );
  }
  const host = a.host ?? "127.0.0.1";
  if (typeof host !== "string" || !(IPV4.test(host) || isIpv6(host) || host === "localhost")) {
    throw new TypeError(`Cannot ${what}: host ${JSON.stringify(host)} must be an IPv4 or IPv6 address`);
  }
  return { host: host === "localhost" ? "127.0.0.1" : host, port: port as number };
}

function format(a: UdpAddress): string {
  return isIpv6(a.host) ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

function mapSendError(e: unknown, to: string, description: string): unknown {
  const code = (e as { code?: unknown })?.code;
  if (code === "EMSGSIZE") {
    return new MessageTooLargeError(
      `Cannot send on ${description}: the datagram is larger than the network allows`,
      -1,
      -1,
      {
        code,
        cause: e,
      },
    );
  }
  if (code === "ECONNREFUSED") {
    return new NotFoundError(`Cannot send on ${description}: nothing listens at ${to} (ICMP port unreachable)`, {
      code,
      cause: e,
    });
  }
  return e;
}

/** The UDP endpoint over the runtime's socket. */
class UdpEndpoint implements DatagramEndpoint<UdpAddress> {
  readonly description: string;
  readonly reliable = false;
  readonly crossHost = true;
  readonly limit: number;
  #handle: UdpHandle;
  #sink: DatagramSink<UdpAddress> | undefined;
  #max = 0;
  #peer: UdpAddress | undefined;
  #closed: Promise<void> | undefined;

  constructor(handle: UdpHandle) {
    this.#handle = handle;
    this.description = `UDP socket ${format(handle.address)}`;
    this.limit = isIpv6(handle.address.host) ? MAX_DATAGRAM_IPV6 : MAX_DATAGRAM_IPV4;
    handle.start(
      (data, from) => {
        // Deno's node:dgram does not filter a connected socket's arrivals in the kernel: filter here.
        const peer = this.#peer;
        if (peer !== undefined && (from.port !== peer.port || from.host !== peer.host)) return;
        if (data.byteLength > this.#max) this.#sink?.tooLarge(data.byteLength, from);
        else this.#sink?.data(data, from);
      },
      (e) => this.#sink?.error(e),
    );
  }

  get address(): UdpAddress {
    return this.#handle.address;
  }

  start(sink: DatagramSink<UdpAddress>, limit: number): void {
    this.#sink = sink;
    this.#max = limit;
  }

  pause(): void {}
  resume(): void {}

  async connect(to: UdpAddress): Promise<void> {
    const peer = checkAddress(to, `connect ${this.description}`, true);
    await this.#handle.connect(peer);
    this.#peer = peer;
  }

  send(data: Uint8Array, to: UdpAddress | undefined): Promise<void> {
    const dest = to === undefined ? undefined : checkAddress(to, `send on ${this.description}`, true);
    const where = format(dest ?? this.#peer ?? this.#handle.address);
    return this.#handle.send(data, dest).catch((e) => {
      throw mapSendError(e, where, this.description);
    });
  }

  close(): Promise<void> {
    this.#sink = undefined;
    this.#handle.close();
    return (this.#closed ??= Promise.resolve());
  }

  same(a: UdpAddress, b: UdpAddress): boolean {
    return a.port === b.port && a.host === b.host;
  }

  format(a: UdpAddress): string {
    return format(a);
  }
}

/**
 * Binds a UDP socket.
 *
 * @throws {AlreadyExistsError} when the address is in use; `PermissionError` for a privileged port.
 *
 * @example
 * ```ts
 * import { udp } from "ipckit";
 * await using server = await udp.bind({ port: 0, host: "127.0.0.1" }); // port 0: the OS picks one
 * console.log(server.address.port > 0); // true
 * await using client = await udp.bind({ port: 0 });
 * await client.send(new TextEncoder().encode("hello"), server.address);
 * const { data, from } = await server.receive({ timeout: 1000 });
 * console.log(new TextDecoder().decode(data), from.port === client.address.port); // "hello" true
 * ```
 */
export async function bind(options: BindOptions = {}): Promise<DatagramSocket<UdpAddress>> {
  const a = checkAddress(options, "bind a UDP socket", false);
  const rt = await runtime();
  const handle = await rt.bindUdp({ ...a, ipv6: isIpv6(a.host), reuseAddress: options.reuseAddress ?? false });
  const endpoint = new UdpEndpoint(handle);
  try {
    return new DatagramSocket(endpoint, options);
  } catch (e) {
    await endpoint.close();
    throw e;
  }
}

/**
 * A Channel to the UDP socket at `peer`, from an ephemeral local port (or `options.bind`). Nothing is sent to
 * connect: the peer learns of this channel from its first datagram.
 *
 * @example
 * ```ts
 * import { udp } from "ipckit";
 * await using server = await udp.bind({ port: 0 });
 * await using client = await udp.connect({ port: server.address.port }); // a Channel to that one peer
 * await client.send(new Uint8Array([42]));
 * const { data } = await server.receive({ timeout: 1000 });
 * console.log(data); // Uint8Array [42]
 * ```
 */
export async function connect(peer: { port: number; host?: string }, options: ConnectOptions = {}): Promise<
  DatagramChannel<UdpAddress>
> {
  const to = checkAddress(peer, "connect a UDP channel", true);
  const loopback = to.host.startsWith("127.") || to.host === "::1";
  const local = options.bind ??
    { port: 0, host: isIpv6(to.host) ? (loopback ? "::1" : "::") : (loopback ? "127.0.0.1" : "0.0.0.0") };
  const socket = await bind({ ...local });
  try {
    return await socket.connect(to, options);
  } catch (e) {
    await socket.close();
    throw e;
  }
}
