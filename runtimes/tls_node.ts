/**
 * TLS over TCP with `node:tls`, for Node and Deno. Deno's `node:tls` beat `Deno.connectTls` here (pinned 8-byte
 * round trip, unframed: 66-70 vs 82 us), and `Deno.listenTls` cannot ask clients for a certificate; Bun has its own
 * (runtimes/bun_net.ts). Loaded only when a listener or connection asks for TLS.
 *
 * A listener hands a connection over only once its handshake succeeded: a client that sends no certificate (with
 * `requestCert`), an untrusted one, or none of the handshake within `handshakeTimeout` is closed and reported to
 * `onReject`. At most {@linkcode MAX_PENDING_HANDSHAKES} handshakes run at once; further connections are closed.
 *
 * @module
 */
import type { Socket } from "node:net";
import * as tls from "node:tls";
import { mapNodeError } from "./node_api.ts";
import { socketStream } from "./streams.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT, MAX_PENDING_HANDSHAKES, tlsClientError, tlsServerError } from "./tls_errors.ts";
import type { ByteStream, ConnectTcpOptions, ListenTcpOptions, Server, TlsServerOptions } from "./runtime.ts";
import { ClosedError, TimeoutError } from "../errors.ts";

/** Listens on TCP with TLS. */
export function listenTls(
  options: ListenTcpOptions & { tls: TlsServerOptions },
  onConnection: (stream: ByteStream) => void,
): Promise<Server> {
  const { port, hostname, onReject } = options;
  const timeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
  const requestCert = options.tls.requestCert === true;
  return new Promise((resolve, reject) => {
    const server = tls.createServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
      requestCert,
      rejectUnauthorized: true,
      handshakeTimeout: timeout,
      allowHalfOpen: true,
    }, (sock) => {
      pending.delete(key(sock));
      sock.setNoDelay(true);
      onConnection(socketStream(sock));
    });
    // Named with the bound port, once known (port 0 picks one).
    const what = () => {
      const bound = (server.address() as { port?: number } | null)?.port ?? port;
      return `Cannot accept a TLS connection on TCP ${hostname}:${bound}`;
    };
    // Connections still in their handshake, by remote address: the raw socket and the TLS one share it.
    const pending = new Set<string>();
    const key = (s: Socket) => `${s.remoteAddress}|${s.remotePort}`;
    server.on("connection", (raw: Socket) => {
      if (pending.size >= MAX_PENDING_HANDSHAKES) {
        raw.destroy();
        onReject?.(new ClosedError(`${what()}: ${MAX_PENDING_HANDSHAKES} handshakes are pending already`));
        return;
      }
      const k = key(raw);
      pending.add(k);
      raw.once("close", () => pending.delete(k));
    });
    server.on("tlsClientError", (e: Error, sock: tls.TLSSocket) => {
      sock?.destroy(); // not done for us: a connection that timed out would stay open
      onReject?.(tlsServerError(e, what(), sock?.authorizationError, timeout));
    });
    server.once("error", (e) => reject(mapNodeError(e, `Cannot listen on TCP ${hostname}:${port}`)));
    server.listen({ port, host: hostname }, () => {
      const addr = server.address();
      resolve({
        port: typeof addr === "object" && addr !== null ? addr.port : 0,
        close() {
          server.close();
          return Promise.resolve();
        },
      });
    });
  });
}

/** A ByteStream whose end-of-stream error says what a TLS alert from the server meant. */
function explained(stream: ByteStream, what: string): ByteStream {
  return {
    ...stream,
    ownsChunks: stream.ownsChunks,
    start(sink) {
      stream.start({
        data: (chunk) => sink.data(chunk),
        end: (e) => sink.end(e === undefined ? e : tlsClientError(e, what) as Error),
      });
    },
  };
}

/** Connects over TCP with TLS; resolves once the handshake succeeded (the server's certificate was verified). */
export function connectTls(options: ConnectTcpOptions & { tls: NonNullable<ConnectTcpOptions["tls"]> }): Promise<
  ByteStream
> {
  const { port, hostname } = options;
  const what = `Cannot connect over TLS to TCP ${hostname}:${port}`;
  const t = options.tls;
  return new Promise((resolve, reject) => {
    // The certificate must name `servername`, or the host connected to (an IP address: its IP names).
    // allowHalfOpen (the peer's end does not end this side) is honoured, though Deno's typings leave it out.
    const connectOptions = {
      port,
      host: hostname,
      ...(t.servername === undefined ? {} : { servername: t.servername }),
      ...(t.ca === undefined ? {} : { ca: t.ca }),
      ...(t.cert === undefined ? {} : { cert: t.cert }),
      ...(t.key === undefined ? {} : { key: t.key }),
      rejectUnauthorized: true,
      allowHalfOpen: true,
    };
    const sock = tls.connect(connectOptions as tls.ConnectionOptions);
    const timeout = options.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new TimeoutError(`${what}: no TLS handshake within ${timeout} ms`));
    }, timeout);
    const onError = (e: Error) => {
      clearTimeout(timer);
      reject(tlsClientError(mapNodeError(e, what), what, true));
    };
    sock.once("error", onError);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      sock.off("error", onError);
      sock.setNoDelay(true);
      resolve(explained(socketStream(sock), what));
    });
  });
}
