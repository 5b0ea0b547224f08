/**
 * Bun's own sockets (`Bun.listen`, `Bun.connect`) as ByteStreams. Bun's `write()` is unbuffered and may take part
 * of a chunk: the rest waits in a queue for the `drain` callback. The queue keeps a running byte count, so each
 * write costs the same however long the queue is. A socket reads nothing until `start()` (it is paused from its
 * opening), so a connection nobody accepted costs no more than what the kernel buffers.
 *
 * @module
 */
import type { Socket, SocketHandler } from "bun";
import { ClosedError, IpcError, TimeoutError } from "../errors.ts";
import { mapNodeError } from "./node_api.ts";
import type {
  ByteSink,
  ByteStream,
  ConnectTcpOptions,
  ListenTcpOptions,
  ListenUnixOptions,
  Server,
} from "./runtime.ts";
import { bindWithMode, DEFAULT_SOCKET_MODE } from "./unix_bind.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT, MAX_PENDING_HANDSHAKES, tlsClientError, tlsServerError } from "./tls_errors.ts";

/** Per-socket state, kept in `socket.data`. */
interface State {
  sink: ByteSink | undefined;
  /** Chunks that arrived before start() (the socket is paused then, so only what was already read). */
  early: Uint8Array[];
  ended: boolean;
  endError: Error | undefined;
  /** Chunks waiting for `drain`, from `pending[head]` on, and their total size in bytes. */
  pending: Uint8Array[];
  head: number;
  queued: number;
  drainWaiters: Array<(e?: Error) => void>;
  endWaiters: Array<() => void>;
  wantEnd: boolean;
  closed: boolean;
}

const HIGH_WATER = 1 << 20;

function newState(): State {
  return {
    sink: undefined,
    early: [],
    ended: false,
    endError: undefined,
    pending: [],
    head: 0,
    queued: 0,
    drainWaiters: [],
    endWaiters: [],
    wantEnd: false,
    closed: false,
  };
}

function finish(st: State, error?: Error): void {
  if (st.ended) return;
  st.ended = true;
  st.endError = error;
  st.sink?.end(error);
}

function failWrites(st: State, error: Error): void {
  st.pending = [];
  st.head = 0;
  st.queued = 0;
  for (const w of st.drainWaiters.splice(0)) w(error);
  for (const w of st.endWaiters.splice(0)) w();
}

/** Small queued chunks are joined into one write of up to this many bytes (one syscall, not one per chunk). */
const JOIN = 64 * 1024;

/** The next queued write: the head chunk, or the small chunks from the head joined. */
function nextWrite(st: State): Uint8Array {
  const first = st.pending[st.head]!;
  if (first.byteLength >= JOIN / 4) return first;
  let size = 0;
  let end = st.head;
  while (end < st.pending.length && size + st.pending[end]!.byteLength <= JOIN) size += st.pending[end++]!.byteLength;
  if (end - st.head < 2) return first;
  const joined = new Uint8Array(size);
  let at = 0;
  for (let i = st.head; i < end; i++) {
    joined.set(st.pending[i]!, at);
    at += st.pending[i]!.byteLength;
    st.pending[i] = EMPTY;
  }
  st.pending[--end] = joined; // the joined chunk takes the last slot; the emptied ones before it are skipped
  st.head = end;
  return joined;
}

const EMPTY = new Uint8Array(0);

/** Writes queued chunks until the socket takes no more. Returns true when the queue is empty. */
function flush(socket: Socket<State>): boolean {
  const st = socket.data;
  while (st.head < st.pending.length) {
    const chunk = nextWrite(st);
    const n = socket.write(chunk);
    if (n < 0) {
      failWrites(st, new ClosedError("Cannot write to socket: it is closed"));
      return true;
    }
    st.queued -= n;
    if (n < chunk.byteLength) {
      st.pending[st.head] = chunk.subarray(n);
      if (st.head > 1024 && st.head * 2 > st.pending.length) {
        // Drop the written slots now and then, so a queue that never empties does not grow.
        st.pending = st.pending.slice(st.head);
        st.head = 0;
      }
      return false;
    }
    st.pending[st.head++] = EMPTY;
  }
  st.pending = [];
  st.head = 0;
  if (st.wantEnd) {
    st.wantEnd = false;
    socket.end();
    for (const w of st.endWaiters.splice(0)) w();
  }
  return true;
}

const handlers: SocketHandler<State> = {
  data(socket, data) {
    const st = socket.data;
    if (st.sink) st.sink.data(data);
    else st.early.push(data.slice());
  },
  drain(socket) {
    const st = socket.data;
    flush(socket);
    if (st.queued < HIGH_WATER) { for (const w of st.drainWaiters.splice(0)) w(); }
  },
  end(socket) {
    finish(socket.data);
  },
  close(socket, error) {
    const st = socket.data;
    st.closed = true;
    failWrites(st, new ClosedError("Cannot write to socket: it is closed", { cause: error }));
    finish(st, error ?? undefined);
  },
  error(socket, error) {
    const st = socket.data;
    failWrites(st, new ClosedError("Cannot write to socket: it failed", { cause: error }));
    finish(st, error);
  },
};

/** A ByteStream over a Bun socket. */
function socketStream(socket: Socket<State>): ByteStream {
  const st = socket.data;
  // Read nothing before start(): a server's connection may wait long for accept().
  socket.pause();
  let paused = false;
  return {
    ownsChunks: false,
    start(sink) {
      st.sink = sink;
      for (const c of st.early.splice(0)) sink.data(c);
      if (st.ended) sink.end(st.endError);
      else if (!paused) socket.resume();
    },
    pause() {
      paused = true;
      socket.pause();
    },
    resume() {
      paused = false;
      if (st.sink) socket.resume();
    },
    write(chunk) {
      if (st.closed || st.ended && st.endError) {
        return Promise.reject(new ClosedError("Cannot write to socket: it is closed"));
      }
      if (st.head === st.pending.length) {
        const n = socket.write(chunk);
        if (n === chunk.byteLength) return undefined;
        if (n < 0) return Promise.reject(new ClosedError("Cannot write to socket: it is closed"));
        st.pending.push(chunk.subarray(n));
        st.queued += chunk.byteLength - n;
      } else {
        st.pending.push(chunk);
        st.queued += chunk.byteLength;
      }
      if (st.queued < HIGH_WATER) return undefined;
      return new Promise<void>((resolve, reject) => st.drainWaiters.push((e) => (e ? reject(e) : resolve())));
    },
    end() {
      if (st.closed) return Promise.resolve();
      if (st.head === st.pending.length) {
        socket.end();
        return Promise.resolve();
      }
      st.wantEnd = true;
      return new Promise<void>((resolve) => st.endWaiters.push(resolve));
    },
    close() {
      if (st.closed) return;
      st.closed = true;
      socket.terminate();
    },
    unref() {
      socket.unref();
    },
    ref() {
      socket.ref();
    },
  };
}

function server(listener: { stop(closeActive?: boolean): void; port?: number }, port: number): Server {
  return {
    port,
    close() {
      listener.stop(false);
      return Promise.resolve();
    },
  };
}

/** TLS settings in Bun's shape, and what a listener does with handshakes. */
interface BunTls {
  options: Record<string, unknown>;
  timeout: number;
  onReject: ((error: Error) => void) | undefined;
}

function listenWith(
  options: { unix: string } | { hostname: string; port: number },
  onConnection: (s: ByteStream) => void,
  what: string,
  tls?: BunTls,
): Promise<Server> {
  // With TLS, a socket opens before its handshake: it is handed over only once the handshake succeeded.
  const pending = new Map<Socket<State>, ReturnType<typeof setTimeout>>();
  const refuse = (socket: Socket<State>, error: Error) => {
    clearTimeout(pending.get(socket));
    pending.delete(socket);
    socket.terminate();
    tls?.onReject?.(error);
  };
  // Named with the bound port, once known (port 0 picks one).
  let rejected = `Cannot accept a TLS connection on ${what.replace(/^Cannot listen on /, "")}`;
  try {
    const listener = Bun.listen<State>(
      {
        ...options,
        allowHalfOpen: true,
        ...(tls ? { tls: tls.options } : {}),
        socket: {
          ...handlers,
          open(socket) {
            socket.data = newState();
            if ("port" in options) socket.setNoDelay(true);
            if (!tls) return onConnection(socketStream(socket));
            if (pending.size >= MAX_PENDING_HANDSHAKES) {
              return refuse(socket, new ClosedError(`${rejected}: ${MAX_PENDING_HANDSHAKES} handshakes are pending`));
            }
            const timeout = new TimeoutError(`${rejected}: the TLS handshake took longer than ${tls.timeout} ms`);
            pending.set(socket, setTimeout(() => refuse(socket, timeout), tls.timeout));
          },
          handshake(socket, success, authorizationError) {
            if (!pending.has(socket)) return;
            // A finished handshake with an untrusted client certificate is success with an authorizationError
            // (which a server that did not ask for one gets too: "no issuer" for no certificate).
            if (!success || tls?.options.requestCert === true && authorizationError) {
              const reason = (authorizationError as { code?: unknown } | null)?.code;
              return refuse(socket, tlsServerError(authorizationError, rejected, success ? reason : undefined));
            }
            clearTimeout(pending.get(socket));
            pending.delete(socket);
            onConnection(socketStream(socket));
          },
          close(socket, error) {
            if (pending.has(socket)) {
              refuse(socket, tlsServerError(error ?? { code: "ECONNRESET", message: "hang up" }, rejected));
            }
            handlers.close?.(socket, error);
          },
        },
      } as Parameters<typeof Bun.listen<State>>[0],
    );
    const port = "port" in options ? (listener as unknown as { port: number }).port : 0;
    if ("port" in options) rejected = `Cannot accept a TLS connection on TCP ${options.hostname}:${port}`;
    return Promise.resolve(server(listener, port));
  } catch (e) {
    return Promise.reject(mapNodeError(e, what));
  }
}

async function connectWith(
  options: { unix: string } | { hostname: string; port: number },
  what: string,
  tls?: Record<string, unknown>,
  handshakeTimeout = DEFAULT_HANDSHAKE_TIMEOUT,
): Promise<ByteStream> {
  // With TLS, Bun.connect resolves when TCP is up; the stream is ready once the handshake succeeded.
  let handshake!: { resolve(): void; reject(e: unknown): void };
  const handshaken = new Promise<void>((resolve, reject) => (handshake = { resolve, reject }));
  const tlsWhat = what.replace(/^Cannot connect to /, "Cannot connect over TLS to ");
  try {
    const socket = await Bun.connect<State>(
      {
        ...options,
        allowHalfOpen: true,
        data: newState(),
        ...(tls ? { tls } : {}),
        socket: tls
          ? {
            ...handlers,
            handshake(_socket, success, authorizationError) {
              if (success && !authorizationError) handshake.resolve();
              else handshake.reject(tlsClientError(authorizationError, tlsWhat, true));
            },
            close(socket, error) {
              handshake.reject(
                error
                  ? tlsClientError(error, tlsWhat, true)
                  : new ClosedError(`${tlsWhat}: the server closed the connection during the TLS handshake`),
              );
              handlers.close?.(socket, error);
            },
            error(socket, error) {
              handlers.error?.(socket, tlsClientError(error, tlsWhat) as Error);
            },
          }
          : handlers,
      } as Parameters<typeof Bun.connect<State>>[0],
    );
    if ("port" in options) socket.setNoDelay(true);
    if (tls) {
      const timer = setTimeout(
        () => handshake.reject(new TimeoutError(`${tlsWhat}: no TLS handshake within ${handshakeTimeout} ms`)),
        handshakeTimeout,
      );
      try {
        await handshaken;
      } catch (e) {
        socket.terminate();
        throw e;
      } finally {
        clearTimeout(timer);
      }
    }
    return socketStream(socket);
  } catch (e) {
    throw mapNodeError(e, what);
  }
}

/** Bun.listen on a Unix socket, its file created with `mode` (0o600 by default) without a window. */
export const listenUnix = (path: string, on: (s: ByteStream) => void, o: ListenUnixOptions = {}): Promise<Server> => {
  const what = `Cannot listen on Unix socket "${path}"`;
  return bindWithMode(path, o.mode ?? DEFAULT_SOCKET_MODE, (at) => listenWith({ unix: at }, on, what), what)
    .catch((e) => Promise.reject(e instanceof IpcError ? e : mapNodeError(e, what)));
};
/** Bun.connect to a Unix socket. */
export const connectUnix = (path: string): Promise<ByteStream> =>
  connectWith({ unix: path }, `Cannot connect to Unix socket "${path}"`);
/** Bun.listen on TCP; with `tls`, Bun's own TLS (BoringSSL: faster here than node:tls, 25-30 vs 38-49 us). */
export const listenTcp = (o: ListenTcpOptions, on: (s: ByteStream) => void): Promise<Server> => {
  const what = `Cannot listen on TCP ${o.hostname}:${o.port}`;
  const t = o.tls;
  const tls: BunTls | undefined = t && {
    options: {
      cert: t.cert,
      key: t.key,
      ...(t.ca === undefined ? {} : { ca: t.ca }),
      requestCert: t.requestCert === true,
      rejectUnauthorized: true,
    },
    timeout: o.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    onReject: o.onReject,
  };
  return listenWith({ hostname: o.hostname, port: o.port }, on, what, tls);
};
/** Bun.connect over TCP, with Nagle off; with `tls`, the server's certificate is verified. */
export const connectTcp = (o: ConnectTcpOptions): Promise<ByteStream> => {
  const t = o.tls;
  const tls = t && {
    ...(t.ca === undefined ? {} : { ca: t.ca }),
    ...(t.cert === undefined ? {} : { cert: t.cert }),
    ...(t.key === undefined ? {} : { key: t.key }),
    ...(t.servername === undefined ? {} : { serverName: t.servername }),
    rejectUnauthorized: true,
  };
  const what = `Cannot connect to TCP ${o.hostname}:${o.port}`;
  return connectWith({ hostname: o.hostname, port: o.port }, what, tls, o.handshakeTimeout);
};
