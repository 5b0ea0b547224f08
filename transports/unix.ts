/**
 * Unix domain stream sockets: the fastest byte-stream IPC between processes on one host.
 *
 * @example
 * ```ts
 * import { runtime, unix } from "ipckit";
 * const path = `/tmp/ipckit-demo-${(await runtime()).pid}.sock`;
 * await using server = await unix.listen(path);
 * const client = await unix.connect(path);
 * const peer = await server.accept();
 * await client.send(new TextEncoder().encode("hi"));
 * console.log(new TextDecoder().decode(await peer.receive())); // "hi"
 * await client.close();
 * await peer.close();
 * ```
 *
 * @module
 */
import { SUN_PATH_LINUX, SUN_PATH_MACOS } from "../ffi/constants.ts";
import { runtime } from "../runtimes/detect.ts";
import { prepare, register, unregister } from "../registry.ts";
import type { ByteStream } from "../runtimes/runtime.ts";
import { authenticateStream, checkHandshakeTimeout, prepareAuth } from "./auth.ts";
import { type Capabilities, type Channel, type Listener, reliableCapabilities } from "./channel.ts";
import { checkOnReject, HandshakeGate, type SecureConnectOptions, type SecureListenOptions } from "./handshakes.ts";
import { StreamListener } from "./listener.ts";
import { checkFraming, StreamChannel, type StreamChannelOptions } from "./stream_channel.ts";

/**
 * What a Unix stream socket channel promises.
 *
 * @example
 * ```ts
 * import { unix } from "ipckit";
 * console.log(unix.capabilities); // ordered, reliable, maxMessage 4294967295, not cross-host, not datagram
 * ```
 */
export const capabilities: Capabilities = reliableCapabilities(false);

// The shorter sun_path (macOS, Linux), less its terminating NUL: a path that works on both.
const MAX_PATH = Math.min(SUN_PATH_LINUX, SUN_PATH_MACOS) - 1;

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

/** Options of {@linkcode listen}. */
export interface UnixListenOptions extends StreamChannelOptions, SecureListenOptions {
  /**
   * Permission bits of the socket file: who may connect (connecting needs write permission). 0o600 by default:
   * only this user. The file never exists with other bits, whatever the umask.
   */
  mode?: number;
}

/** Options of {@linkcode connect}. */
export interface UnixConnectOptions extends StreamChannelOptions, SecureConnectOptions {}

function checkMode(mode: unknown, what: string): number {
  if (mode === undefined) return 0o600;
  if (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o777) {
    throw new RangeError(`Cannot ${what}: mode ${String(mode)} must be permission bits from 0 to 0o777`);
  }
  return mode as number;
}

function wrap(stream: ByteStream, path: string, options: StreamChannelOptions): Channel {
  return new StreamChannel(stream, `Unix socket "${path}"`, capabilities, options);
}

/**
 * Listens on a Unix stream socket at `path`. The socket file is created (it must not exist: a stale file from a
 * dead process is an `AlreadyExistsError`; remove it first) with permission bits `mode` (0o600: only this user may
 * connect), and removed again by `close()`. With `auth`, `accept()` returns only connections that proved they know
 * the secret; the others are closed and reported to `onReject`.
 *
 * @param path Filesystem path of the socket, at most 103 bytes.
 * @returns A Listener: `accept()` or `for await` yields one Channel per connection.
 * @throws {AlreadyExistsError} when the path exists.
 * @throws {RangeError} for a bad mode, limit or timeout, or an auth secret under 16 bytes.
 *
 * @example
 * ```ts
 * import { runtime, unix } from "ipckit";
 * const path = `/tmp/ipckit-echo-${(await runtime()).pid}.sock`;
 * const server = await unix.listen(path);
 * // Serve: echo every message of every connection, until the listener closes.
 * const serving = (async () => {
 *   for await (const channel of server) {
 *     void (async () => {
 *       for await (const message of channel) await channel.send(message);
 *       await channel.close();
 *     })();
 *   }
 * })();
 * const client = await unix.connect(path);
 * await client.send(new TextEncoder().encode("echo?"));
 * console.log(new TextDecoder().decode(await client.receive())); // "echo?"
 * await client.close();
 * await server.close(); // removes the socket file; the serving loop ends
 * await serving;
 * ```
 *
 * @example A socket a group may use, for peers that know a secret
 * ```ts
 * import { runtime, unix } from "ipckit";
 * const path = `/tmp/ipckit-group-${(await runtime()).pid}.sock`;
 * const secret = "shared by the group's services";
 * await using server = await unix.listen(path, { mode: 0o660, auth: { secret } }); // srw-rw----
 * await using client = await unix.connect(path, { auth: { secret } });
 * await using peer = await server.accept();
 * await client.send(new TextEncoder().encode("proven"));
 * console.log(new TextDecoder().decode(await peer.receive())); // "proven"
 * ```
 */
export async function listen(path: string, options: UnixListenOptions = {}): Promise<Listener> {
  checkFraming(options, `a Unix listener on "${path}"`);
  checkPath(path);
  const what = `listen on Unix socket "${path}"`;
  const mode = checkMode(options.mode, what);
  const timeout = checkHandshakeTimeout(options.handshakeTimeout, what);
  const onReject = checkOnReject(options.onReject, what);
  const auth = options.auth === undefined ? undefined : await prepareAuth(options.auth, what);
  const rt = await runtime();
  await prepare();
  let gate: HandshakeGate | undefined;
  const listener = new StreamListener({
    description: `Unix socket "${path}"`,
    wrap: (s) => wrap(s, path, options),
    afterClose: async () => {
      gate?.close();
      await rt.removeFile(path);
      unregister("unix", path);
    },
  }, options);
  if (auth) {
    const accepting = () => `accept a connection on Unix socket "${path}"`;
    gate = new HandshakeGate(auth, timeout, accepting, listener.onConnection, onReject);
  }
  listener.attach(await rt.listenUnix(path, gate?.onConnection ?? listener.onConnection, { mode }));
  register("unix", path);
  return listener;
}

/**
 * Connects to a Unix stream socket; with `auth`, resolves once both sides proved they know the secret.
 *
 * @throws {NotFoundError} when nothing listens at `path`.
 * @throws {PermissionError} when the socket file's mode does not let this user connect, or the auth handshake
 * failed.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, unix } from "ipckit";
 * const path = `/tmp/ipckit-service-${(await runtime()).pid}.sock`;
 * try {
 *   await unix.connect(path);
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true: nobody listens yet
 * }
 * await using server = await unix.listen(path, { framing: "lines" }); // both sides agree on the framing
 * await using client = await unix.connect(path, { framing: "lines" });
 * await using peer = await server.accept();
 * await client.send(new TextEncoder().encode('{"op":"ping"}')); // goes out as one line
 * console.log(new TextDecoder().decode(await peer.receive())); // '{"op":"ping"}'
 * ```
 */
export async function connect(path: string, options: UnixConnectOptions = {}): Promise<Channel> {
  checkFraming(options, `a Unix socket to "${path}"`);
  checkPath(path);
  const what = `connect to Unix socket "${path}"`;
  const timeout = checkHandshakeTimeout(options.handshakeTimeout, what);
  const auth = options.auth === undefined ? undefined : await prepareAuth(options.auth, what);
  const rt = await runtime();
  let stream = await rt.connectUnix(path);
  if (auth) stream = await authenticateStream(stream, auth, "client", timeout, what);
  return wrap(stream, path, options);
}
