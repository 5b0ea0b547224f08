/**
 * The Bun adapter: `node:` modules where they work as well, Bun's own APIs for sockets (faster), stdio and FIFOs (Bun's
 * `net.Socket({ fd })` receives nothing from a pipe and fails with EAGAIN writing one).
 *
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { nodeApi, openFifoFd, worker } from "./node_api.ts";
import { connectTcp, connectUnix, listenTcp, listenUnix } from "./bun_net.ts";
import { webStream } from "./streams.ts";
import { detachStdout } from "./stdout.ts";
import { closeSync } from "node:fs";
import { type ByteStream, type Runtime, WORKER_LIMITS_UNSUPPORTED } from "./runtime.ts";

/** A FileSink writes pipes correctly (a node:net Socket over a non-blocking FIFO fd fails with EAGAIN). */
function sinkWriter(sink: ReturnType<ReturnType<typeof Bun.file>["writer"]>) {
  return async (chunk: Uint8Array) => {
    sink.write(chunk);
    await sink.flush();
  };
}

function fdStream(fd: number, mode: "read" | "write"): ByteStream {
  // FileSink.end() flushes but leaves the fd open: close it ourselves, once, or the reader never sees EOF.
  let open = true;
  const closeFd = () => {
    if (!open) return;
    open = false;
    try {
      closeSync(fd);
    } catch { /* already closed */ }
  };
  const sink = mode === "write" ? Bun.file(fd).writer() : undefined;
  return webStream({
    readable: mode === "read" ? Bun.file(fd).stream() as ReadableStream<Uint8Array> : null,
    write: sink ? sinkWriter(sink) : null,
    endWrite: sink
      ? async () => {
        await sink.end();
        closeFd();
      }
      : undefined,
    release: closeFd,
  });
}

let stdioStream: ByteStream | undefined;

/** The Runtime for Bun. */
export const runtime: Runtime = {
  ...nodeApi,
  name: "bun",
  version: Bun.version,
  // Bun.listen/Bun.connect beat node:net here (pinned 8-byte round trip, framed: Unix 18.6 vs 23.9 us, TCP 26.6
  // vs 29.5 us; bench/socket_api.ts).
  listenUnix,
  connectUnix,
  listenTcp,
  connectTcp,
  stdio() {
    if (stdioStream) return stdioStream;
    const out = Bun.stdout.writer();
    return (stdioStream = webStream({
      readable: Bun.stdin.stream() as ReadableStream<Uint8Array>,
      write: sinkWriter(out),
      endWrite: async () => {
        await out.end();
        await detachStdout();
      },
    }));
  },
  async openFifo(path, mode, signal) {
    return fdStream(await openFifoFd(path, mode, signal), mode);
  },
  // Bun's Worker takes resourceLimits and ignores them (a thread limited to 32 MiB grew past 600): refused, not
  // pretended.
  worker(url, options) {
    if (options?.resourceLimits !== undefined) {
      throw new UnsupportedError(`Cannot limit a worker thread's resources on Bun: ${WORKER_LIMITS_UNSUPPORTED.bun}`);
    }
    return worker(url, options);
  },
};
