/**
 * Bun's own sockets (`Bun.listen`, `Bun.connect`) as ByteStreams. Bun's `write()` is unbuffered and may take part
 * of a chunk: the rest waits in a queue for the `drain` callback. The queue keeps a running byte count, so each
 * write costs the same however long the queue is. A socket reads nothing until `start()` (it is paused from its
 * opening), so a connection nobody accepted costs no more than what the kernel buffers.
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
