/**
 * Deno's own sockets (`Deno.listen`, `Deno.connect`) as ByteStreams. A read loop with one reusable buffer feeds
 * the sink (so chunks are not owned); writes go through `write()` until all bytes are out.
 *
 * @module
 */
import { ClosedError } from "../errors.ts";
import { mapNodeError } from "./node_api.ts";
import type { ByteSink, ByteStream, Server } from "./runtime.ts";

const READ_SIZE = 64 * 1024;

/** A ByteStream over a Deno.Conn. */
export function connStream(conn: Deno.Conn): ByteStream {
  let closed = false;
  let paused = false;
  let wake: (() => void) | undefined;
  let writing: Promise<void> | undefined;
  let writeError: Error | undefined;
  let queue: Uint8Array[] = [];
  let queued = 0;
  const HIGH_WATER = 1 << 20;
  const drainWaiters: Array<() => void> = [];

  async function pump(sink: ByteSink): Promise<void> {
    const buf = new Uint8Array(READ_SIZE);
    let error: Error | undefined;
    try {
      for (;;) {
        while (paused && !closed) await new Promise<void>((r) => (wake = r));
        if (closed) break;
        const n = await conn.read(buf);
        if (n === null) break;
        sink.data(buf.subarray(0, n));
      }
    } catch (e) {
      if (!closed) error = e as Error;
    }
    sink.end(error);
  }

  async function flush(): Promise<void> {
    try {
      while (queue.length > 0) {
        const batch = queue;
        queue = [];
        for (const chunk of batch) {
          for (let off = 0; off < chunk.byteLength;) off += await conn.write(chunk.subarray(off));
          queued -= chunk.byteLength;
          if (queued < HIGH_WATER) {
            for (const w of drainWaiters.splice(0)) w();
          }
        }
      }
    } catch (e) {
      writeError = closed ? new ClosedError("Cannot write to stream: it is closed") : (e as Error);
      queue = [];
      queued = 0;
      for (const w of drainWaiters.splice(0)) w();
    } finally {
      writing = undefined;
    }
  }

  return {
    ownsChunks: false,
    start: (sink) => void pump(sink),
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      wake?.();
      wake = undefined;
    },
    write(chunk) {
      if (writeError || closed) {
        return Promise.reject(writeError ?? new ClosedError("Cannot write to stream: it is closed"));
      }
      queue.push(chunk);
      queued += chunk.byteLength;
      writing ??= flush();
      if (queued < HIGH_WATER) return undefined;
      return new Promise<void>((resolve, reject) =>
        drainWaiters.push(() => (writeError ? reject(writeError) : resolve()))
      );
    },
    async end() {
      while (writing) await writing;
      if (closed || writeError) return;
      try {
        await conn.closeWrite();
      } catch { /* already closed */ }
    },
    close() {
      if (closed) return;
      closed = true;
      wake?.();
      try {
        conn.close();
      } catch { /* already closed */ }
    },
  };
}

async function serve(listener: Deno.Listener, onConnection: (s: ByteStream) => void, tcp: boolean): Promise<void> {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch {
      return; // closed
    }
    if (tcp) (conn as Deno.TcpConn).setNoDelay(true);
    onConnection(connStream(conn));
  }
}

function server(listener: Deno.Listener, port: number): Server {
  return {
    port,
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
      return Promise.resolve();
    },
  };
}

/** Deno.listen on a Unix socket. */
export function listenUnix(path: string, onConnection: (s: ByteStream) => void): Promise<Server> {
  try {
    const listener = Deno.listen({ transport: "unix", path });
    void serve(listener, onConnection, false);
    return Promise.resolve(server(listener, 0));
  } catch (e) {
    return Promise.reject(denoError(e, `Cannot listen on Unix socket "${path}"`));
  }
}

/** Deno.connect to a Unix socket. */
export async function connectUnix(path: string): Promise<ByteStream> {
  try {
    return connStream(await Deno.connect({ transport: "unix", path }));
  } catch (e) {
    throw denoError(e, `Cannot connect to Unix socket "${path}"`);
  }
}

/** Deno.listen on TCP. */
export function listenTcp(
  o: { port: number; hostname: string },
  onConnection: (s: ByteStream) => void,
): Promise<Server> {
  try {
    const listener = Deno.listen({ port: o.port, hostname: o.hostname });
    void serve(listener, onConnection, true);
    return Promise.resolve(server(listener, (listener.addr as Deno.NetAddr).port));
  } catch (e) {
    return Promise.reject(denoError(e, `Cannot listen on TCP ${o.hostname}:${o.port}`));
  }
}

/** Deno.connect over TCP, with Nagle off. */
export async function connectTcp(o: { port: number; hostname: string }): Promise<ByteStream> {
  try {
    const conn = await Deno.connect({ port: o.port, hostname: o.hostname });
    conn.setNoDelay(true);
    return connStream(conn);
  } catch (e) {
    throw denoError(e, `Cannot connect to TCP ${o.hostname}:${o.port}`);
  }
}

/** Maps Deno's error classes (NotFound, AddrInUse…) through the node-style codes. */
function denoError(e: unknown, what: string): unknown {
  const codes: Record<string, string> = {
    NotFound: "ENOENT",
    ConnectionRefused: "ECONNREFUSED",
    AddrInUse: "EADDRINUSE",
    AlreadyExists: "EEXIST",
    PermissionDenied: "EACCES",
  };
  const code = codes[(e as Error)?.name ?? ""];
  if (code === undefined) return e;
  return mapNodeError(Object.assign(new Error((e as Error).message, { cause: e }), { code }), what);
}
