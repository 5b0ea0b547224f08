/**
 * Unix domain stream sockets: the fastest byte-stream IPC between processes on one host.
 *
 * @example
 * ```ts
 * import { unix } from "ipckit";
 * await using server = await unix.listen("/tmp/demo.sock");
 * const client = await unix.connect("/tmp/demo.sock");
 * const peer = await server.accept();
 * await client.send(new TextEncoder().encode("hi"));
 * console.log(new TextDecoder().decode(await peer.receive())); // "hi"
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

/** What a Unix stream socket channel promises. */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_FRAME,
  crossHost: false,
  datagram: false,
};

// sockaddr_un.sun_path is 108 bytes on Linux, 104 on macOS, including the terminating NUL.
const MAX_PATH = 103;

function checkPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0) {
    throw new TypeError(`Cannot use Unix socket path ${JSON.stringify(path)}: it must be a non-empty string`);
  }
  if (new TextEncoder().encode(path).byteLength > MAX_PATH) {
    throw new RangeError(`Cannot use Unix socket path "${path}": it is longer than ${MAX_PATH} bytes`);
  }
  if (path.includes("\0")) throw new TypeError(`Cannot use Unix socket path "${path}": it contains a NUL byte`);
  return path;
}

function wrap(stream: ByteStream, path: string, options: StreamChannelOptions): Channel {
  return new StreamChannel(stream, `Unix socket "${path}"`, capabilities, options);
}

/**
 * Listens on a Unix stream socket at `path`. The socket file is created (it must not exist: a stale file from a
 * dead process is an `AlreadyExistsError`; remove it first) and removed again by `close()`.
 *
 * @param path Filesystem path of the socket, at most 103 bytes.
 * @returns A Listener: `accept()` or `for await` yields one Channel per connection.
 * @throws {AlreadyExistsError} when the path exists.
 */
export async function listen(path: string, options: StreamChannelOptions = {}): Promise<Listener> {
  checkFraming(options, `a Unix listener on "${path}"`);
  checkPath(path);
  const rt = await runtime();
  const listener = new StreamListener({
    description: `Unix socket "${path}"`,
    wrap: (s) => wrap(s, path, options),
    afterClose: () => rt.removeFile(path),
  });
  listener.attach(await rt.listenUnix(path, listener.onConnection));
  return listener;
}

/**
 * Connects to a Unix stream socket.
 *
 * @throws {NotFoundError} when nothing listens at `path`.
 */
export async function connect(path: string, options: StreamChannelOptions = {}): Promise<Channel> {
  checkFraming(options, `a Unix socket to "${path}"`);
  checkPath(path);
  const rt = await runtime();
  return wrap(await rt.connectUnix(path), path, options);
}
