/**
 * A small HTTP/1.1 server for ipckit's own services (the web monitor, `ipckit monitor --web`), and where a file of an
 * installed npm package is. Both are `node:` modules that Node, Deno and Bun run alike (`node:http` and
 * `node:module`'s `createRequire`, checked on Node 20, Deno 2.9.6 and Bun 1.4.5), so every runtime uses them; the
 * one command that serves loads this module when it runs.
 *
 * A handler answers with a whole body, or with a stream of text for Server-Sent Events that it writes as it likes:
 * a slow reader is not buffered for without bound (a write says when the reader's buffer is full).
 *
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo, Socket } from "node:net";
import { mapNodeError } from "./node_api.ts";

/** A request, as a handler sees it. */
export interface HttpRequest {
  /** `GET`, `POST`... */
  readonly method: string;
  /** The path and query as sent (`/api/stats?x=1`). */
  readonly url: string;
  /** The headers, names in lower case (a header sent twice: its values joined by `, `). */
  readonly headers: Readonly<Record<string, string | undefined>>;
}

/** A whole answer. */
export interface HttpAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
}

/** An answer that goes on: text written as it comes (Server-Sent Events), until either side ends it. */
export interface HttpStream {
  status: number;
  headers?: Record<string, string>;
  /** Called once the head is sent; the stream is the handler's to write and end. */
  start(stream: TextStream): void;
}

/** The open end of an {@linkcode HttpStream}. */
export interface TextStream {
  /**
   * Sends `text`. Returns false when the reader's buffer is full (the text is kept, but the caller should send
   * nothing more until {@linkcode TextStream.ready} is true again).
   */
  write(text: string): boolean;
  /** False while the reader has not taken what was written (and after the end). */
  readonly ready: boolean;
  /** Ends the answer. Idempotent. */
  end(): void;
  /** Called once when the answer ended, by `end()`, by the reader going away, or by the server closing. */
  onEnd(fn: () => void): void;
}

/** A listening HTTP server. */
export interface HttpServer {
  /** The bound port (the one the OS picked for port 0). */
  readonly port: number;
  /** Stops listening, ends every open stream and connection, and resolves once the server is closed. */
  close(): Promise<void>;
}

/** What a handler returns for a request. */
export type HttpHandler = (request: HttpRequest) => Promise<HttpAnswer | HttpStream>;

/**
 * Listens for HTTP on `hostname`:`port` (port 0 picks a free one). A handler that throws answers 500, with no detail.
 *
 * @throws {AlreadyExistsError} when the port is taken; the `node:` error for an address that is not this machine's.
 */
export function listenHttp(options: { hostname: string; port: number }, handler: HttpHandler): Promise<HttpServer> {
  const sockets = new Set<Socket>();
  const streams = new Set<TextStream>();
  const server = createServer((req, res) => void answer(req, res, handler, streams));
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e) => reject(mapNodeError(e, `Cannot listen on ${options.hostname}:${options.port}`)));
    server.listen({ host: options.hostname, port: options.port }, () => {
      let closing: Promise<void> | undefined;
      resolve({
        port: (server.address() as AddressInfo).port,
        close: () =>
          closing ??= new Promise<void>((done) => {
            server.close(() => done());
            for (const s of [...streams]) s.end();
            // Idle keep-alive connections (and any a stream left) would hold close() up.
            for (const s of sockets) s.destroy();
          }),
      });
    });
  });
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  handler: HttpHandler,
  streams: Set<TextStream>,
): Promise<void> {
  const headers: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  let reply: HttpAnswer | HttpStream;
  try {
    reply = await handler({ method: req.method ?? "GET", url: req.url ?? "/", headers });
  } catch {
    reply = { status: 500, headers: { "content-type": "text/plain; charset=utf-8" }, body: "internal error\n" };
  }
  req.resume(); // a body nobody reads is drained, not left in the socket
  if (!("start" in reply)) {
    const body = typeof reply.body === "string" ? new TextEncoder().encode(reply.body) : reply.body;
    res.writeHead(reply.status, { ...reply.headers, "content-length": String(body?.byteLength ?? 0) });
    res.end(body);
    return;
  }
  res.writeHead(reply.status, reply.headers);
  res.flushHeaders();
  const ends: (() => void)[] = [];
  let ended = false;
  let ready = true;
  const stream: TextStream = {
    write(text) {
      if (ended) return false;
      ready = res.write(text);
      return ready;
    },
    get ready() {
      return ready && !ended;
    },
    end() {
      if (ended) return;
      ended = true;
      streams.delete(stream);
      res.end();
      for (const fn of ends.splice(0)) fn();
    },
    onEnd(fn) {
      if (ended) fn();
      else ends.push(fn);
    },
  };
  streams.add(stream);
  res.on("drain", () => (ready = true));
  res.on("close", () => stream.end());
  reply.start(stream);
}

/**
 * The path of a file in an installed npm package (`"uplot/dist/uPlot.iife.min.js"`), found by Node's module
 * resolution from the module `base` (an `import.meta.url`): the same copy an import there would load.
 *
 * @throws {Error} (`MODULE_NOT_FOUND`) when the package, or that file of it, is not installed there.
 */
export function packageFile(specifier: string, base: string | URL): string {
  return createRequire(base).resolve(specifier);
}
