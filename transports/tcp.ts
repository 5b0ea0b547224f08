/**
 * TCP sockets with ipckit's framing (Nagle's algorithm off). Use `hostname: "127.0.0.1"` (the default) for
 * loopback-only services.
 *
 * Across hosts, protect the connection: `tls: { cert, key }` on `listen` and `tls: { ca }` on `connect` encrypt it
 * and prove the server's identity (each runtime's own TLS; `requestCert` with `ca` also requires a client
 * certificate), and `auth: { secret }` on both makes each side prove it knows a shared secret before the Channel is
 * returned (`transports/auth.ts`). A listener on an address other hosts can reach (anything but 127.0.0.0/8, ::1 and
 * localhost) refuses to start without one of them unless you pass `insecure: true`.
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
import type { ByteStream, TlsClientOptions, TlsServerOptions } from "../runtimes/runtime.ts";
import { authenticateStream, checkHandshakeTimeout, prepareAuth } from "./auth.ts";
import { type Capabilities, type Channel, type Listener, reliableCapabilities } from "./channel.ts";
import { checkOnReject, HandshakeGate, type SecureConnectOptions, type SecureListenOptions } from "./handshakes.ts";
import { StreamListener } from "./listener.ts";
import { checkFraming, StreamChannel, type StreamChannelOptions } from "./stream_channel.ts";

export type { TlsClientOptions, TlsServerOptions };

/**
 * What a TCP channel promises.
 *
 * @example
 * ```ts
 * import { tcp } from "ipckit";
 * console.log(tcp.capabilities.crossHost); // true
 * ```
 */
export const capabilities: Capabilities = reliableCapabilities(true);

/** Where to listen or connect. */
export interface TcpAddress extends StreamChannelOptions {
  /** Port; 0 lets `listen` pick a free one. */
  port: number;
  /** Host name or address; `"127.0.0.1"` by default. */
  hostname?: string;
}

/** Options of {@linkcode listen}. */
export interface TcpListenOptions extends TcpAddress, SecureListenOptions {
  /** Serve TLS with this certificate and key (PEM); with `requestCert`, also require client certificates. */
  tls?: TlsServerOptions;
  /**
   * Allow listening on an address other hosts can reach without `tls` or `auth`: anyone who reaches it can
   * connect and send. False by default, and then such a listener refuses to start.
   */
  insecure?: boolean;
}

/** Options of {@linkcode connect}. */
export interface TcpConnectOptions extends TcpAddress, SecureConnectOptions {
  /** Speak TLS, and verify the server's certificate against `ca` (or the system's roots). */
  tls?: TlsClientOptions;
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

/** Whether only this host can reach `hostname`: 127.0.0.0/8, ::1 (also IPv4-mapped) and localhost. */
function isLoopback(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/^\[(.*)\]$/, "$1");
  if (h === "localhost" || h === "localhost." || h === "::1" || /^(0{1,4}:){7}0{0,3}1$/.test(h)) return true;
  const m = /^(?:::ffff:)?127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(h);
  return m !== null && m.slice(1).every((octet) => Number(octet) <= 255);
}

const pem = (v: unknown) => typeof v === "string" && v.length > 0;
const pems = (v: unknown) => v === undefined || pem(v) || Array.isArray(v) && v.length > 0 && v.every(pem);

function checkTlsServer(tls: unknown, what: string): TlsServerOptions {
  const t = tls as TlsServerOptions;
  if (typeof t !== "object" || t === null || !pem(t.cert) || !pem(t.key)) {
    throw new TypeError(`Cannot ${what}: tls must have cert and key as PEM text`);
  }
  if (!pems(t.ca)) throw new TypeError(`Cannot ${what}: tls.ca must be PEM text or an array of it`);
  if (t.requestCert !== undefined && typeof t.requestCert !== "boolean") {
    throw new TypeError(`Cannot ${what}: tls.requestCert must be a boolean`);
  }
  return t;
}

function checkTlsClient(tls: unknown, what: string): TlsClientOptions {
  const t = tls as TlsClientOptions;
  if (typeof t !== "object" || t === null) throw new TypeError(`Cannot ${what}: tls must be an object`);
  if (!pems(t.ca)) throw new TypeError(`Cannot ${what}: tls.ca must be PEM text or an array of it`);
  if ((t.cert === undefined) !== (t.key === undefined) || t.cert !== undefined && !(pem(t.cert) && pem(t.key))) {
    throw new TypeError(`Cannot ${what}: tls.cert and tls.key go together, as PEM text`);
  }
  if (t.servername !== undefined && !pem(t.servername)) {
    throw new TypeError(`Cannot ${what}: tls.servername must be a non-empty string`);
  }
  return t;
}

/**
 * Listens on TCP. With `tls` and/or `auth`, `accept()` returns only connections whose handshakes succeeded;
 * the others are closed and reported to `onReject`, and the listener goes on.
 *
 * @returns A Listener with the bound `port`.
 * @throws {AlreadyExistsError} when the port is in use.
 * @throws {TypeError} when `hostname` is reachable from other hosts and neither `tls`, `auth` nor `insecure: true`
 * is given; for malformed `tls` or `auth` options.
 * @throws {RangeError} for a bad port, limit or timeout, or an auth secret under 16 bytes.
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
 *
 * @example Only peers that know the secret get through
 * ```ts
 * import { PermissionError, tcp } from "ipckit";
 * const secret = "a shared secret of 16+ bytes";
 * await using server = await tcp.listen({ port: 0, auth: { secret }, onReject: (e) => console.log(e.name) });
 * await using client = await tcp.connect({ port: server.port, auth: { secret } });
 * await using peer = await server.accept(); // authenticated
 * await client.send(new TextEncoder().encode("hi"));
 * console.log(new TextDecoder().decode(await peer.receive())); // "hi"
 * try {
 *   await tcp.connect({ port: server.port, auth: { secret: "not the shared secret!" } });
 * } catch (e) {
 *   console.log(e instanceof PermissionError); // true (and the server logs "PermissionError")
 * }
 * ```
 */
export async function listen(options: TcpListenOptions): Promise<TcpListener> {
  const port = checkPort(options?.port, true);
  checkFraming(options, "a TCP listener");
  const hostname = options.hostname ?? "127.0.0.1";
  const what = `listen on TCP ${hostname}:${port}`;
  const tls = options.tls === undefined ? undefined : checkTlsServer(options.tls, what);
  const timeout = checkHandshakeTimeout(options.handshakeTimeout, what);
  const onReject = checkOnReject(options.onReject, what);
  if (options.insecure !== undefined && typeof options.insecure !== "boolean") {
    throw new TypeError(`Cannot ${what}: insecure must be a boolean`);
  }
  if (!tls && options.auth === undefined && options.insecure !== true && !isLoopback(hostname)) {
    throw new TypeError(
      `Cannot ${what}: other hosts can reach this address, and without tls or auth anyone who does can connect; ` +
        `pass tls or auth, or insecure: true to accept unauthenticated connections`,
    );
  }
  const auth = options.auth === undefined ? undefined : await prepareAuth(options.auth, what);
  const rt = await runtime();
  let gate: HandshakeGate | undefined;
  const listener: StreamListener = new StreamListener({
    description: `TCP listener ${hostname}:${port}`,
    wrap: (s): Channel => wrap(s, `connection on ${hostname}:${listener.port}`, options),
    afterClose: () => Promise.resolve(gate?.close()),
  }, options);
  if (auth) {
    const accepting = () => `accept a connection on TCP ${hostname}:${listener.port}`;
    gate = new HandshakeGate(auth, timeout, accepting, listener.onConnection, onReject);
  }
  const server = await rt.listenTcp(
    {
      port,
      hostname,
      ...(tls ? { tls, handshakeTimeout: timeout } : {}),
      ...(onReject ? { onReject } : {}),
    },
    gate?.onConnection ?? listener.onConnection,
  );
  listener.attach(server);
  return listener;
}

/**
 * Connects over TCP; with `tls` and/or `auth`, resolves once the handshakes succeeded.
 *
 * @throws {NotFoundError} when the connection is refused.
 * @throws {PermissionError} when the server's TLS certificate is not trusted, or the auth handshake failed (the
 * server refused the secret, or did not prove it knows it).
 * @throws {TimeoutError} when a handshake takes longer than `handshakeTimeout`.
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
export async function connect(options: TcpConnectOptions): Promise<Channel> {
  const port = checkPort(options?.port, false);
  checkFraming(options, "a TCP connection");
  const hostname = options.hostname ?? "127.0.0.1";
  const what = `connect to TCP ${hostname}:${port}`;
  const tls = options.tls === undefined ? undefined : checkTlsClient(options.tls, what);
  const timeout = checkHandshakeTimeout(options.handshakeTimeout, what);
  const auth = options.auth === undefined ? undefined : await prepareAuth(options.auth, what);
  const rt = await runtime();
  let stream = await rt.connectTcp({ port, hostname, ...(tls ? { tls, handshakeTimeout: timeout } : {}) });
  if (auth) stream = await authenticateStream(stream, auth, "client", timeout, what);
  return wrap(stream, `${hostname}:${port}`, options);
}
