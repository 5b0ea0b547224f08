/**
 * Unix datagram sockets (AF_UNIX, SOCK_DGRAM): message boundaries kept by the kernel, no connection, and on Linux
 * reliable and ordered: a sender waits while the receiver's queue is full instead of losing datagrams. No runtime
 * exposes them (Deno's `unixpacket` is unstable, Node and Bun have none), so ipckit reaches them through libc.
 *
 * - `unixDgram.bind(path)`: a socket bound at `path` that sends to any socket path and receives from anyone.
 * - `unixDgram.connect(path)`: a {@linkcode Channel} to the socket at `path`. It binds itself to an autobound
 *   abstract address (Linux picks a unique name like `@00012`), so the peer can answer.
 * - `socket.connect(peer)`: turns a bound socket into a Channel to `peer`.
 *
 * Addresses are socket file paths; a name starting with `@` is in Linux's abstract namespace (no file, gone with the
 * socket). Payloads travel as they are, so Python's `socket.AF_UNIX, socket.SOCK_DGRAM` or any C program is a peer.
 *
 * Sizes: a datagram may hold up to the sender's send buffer minus 32 bytes: 212 960 bytes with Linux's default
 * `net.core.wmem_default`; `sendBuffer` raises it up to `net.core.wmem_max`. A process sending to an unbound or
 * vanished path gets `NotFoundError`.
 *
 * Waiting: a non-blocking attempt first; when nothing is there (or the receiver is full), the socket waits in the
 * thread's one shared `poll(2)` (transports/poller.ts): every waiting socket of a thread together holds one thread of
 * the runtime's pool (koffi `.async` on Node and Bun, Deno's blocking pool), in slices of at most 100 ms, and none
 * while nothing waits. The I/O itself is always a non-blocking call on the main thread. `close()` ends the waits at
 * once, without waiting for that thread.
 *
 * @example
 * ```ts
 * import { runtime, unixDgram } from "ipckit";
 * const path = `/tmp/ipckit-app-${(await runtime()).pid}.dgram`;
 * await using server = await unixDgram.bind(path);
 * await using client = await unixDgram.connect(path);
 * await client.send(new TextEncoder().encode("ping"));
 * const { data, from } = await server.receive();
 * await server.send(data, from); // `from` is the client's autobound "@xxxxx" address
 * console.log(new TextDecoder().decode(await client.receive())); // "ping"
 * ```
 *
 * Why one file of ~580 lines: the datagram socket through libc (bind, connect, send and receive with the poller, path
 * checks, modes) and the Channel over it are one object's two faces; the Channel adapter could move apart.
 *
 * @module
 */
import { onAbort } from "../async/abort.ts";
import { Turns } from "../async/turns.ts";
import { ClosedError, MessageTooLargeError, NotFoundError, PermissionError, UnsupportedError } from "../errors.ts";
import {
  AF_UNIX,
  AT_EMPTY_PATH,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_TRUNC,
  O_CLOEXEC,
  O_NOFOLLOW,
  O_PATH,
  POLLIN,
  POLLOUT,
  S_IFMT,
  S_IFSOCK,
  SHUT_RDWR,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCKADDR_UN_SIZE,
  SOL_SOCKET,
  STATX_MODE,
  STATX_SIZE,
  STATX_TYPE,
  STATX_UID,
  STX_MODE,
  STX_UID,
  SUN_PATH_LINUX,
} from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { prepare, register, unregister } from "../registry.ts";
import { type FdWait, type Poller, poller } from "./poller.ts";
import type { Capabilities } from "./channel.ts";
import {
  type DatagramChannel,
  type DatagramEndpoint,
  type DatagramOptions,
  type DatagramSink,
  DatagramSocket,
} from "./datagram.ts";

const { EAGAIN, EINTR, ENOENT, ECONNREFUSED, EADDRINUSE, EMSGSIZE } = ERRNO as Record<string, number>;

/** sizeof(struct sockaddr_un) on Linux: a 2-byte family and 108 bytes of path. */
const SOCKADDR_SIZE = SOCKADDR_UN_SIZE;
/** The longest address sun_path holds (its last byte is the NUL). */
const PATH_MAX = SUN_PATH_LINUX - 1;
/** The kernel's per-datagram overhead charged to the send buffer. */
const OVERHEAD = 32;

/**
 * What a Unix datagram channel promises (the size is Linux's default; see the module doc).
 *
 * @example
 * ```ts
 * import { unixDgram } from "ipckit";
 * console.log(unixDgram.capabilities.datagram, unixDgram.capabilities.reliable); // true true (on Linux)
 * ```
 */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: 212_992 - OVERHEAD,
  crossHost: false,
  datagram: true,
};

/** Options of {@linkcode bind} and {@linkcode connect}. */
export interface UnixDgramOptions extends DatagramOptions {
  /** SO_SNDBUF in bytes: the largest datagram this socket can send is the result minus 32 (Linux doubles it). */
  sendBuffer?: number;
  /**
   * Permission bits of the socket file a path-bound socket creates: who may send to it. 0o600 (only this user) by
   * default; the file never exists with other bits, whatever the umask. Abstract (`@name`) addresses have no file.
   */
  mode?: number;
}

/** Options of {@linkcode connect}. */
export interface UnixDgramConnectOptions extends UnixDgramOptions {
  /** A path (or `@name`) to bind this end to, instead of an autobound abstract name. */
  bind?: string;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An encoded `struct sockaddr_un`. */
interface Sockaddr {
  readonly bytes: Uint8Array;
  readonly length: number;
}

/** Encodes `path` (`""` asks for autobind, `@name` is abstract). */
function sockaddr(path: unknown, what: string): Sockaddr {
  if (typeof path !== "string" || path.includes("\0")) {
    throw new TypeError(`Cannot ${what}: the address ${JSON.stringify(path)} must be a path string without NUL`);
  }
  const bytes = new Uint8Array(SOCKADDR_SIZE);
  bytes[0] = AF_UNIX; // sa_family_t, little-endian on every Linux ipckit supports
  const abstract = path.startsWith("@");
  const name = encoder.encode(abstract ? path.slice(1) : path);
  if (name.length > PATH_MAX) {
    throw new RangeError(
      `Cannot ${what}: the address "${path}" is ${name.length} bytes long; a Unix socket address holds at most ${PATH_MAX}`,
    );
  }
  if (path === "") return { bytes, length: 2 };
  if (abstract) {
    bytes.set(name, 3); // sun_path[0] = 0 marks the abstract namespace
    return { bytes, length: 3 + name.length };
  }
  bytes.set(name, 2);
  return { bytes, length: 2 + name.length + 1 };
}

/** Decodes a `struct sockaddr_un` of `length` bytes. */
function parseSockaddr(bytes: Uint8Array, length: number): string {
  if (length <= 2) return "";
  if (bytes[2] === 0) return "@" + decoder.decode(bytes.subarray(3, length));
  const end = bytes.indexOf(0, 2);
  return decoder.decode(bytes.subarray(2, end < 0 || end > length ? length : end));
}

function sendError(errno: number, to: string, description: string, size: number, limit: number): Error {
  if (errno === ENOENT || errno === ECONNREFUSED) {
    return new NotFoundError(`Cannot send on ${description}: no socket is bound at "${to}"`, {
      code: errno === ENOENT ? "ENOENT" : "ECONNREFUSED",
    });
  }
  if (errno === EMSGSIZE) {
    return new MessageTooLargeError(
      `Cannot send a datagram of ${size} bytes on ${description}: it exceeds the send buffer (at most ${limit} bytes; see sendBuffer)`,
      size,
      limit,
      { code: "EMSGSIZE" },
    );
  }
  return errnoError(errno, `send on ${description} to "${to}"`);
}

/** An AF_UNIX SOCK_DGRAM socket reached through libc. */
class UnixDgramEndpoint implements DatagramEndpoint<string> {
  readonly description: string;
  readonly reliable = true;
  readonly crossHost = false;
  readonly limit: number;
  readonly address: string;
  #ffi: Native;
  #fd: number;
  /** The socket file this endpoint created (removed on close). */
  #ownedPath: string | undefined;
  #peer = "";
  #sink: DatagramSink<string> | undefined;
  #buffer = new Uint8Array(1);
  #from = new Uint8Array(SOCKADDR_SIZE);
  #fromLength = new Uint32Array(1);
  #lastFrom = { bytes: new Uint8Array(0), text: "" };
  #paused = false;
  #failed = false;
  #pump: Promise<void> | undefined;
  #closing = false;
  #closed: Promise<void> | undefined;
  /** Sends that wait for room, in order. */
  readonly #sends = new Turns();
  #poller: Poller;
  /** The receive loop's wait for a datagram, and the first queued send's wait for room. */
  #readable: FdWait | undefined;
  #writable: FdWait | undefined;
  /** A `struct pollfd` for checking this socket's own send buffer. */
  #pollfd = new Int32Array(2);

  constructor(ffi: Native, fd: number, address: string, ownedPath: string | undefined) {
    this.#ffi = ffi;
    this.#fd = fd;
    this.address = address;
    this.#ownedPath = ownedPath;
    this.#poller = poller(ffi);
    this.description = `Unix datagram socket "${address}"`;
    const size = new Int32Array(1);
    const length = new Uint32Array([4]);
    if (ffi.call.getsockopt(fd, SOL_SOCKET, SO_SNDBUF, size, length) !== 0) {
      throw errnoError(ffi.errno(), `query ${this.description}`);
    }
    this.limit = size[0]! - OVERHEAD;
  }

  start(sink: DatagramSink<string>, limit: number): void {
    this.#sink = sink;
    if (this.#buffer.length !== limit + 1) this.#buffer = new Uint8Array(limit + 1);
    this.#startPump();
  }

  pause(): void {
    this.#paused = true;
    this.#readable?.cancel(); // the loop stops; nothing waits while paused
  }

  resume(): void {
    this.#paused = false;
    this.#startPump();
  }

  #startPump(): void {
    if (this.#pump || this.#closing || this.#paused || this.#failed || !this.#sink) return;
    this.#pump = this.#receiveLoop().finally(() => {
      this.#pump = undefined;
      if (!this.#paused && !this.#closing) this.#startPump();
    });
  }

  async #receiveLoop(): Promise<void> {
    const { call } = this.#ffi;
    while (!this.#closing && !this.#paused && this.#sink) {
      const buffer = this.#buffer;
      this.#fromLength[0] = SOCKADDR_SIZE;
      const n = call.recvfrom(this.#fd, buffer, buffer.length, MSG_DONTWAIT | MSG_TRUNC, this.#from, this.#fromLength);
      if (n < 0) {
        const errno = this.#ffi.errno();
        if (errno === EINTR) continue;
        let error: Error | undefined;
        if (errno === EAGAIN) {
          // Nothing queued: wait with the thread's other waiting sockets, then try again (close and pause cancel).
          try {
            this.#readable = this.#poller.wait(this.#fd, POLLIN);
            await this.#readable.ready;
            this.#readable = undefined;
            continue;
          } catch (e) {
            error = e as Error;
          }
        }
        this.#failed = true; // no restart: the socket is broken
        this.#sink.error(error ?? errnoError(errno, `receive on ${this.description}`));
        return;
      }
      const from = this.#fromAddress();
      if (n >= buffer.length) this.#sink?.tooLarge(n, from);
      else this.#sink?.data(buffer.slice(0, n), from);
    }
  }

  /** The sender of the last datagram, decoded once per distinct sender. */
  #fromAddress(): string {
    const length = Math.min(this.#fromLength[0]!, SOCKADDR_SIZE);
    const raw = this.#from.subarray(0, length);
    const last = this.#lastFrom;
    if (last.bytes.length === length && last.bytes.every((b, i) => b === raw[i])) return last.text;
    this.#lastFrom = { bytes: raw.slice(), text: parseSockaddr(raw, length) };
    return this.#lastFrom.text;
  }

  connect(to: string): Promise<void> {
    try {
      this.#connect(to);
      return Promise.resolve();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #connect(to: string): void {
    const addr = sockaddr(to, `connect ${this.description}`);
    if (this.#ffi.call.connect(this.#fd, addr.bytes, addr.length) !== 0) {
      const errno = this.#ffi.errno();
      throw errno === ENOENT || errno === ECONNREFUSED
        ? new NotFoundError(`Cannot connect ${this.description} to "${to}": no socket is bound there`, {
          code: errno === ENOENT ? "ENOENT" : "ECONNREFUSED",
        })
        : errnoError(errno, `connect ${this.description} to "${to}"`);
    }
    this.#peer = to;
  }

  send(data: Uint8Array, to: string | undefined, signal?: AbortSignal): Promise<void> | undefined {
    const addr = to === undefined ? undefined : sockaddr(to, `send on ${this.description}`);
    const where = to ?? this.#peer;
    if (this.#sends.pending === 0 && this.#trySend(data, addr, where)) return undefined;
    return this.#sends.run(() => this.#sendWaiting(data, addr, where, signal));
  }

  /** One non-blocking attempt: true when sent, false when the receiver's queue is full. */
  #trySend(data: Uint8Array, addr: Sockaddr | undefined, where: string): boolean {
    for (;;) {
      const n = this.#ffi.call.sendto(
        this.#fd,
        data,
        data.byteLength,
        MSG_DONTWAIT | MSG_NOSIGNAL,
        addr?.bytes ?? null,
        addr?.length ?? 0,
      );
      if (n >= 0) return true;
      const errno = this.#ffi.errno();
      if (errno === EINTR) continue;
      if (errno === EAGAIN) return false;
      throw sendError(errno, where, this.description, data.byteLength, this.limit);
    }
  }

  /**
   * Waits for room and sends, re-trying the non-blocking send after each wake; close and abort end the wait at once.
   *
   * What to wait on: a connected socket's POLLOUT covers both its own send buffer and the peer's queue (the kernel
   * wakes it when the peer reads). Sending to an address, POLLOUT covers only the own send buffer; when that has
   * room, the receiver's queue is what is full, and the wait is on a probe socket connected to the receiver.
   */
  async #sendWaiting(data: Uint8Array, addr: Sockaddr | undefined, where: string, signal?: AbortSignal): Promise<void> {
    const { call } = this.#ffi;
    let probe = -1;
    const unlisten = onAbort(signal, () => this.#writable?.cancel());
    try {
      for (;;) {
        if (this.#closing) throw new ClosedError(`Cannot send on ${this.description}: it is closed`);
        signal?.throwIfAborted();
        if (this.#trySend(data, addr, where)) return;
        let fd = this.#fd;
        if (addr !== undefined && this.#hasRoom()) {
          if (probe < 0) probe = this.#probe(addr);
          if (probe < 0) {
            // No probe (the receiver is gone, or refuses): the send says why (NotFoundError...), or this does.
            if (this.#trySend(data, addr, where)) return;
            throw errnoError(-probe, `wait for room to send on ${this.description} to "${where}"`);
          }
          fd = probe;
        }
        this.#writable = this.#poller.wait(fd, POLLOUT);
        await this.#writable.ready;
        this.#writable = undefined;
      }
    } finally {
      unlisten();
      if (probe >= 0) call.close(probe);
    }
  }

  /** Whether this socket's own send buffer has room (POLLOUT now). */
  #hasRoom(): boolean {
    const pollfd = this.#pollfd;
    pollfd[0] = this.#fd;
    pollfd[1] = POLLOUT; // events, and revents = 0
    return this.#ffi.call.poll(pollfd, 1, 0) === 1 && (pollfd[1] >>> 16 & POLLOUT) !== 0;
  }

  /** A socket connected to `addr`, whose POLLOUT says when the receiver has room; -errno on failure. */
  #probe(addr: Sockaddr): number {
    const { call } = this.#ffi;
    const fd = call.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -this.#ffi.errno();
    if (call.connect(fd, addr.bytes, addr.length) === 0) return fd;
    const errno = this.#ffi.errno();
    call.close(fd);
    return -errno;
  }

  close(): Promise<void> {
    return (this.#closed ??= this.#close());
  }

  async #close(): Promise<void> {
    this.#closing = true;
    this.#sink = undefined;
    const { call } = this.#ffi;
    call.shutdown(this.#fd, SHUT_RDWR); // peers' sends fail from now on
    this.#readable?.cancel();
    this.#writable?.cancel();
    await Promise.all([this.#pump, this.#sends.idle()]);
    call.close(this.#fd);
    if (this.#ownedPath !== undefined) {
      call.unlink(this.#ffi.cstring(this.#ownedPath));
      unregister("dgram", this.#ownedPath);
    }
  }

  same(a: string, b: string): boolean {
    return a === b;
  }

  format(a: string): string {
    return `"${a}"`;
  }
}

/** Validates a socket file mode. */
function checkMode(mode: unknown, what: string): number {
  if (mode === undefined) return DEFAULT_MODE;
  if (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o777) {
    throw new RangeError(`Cannot ${what}: mode ${String(mode)} must be permission bits from 0 to 0o777`);
  }
  return mode as number;
}

const DEFAULT_MODE = 0o600;
const STATX_TYPE_MODE_UID = STATX_TYPE | STATX_MODE | STATX_UID;

/**
 * Binds `fd` at the file `path` with permission bits `mode`. Linux creates a socket file with the mode of the
 * socket's inode minus the umask (net/unix/af_unix.c), so an fchmod before bind makes the file appear with at most
 * `mode`: never wider, not even for an instant. Bits the umask removed are added back through an `O_PATH`
 * descriptor checked to be this user's socket, so a symlink planted at `path` is never followed.
 */
function bindWithMode(ffi: Native, fd: number, path: string, addr: Sockaddr, mode: number, what: string): void {
  const { call } = ffi;
  if (call.fchmod(fd, mode) !== 0) throw errnoError(ffi.errno(), `${what}: set its mode`);
  if (call.bind(fd, addr.bytes, addr.length) !== 0) {
    const errno = ffi.errno();
    if (errno === EADDRINUSE) {
      throw errnoError(
        errno,
        `${what}: something already exists at "${path}" (a socket file left by a dead process can be removed)`,
      );
    }
    throw errnoError(errno, what);
  }
  const file = call.open(ffi.cstring(path), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
  if (file < 0) throw errnoError(ffi.errno(), `${what}: inspect the socket file`);
  try {
    const stx = new Uint8Array(STATX_SIZE);
    if (call.statx(file, new Uint8Array(1), AT_EMPTY_PATH, STATX_TYPE_MODE_UID, stx) !== 0) {
      throw errnoError(ffi.errno(), `${what}: inspect the socket file`);
    }
    const v = new DataView(stx.buffer);
    const fileMode = v.getUint16(STX_MODE, true);
    if ((fileMode & S_IFMT) !== S_IFSOCK || v.getUint32(STX_UID, true) !== call.getuid()) {
      throw new PermissionError(`Cannot ${what}: "${path}" was replaced by something else while it was bound`);
    }
    if ((fileMode & 0o7777) !== mode && call.chmod(ffi.cstring(`/proc/self/fd/${file}`), mode) !== 0) {
      throw errnoError(ffi.errno(), `${what}: set its mode`);
    }
  } catch (e) {
    call.unlink(ffi.cstring(path));
    throw e;
  } finally {
    call.close(file);
  }
}

/** Opens a socket bound at `path` (`""`: autobind). */
async function open(path: string, options: UnixDgramOptions, what: string): Promise<UnixDgramEndpoint> {
  const addr = sockaddr(path, what);
  const mode = checkMode(options.mode, what);
  const ffi = await native().catch((e) => {
    throw new UnsupportedError(`Cannot ${what}: Unix datagram sockets need FFI (${(e as Error).message})`, {
      cause: e,
    });
  });
  const { call } = ffi;
  if (path !== "" && !path.startsWith("@")) await prepare();
  const fd = call.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errnoError(ffi.errno(), what);
  try {
    const sendBuffer = options.sendBuffer;
    if (sendBuffer !== undefined) {
      if (!Number.isSafeInteger(sendBuffer) || sendBuffer < 1024 || sendBuffer > 0x3fff_ffff) {
        throw new RangeError(`Cannot ${what}: sendBuffer ${sendBuffer} must be an integer from 1024 to 2^30 - 1`);
      }
      if (call.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, new Int32Array([sendBuffer]), 4) !== 0) {
        throw errnoError(ffi.errno(), `${what}: set sendBuffer`);
      }
    }
    if (path !== "" && !path.startsWith("@")) {
      bindWithMode(ffi, fd, path, addr, mode, what);
    } else if (call.bind(fd, addr.bytes, addr.length) !== 0) {
      throw errnoError(ffi.errno(), what);
    }
    const name = new Uint8Array(SOCKADDR_SIZE);
    const nameLength = new Uint32Array([SOCKADDR_SIZE]);
    if (call.getsockname(fd, name, nameLength) !== 0) throw errnoError(ffi.errno(), what);
    const address = parseSockaddr(name, nameLength[0]!);
    const owned = path === "" || path.startsWith("@") ? undefined : path;
    if (owned !== undefined) register("dgram", owned);
    return new UnixDgramEndpoint(ffi, fd, address, owned);
  } catch (e) {
    call.close(fd);
    throw e;
  }
}

/**
 * Binds a Unix datagram socket at `path` (a file the socket creates and `close()` removes; `@name` is abstract).
 *
 * @throws {AlreadyExistsError} when something exists at `path`; `NotFoundError` when its directory does not.
 *
 * @example
 * ```ts
 * import { runtime, unixDgram } from "ipckit";
 * const pid = (await runtime()).pid;
 * await using collector = await unixDgram.bind(`@ipckit-metrics-${pid}`); // abstract: no file to remove
 * await using reporter = await unixDgram.connect(collector.address); // any number of them, from any process
 * await reporter.send(new TextEncoder().encode("cpu 12"));
 * await reporter.send(new TextEncoder().encode("mem 34"));
 * for (let i = 0; i < 2; i++) {
 *   const { data, from } = await collector.receive({ timeout: 1000 });
 *   console.log(new TextDecoder().decode(data), from === reporter.address); // "cpu 12" true, then "mem 34" true
 * }
 * ```
 */
export async function bind(path: string, options: UnixDgramOptions = {}): Promise<DatagramSocket<string>> {
  if (path === "") throw new TypeError("Cannot bind a Unix datagram socket: the path is empty");
  const endpoint = await open(path, options, `bind Unix datagram socket "${path}"`);
  try {
    return new DatagramSocket(endpoint, options);
  } catch (e) {
    await endpoint.close();
    throw e;
  }
}

/**
 * A Channel to the Unix datagram socket at `path`. This end autobinds an abstract address unless `options.bind`
 * names one. Nothing is sent to connect: the peer learns of this channel from its first datagram.
 *
 * @throws {NotFoundError} when no socket is bound at `path`.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, unixDgram } from "ipckit";
 * const path = `/tmp/ipckit-echo-${(await runtime()).pid}.dgram`;
 * try {
 *   await unixDgram.connect(path);
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true: no socket is bound there
 * }
 * await using server = await unixDgram.bind(path);
 * await using client = await unixDgram.connect(path); // a Channel to one peer
 * await client.send(new Uint8Array([1, 2]));
 * const first = await server.receive({ timeout: 1000 });
 * await using reply = await server.connect(first.from); // the server's Channel back to this client
 * await reply.send(first.data);
 * console.log(await client.receive({ timeout: 1000 })); // Uint8Array [1, 2]
 * ```
 */
export async function connect(path: string, options: UnixDgramConnectOptions = {}): Promise<DatagramChannel<string>> {
  const what = `connect a Unix datagram channel to "${path}"`;
  sockaddr(path, what);
  const endpoint = await open(options.bind ?? "", options, what);
  try {
    return await new DatagramSocket(endpoint, options).connect(path, options);
  } catch (e) {
    await endpoint.close();
    throw e;
  }
}
