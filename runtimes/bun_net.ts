/**
 * Bun's own sockets (`Bun.listen`, `Bun.connect`) as ByteStreams. Bun's `write()` is unbuffered and may take part
 * of a chunk: the rest waits in a queue for the `drain` callback.
 *
 * @module
 */
import type { Socket, SocketHandler } from "bun";
import { ClosedError } from "../errors.ts";
import { mapNodeError } from "./node_api.ts";
import type { ByteSink, ByteStream, Server } from "./runtime.ts";

/** Per-socket state, kept in `socket.data`. */
interface State {
  sink: ByteSink | undefined;
  /** Chunks that arrived before start(). */
  early: Uint8Array[];
  ended: boolean;
  endError: Error | undefined;
  pending: Uint8Array[];
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
  for (const w of st.drainWaiters.splice(0)) w(error);
  for (const w of st.endWaiters.splice(0)) w();
}

/** Writes queued chunks until the socket takes no more. Returns true when the queue is empty. */
function flush(socket: Socket<State>): boolean {
  const st = socket.data;
  while (st.pending.length > 0) {
    const chunk = st.pending[0]!;
    const n = socket.write(chunk);
    if (n < 0) {
      failWrites(st, new ClosedError("Cannot write to socket: it is closed"));
      return true;
    }
    if (n < chunk.byteLength) {
      st.pending[0] = chunk.subarray(n);
      return false;
    }
    st.pending.shift();
  }
  if (st.wantEnd) {
    st.wantEnd = false;
    socket.end();
    for (const w of st.endWaiters.splice(0)) w();
  }
  return true;
}

function queuedBytes(st: State): number {
  let n = 0;
  for (const c of st.pending) n += c.byteLength;
  return n;
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
    if (queuedBytes(st) < HIGH_WATER) { for (const w of st.drainWaiters.splice(0)) w(); }
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
  return {
    ownsChunks: false,
    start(sink) {
      st.sink = sink;
      for (const c of st.early.splice(0)) sink.data(c);
      if (st.ended) sink.end(st.endError);
    },
    pause: () => void socket.pause(),
    resume: () => void socket.resume(),
    write(chunk) {
      if (st.closed || st.ended && st.endError) {
        return Promise.reject(new ClosedError("Cannot write to socket: it is closed"));
      }
      if (st.pending.length === 0) {
        const n = socket.write(chunk);
        if (n === chunk.byteLength) return undefined;
        if (n < 0) return Promise.reject(new ClosedError("Cannot write to socket: it is closed"));
        st.pending.push(chunk.subarray(n));
      } else {
        st.pending.push(chunk);
      }
      if (queuedBytes(st) < HIGH_WATER) return undefined;
      return new Promise<void>((resolve, reject) => st.drainWaiters.push((e) => (e ? reject(e) : resolve())));
    },
    end() {
      if (st.closed) return Promise.resolve();
      if (st.pending.length === 0) {
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

function listenWith(
  options: { unix: string } | { hostname: string; port: number },
  onConnection: (s: ByteStream) => void,
  what: string,
): Promise<Server> {
  try {
    const listener = Bun.listen<State>(
      {
        ...options,
        allowHalfOpen: true,
        socket: {
          ...handlers,
          open(socket) {
            socket.data = newState();
            if ("port" in options) socket.setNoDelay(true);
            onConnection(socketStream(socket));
          },
        },
      } as Parameters<typeof Bun.listen<State>>[0],
    );
    return Promise.resolve(server(listener, "port" in options ? (listener as unknown as { port: number }).port : 0));
  } catch (e) {
    return Promise.reject(mapNodeError(e, what));
  }
}

async function connectWith(
  options: { unix: string } | { hostname: string; port: number },
  what: string,
): Promise<ByteStream> {
  try {
    const socket = await Bun.connect<State>(
      {
        ...options,
        allowHalfOpen: true,
        data: newState(),
        socket: handlers,
      } as Parameters<typeof Bun.connect<State>>[0],
    );
    if ("port" in options) socket.setNoDelay(true);
    return socketStream(socket);
  } catch (e) {
    throw mapNodeError(e, what);
  }
}

/** Bun.listen on a Unix socket. */
export const listenUnix = (path: string, on: (s: ByteStream) => void): Promise<Server> =>
  listenWith({ unix: path }, on, `Cannot listen on Unix socket "${path}"`);
/** Bun.connect to a Unix socket. */
export const connectUnix = (path: string): Promise<ByteStream> =>
  connectWith({ unix: path }, `Cannot connect to Unix socket "${path}"`);
/** Bun.listen on TCP. */
export const listenTcp = (o: { port: number; hostname: string }, on: (s: ByteStream) => void): Promise<Server> =>
  listenWith({ hostname: o.hostname, port: o.port }, on, `Cannot listen on TCP ${o.hostname}:${o.port}`);
/** Bun.connect over TCP, with Nagle off. */
export const connectTcp = (o: { port: number; hostname: string }): Promise<ByteStream> =>
  connectWith({ hostname: o.hostname, port: o.port }, `Cannot connect to TCP ${o.hostname}:${o.port}`);
