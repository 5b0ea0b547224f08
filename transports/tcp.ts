/**
 * TCP sockets with ipckit's framing (Nagle's algorithm off). Use `hostname: "127.0.0.1"` (the default) for
 * loopback-only services.
 *
 * @example
 * ```ts
 * import { tcp } from "ipckit";
 * await using server = await tcp.listen({ port: 0 });
 * const client = await tcp.connect({ port: server.port });
 * const peer = await server.accept();
 * await client.send(new Uint8Array([1, 2, 3]));
 * console.log(await peer.receive()); // Uint8Array [1, 2, 3]
 * await client.close();
 * await peer.close();
 * ```
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import type { ByteStream } from "../runtimes/runtime.ts";
import type { Capabilities, Channel, Listener } from "./channel.ts";
import { StreamListener } from "./listener.ts";
import { checkFraming, StreamChannel, type StreamChannelOptions } from "./stream_channel.ts";
import { MAX_FRAME } from "./framing.ts";

/**
 * What a TCP channel promises.
 *
 * @example
 * ```ts
 * import { tcp } from "ipckit";
 * console.log(tcp.capabilities.crossHost); // true
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_FRAME,
  crossHost: true,
  datagram: false,
};

/** Where to listen or connect. */
export interface TcpAddress extends StreamChannelOptions {
  /** Port; 0 lets `listen` pick a free one. */
  port: number;
  /** Host name or address; `"127.0.0.1"` by default. */
  hostname?: string;
}

/** A TCP listener; `port` is the bound port. */
export interface TcpListener extends Listener {
  readonly port: number;
}

function checkPort(port: unknown, allowZero: boolean): number {
  if (!Number.isInteger(port) || (port as number) < (allowZero ? 0 : 1) || (port as number) > 65535) {
    throw new RangeError(
      `Cannot use TCP port ${String(port)}: it must be an integer from ${allowZero ? 0 : 1} to 65535`,
    );
  }
  return port as number;
}

function wrap(stream: ByteStream, where: string, options: StreamChannelOptions): Channel {
  return new StreamChannel(stream, `TCP ${where}`, capabilities, options);
}

/**
 * Listens on TCP.
 *
 * @returns A Listener with the bound `port`.
 * @throws {AlreadyExistsError} when the port is in use.
 *
 * @example
 * ```ts
 * import { tcp } from "ipckit";
 * await using server = await tcp.listen({ port: 0 }); // 127.0.0.1 and a free port
 * console.log(server.port > 0); // true: the port the OS picked
 * await using client = await tcp.connect({ port: server.port });
 * await using peer = await server.accept();
 * await peer.send(new TextEncoder().encode("welcome"));
 * console.log(new TextDecoder().decode(await client.receive())); // "welcome"
 * ```
 */
export async function listen(address: TcpAddress): Promise<TcpListener> {
  const port = checkPort(address?.port, true);
  checkFraming(address, "a TCP listener");
  const hostname = address.hostname ?? "127.0.0.1";
  const rt = await runtime();
  const listener: StreamListener = new StreamListener({
    description: `TCP listener ${hostname}:${port}`,
    wrap: (s): Channel => wrap(s, `connection on ${hostname}:${listener.port}`, address),
  });
  listener.attach(await rt.listenTcp({ port, hostname }, listener.onConnection));
  return listener;
}

/**
 * Connects over TCP.
 *
 * @throws {NotFoundError} when the connection is refused.
 *
 * @example
 * ```ts
 * import { tcp, typed } from "ipckit";
 * await using server = await tcp.listen({ port: 0, hostname: "127.0.0.1" });
 * const client = typed<{ n: number }>(await tcp.connect({ port: server.port, hostname: "127.0.0.1" }));
 * const peer = typed<{ n: number }>(await server.accept());
 * await client.send({ n: 41 });
 * await peer.send({ n: (await peer.receive()).n + 1 });
 * console.log(await client.receive()); // { n: 42 }
 * await client.close();
 * await peer.close();
 * ```
 */
export async function connect(address: TcpAddress): Promise<Channel> {
  const port = checkPort(address?.port, false);
  checkFraming(address, "a TCP connection");
  const hostname = address.hostname ?? "127.0.0.1";
  const rt = await runtime();
  return wrap(await rt.connectTcp({ port, hostname }), `${hostname}:${port}`, address);
}
