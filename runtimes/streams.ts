/**
 * ByteStream adapters over the stream shapes the runtimes hand out: a `node:net` Socket (all three runtimes), a
 * Web `ReadableStream` and a writer function (Deno files and stdio, Bun files). Used only by the adapters.
 *
 * @module
 */
import type { Socket } from "node:net";
import { ClosedError } from "../errors.ts";
import type { ByteSink, ByteStream } from "./runtime.ts";

function closedWrite(): ClosedError {
  return new ClosedError("Cannot write to stream: it is closed");
}

/** A ByteStream over a `node:net` Socket (or anything with its events). */
export function socketStream(socket: Socket): ByteStream {
  let sink: ByteSink | undefined;
  let ended = false;
  let error: Error | undefined;
  const finish = (e?: Error) => {
    if (ended) return;
    ended = true;
    sink?.end(e);
  };
  socket.on("error", (e: Error) => {
    error = e;
    finish(e);
  });
  return {
    ownsChunks: true,
    start(s) {
      sink = s;
      // It may have failed while nobody read it yet (a connection waiting for accept()): say so now.
      if (ended) return s.end(error);
      socket.on("data", (chunk: Uint8Array) => s.data(chunk));
      socket.on("end", () => finish());
      socket.on("close", () => finish());
      if (socket.destroyed) finish(error);
    },
    pause: () => void socket.pause(),
    resume: () => void socket.resume(),
    write(chunk) {
      if (socket.destroyed || socket.writableEnded) return Promise.reject(error ?? closedWrite());
      if (socket.write(chunk)) return undefined;
      return new Promise<void>((resolve, reject) => {
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          if (socket.destroyed) reject(error ?? closedWrite());
          else resolve();
        };
        socket.on("drain", done);
        socket.on("close", done);
      });
    },
    end() {
      if (socket.destroyed || socket.writableEnded) return Promise.resolve();
      return new Promise<void>((resolve) => {
        socket.end(() => resolve());
        socket.once("close", () => resolve());
      });
    },
    close() {
      socket.destroy();
    },
    unref() {
      socket.unref();
    },
    ref() {
      socket.ref();
    },
  };
}

/** Writes chunks somewhere; resolves when the bytes were accepted. */
export type WriteFn = (chunk: Uint8Array) => Promise<void>;

/** Options of {@linkcode webStream}. */
export interface WebStreamParts {
  /** Where bytes come from; null for a write-only stream. */
  readable: ReadableStream<Uint8Array> | null;
  /** Where bytes go; null for a read-only stream. */
  write: WriteFn | null;
  /** Half-closes the write side. */
  endWrite?: (() => void | Promise<void>) | undefined;
  /** Releases everything (called once, by `close()` or after both sides ended). */
  release?: (() => void) | undefined;
  /** Whether the readable hands out fresh chunks. */
  ownsChunks?: boolean;
}

/**
 * A ByteStream over a Web ReadableStream and a write function. Writes are queued so that at most one is in flight;
 * `write()` asks the caller to wait once more than 1 MiB is queued.
 */
export function webStream(parts: WebStreamParts): ByteStream {
  const HIGH_WATER = 1 << 20;
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined;
  let sink: ByteSink | undefined;
  let paused = false;
  let wake: (() => void) | undefined;
  let closed = false;
  let readDone = false;
  let failure: Error | undefined;
  // Write queue: one write in flight, the rest chained.
  let tail: Promise<void> = Promise.resolve();
  let queued = 0;
  let drainWaiters: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];

  const finishRead = (e?: Error) => {
    if (readDone) return;
    readDone = true;
    sink?.end(e);
  };

  async function pump(s: ByteSink): Promise<void> {
    if (parts.readable === null) return; // write-only: never ends by itself
    reader = parts.readable.getReader();
    try {
      for (;;) {
        while (paused && !closed) await new Promise<void>((r) => (wake = r));
        if (closed) break;
        const { value, done } = await reader.read();
        if (done || closed) break;
        if (value.byteLength > 0) s.data(value);
      }
      finishRead();
    } catch (e) {
      finishRead(closed ? undefined : (e as Error));
    }
  }

  const settleDrain = () => {
    const waiters = drainWaiters;
    drainWaiters = [];
    for (const w of waiters) failure ? w.reject(failure) : w.resolve();
  };

  return {
    ownsChunks: parts.ownsChunks ?? true,
    start(s) {
      sink = s;
      void pump(s);
    },
    pause() {
      paused = true;
    },
    resume() {
      paused = false;
      wake?.();
      wake = undefined;
    },
    write(chunk) {
      const write = parts.write;
      if (closed || write === null) return Promise.reject(failure ?? closedWrite());
      if (failure) return Promise.reject(failure);
      queued += chunk.byteLength;
      tail = tail.then(() => closed ? undefined : write(chunk)).then(
        () => {
          queued -= chunk.byteLength;
          if (queued < HIGH_WATER) settleDrain();
        },
        (e) => {
          failure ??= e instanceof Error ? e : new Error(String(e));
          queued = 0;
          settleDrain();
        },
      );
      if (queued < HIGH_WATER) return undefined;
      return new Promise<void>((resolve, reject) => drainWaiters.push({ resolve, reject }));
    },
    async end() {
      await tail;
      if (!closed) await parts.endWrite?.();
    },
    close() {
      if (closed) return;
      closed = true;
      wake?.();
      reader?.cancel().catch(() => {});
      failure ??= closedWrite();
      settleDrain();
      parts.release?.();
      finishRead();
    },
  };
}

/** Joins a read-only and a write-only stream into one duplex ByteStream (a pipe pair, a FIFO pair). */
export function duplex(read: ByteStream, write: ByteStream): ByteStream {
  return {
    ownsChunks: read.ownsChunks,
    start: (s) => read.start(s),
    pause: () => read.pause(),
    resume: () => read.resume(),
    write: (c) => write.write(c),
    end: () => write.end(),
    close() {
      write.close();
      read.close();
    },
  };
}
