/**
 * The Unix datagram socket (AF_UNIX, SOCK_DGRAM) as an OS object, through libc: no runtime exposes one (Deno's
 * `unixpacket` is unstable, Node and Bun have none). Addresses are socket file paths; a name starting with `@` is in
 * Linux's abstract namespace. Making one (bind with a race-free mode, send buffer, autobind) is
 * `os/unix_dgram_open.ts`; the Channel and the bound socket users see are `transports/unix_dgram.ts`.
 *
 * Waiting: a non-blocking attempt first; when nothing is there (or the receiver is full), the socket waits in the
 * thread's one shared `poll(2)` (`os/poller.ts`): every waiting socket of a thread together holds one thread of the
 * runtime's pool (koffi `.async` on Node and Bun, Deno's blocking pool), in slices of at most 100 ms, and none while
 * nothing waits. The I/O itself is always a non-blocking call on the main thread. `close()` ends the waits at once,
 * without waiting for that thread.
 *
 * @module
 */
import { onAbort } from "../async/abort.ts";
import { Turns } from "../async/turns.ts";
import { ClosedError, MessageTooLargeError, NotFoundError } from "../errors.ts";
import {
  AF_UNIX,
  MSG_DONTWAIT,
  MSG_NOSIGNAL,
  MSG_TRUNC,
  POLLIN,
  POLLOUT,
  SHUT_RDWR,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCKADDR_UN_SIZE,
  SOL_SOCKET,
  SUN_PATH_LINUX,
} from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import { unregister } from "../registry.ts";
import type { DatagramEndpoint, DatagramSink } from "./datagram_endpoint.ts";
import { type FdWait, type Poller, poller } from "./poller.ts";

const { EAGAIN, EINTR, ENOENT, ECONNREFUSED, EMSGSIZE } = ERRNO as Record<string, number>;

/** sizeof(struct sockaddr_un) on Linux: a 2-byte family and 108 bytes of path. */
export const SOCKADDR_SIZE = SOCKADDR_UN_SIZE;
/** The longest address sun_path holds (its last byte is the NUL). */
const PATH_MAX = SUN_PATH_LINUX - 1;
/** The kernel's per-datagram overhead charged to the send buffer. */
export const OVERHEAD = 32;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** An encoded `struct sockaddr_un`. */
export interface Sockaddr {
  readonly bytes: Uint8Array;
  readonly length: number;
}

/**
 * Encodes `path` (`""` asks for autobind, `@name` is abstract).
 *
 * @throws {TypeError} when it is not a string without NUL; {@linkcode RangeError} when it is too long.
 */
export function sockaddr(path: unknown, what: string): Sockaddr {
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
export function parseSockaddr(bytes: Uint8Array, length: number): string {
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

/**
 * An AF_UNIX SOCK_DGRAM socket reached through libc, bound (made by `openSocket`, `os/unix_dgram_open.ts`). It is
 * the datagram endpoint of `transports/unix_dgram.ts`: `start(sink)` pumps received datagrams into the sink, `send`
 * tries once without blocking and otherwise waits for room in the thread's poller, `close()` ends both at once.
 */
export class UnixDgramSocket implements DatagramEndpoint<string> {
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

  /** Takes over `fd`, bound at `address`; `ownedPath` is the socket file it created (removed on close). */
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
      unregister("unix_dgram", this.#ownedPath);
    }
  }

  same(a: string, b: string): boolean {
    return a === b;
  }

  format(a: string): string {
    return `"${a}"`;
  }
}
