/**
 * A shared-memory listener: `shm.listen(name)` serves any number of clients, `shm.connect(name)` is one of them.
 * Each client gets a channel of its own (a ring pair in a fresh segment, made as `shm.create`/`shm.open` make one),
 * so `rpc.serve(listener, handlers)` serves them all over shared memory as it serves a Unix listener's connections.
 *
 * ## The rendezvous
 *
 * The listener owns one Unix stream socket, `<dir>/<name without its "/">.sock`, where `<dir>` is the `dir` option,
 * else `$XDG_RUNTIME_DIR/ipckit-shm-<uid>`, else `$TMPDIR/ipckit-shm-<uid>` (`/tmp` without TMPDIR): a directory
 * made with mode 0700 and used only when it belongs to this user and nobody else may enter it, so no other user
 * can put a socket there to pose as the listener. The socket file is created 0600 and recorded in the registry
 * (kind `unix`, as `unix.listen` records its file), and removed by `close()`. A client asks for its channel on a
 * connection to it; all integers are little-endian:
 *
 * ```text
 * client -> listener, the request (16 bytes)
 * offset  size  field
 * 0       4     magic 0x4c435049 (the bytes "IPCL")
 * 4       4     version: 1
 * 8       4     the client's pid
 * 12      4     reserved, 0
 *
 * listener -> client, the reply (12 + L bytes)
 * 0       4     magic 0x4c435049
 * 4       4     status: 0 ok; 1 busy (too many rendezvous in progress); 2 bad request (magic or version);
 *               3 failed (the listener could not make a segment); 4 full (it serves `maxConnections` clients)
 * 8       4     L: length of the segment name (0 unless ok; at most 255)
 * 12      L     the segment name, UTF-8: the listener's name, "-", then 24 random hex digits
 *
 * client -> listener, the attach notice (1 byte, 0x01), sent once the client attached (below)
 * ```
 *
 * On an ok reply the client opens the segment (a channel laid out as `shm/ring_channel_layout.ts` says, the
 * listener recorded as its creator, no doorbell path), claims side 1 with the doorbell (the header's `attached`
 * word set to 1), and sends the notice. On any byte after the request the listener looks at `attached`; once it is
 * 1 and the process recorded as the opener is the pid of the request, it removes the segment's name (and record)
 * and the channel is ready for `accept()`. From then on **the same connection is the channel's doorbell**
 * (`shm/doorbell.ts`: each side writes a byte when the other announced it sleeps), so a client costs one socket
 * and one segment, and a dead client is seen at once (the kernel ends its connection).
 *
 * Why this shape: a socket connection is the one rendezvous object whose end the kernel reports when either side
 * dies, so cleaning up after a client is the listener's own business and needs no timers on shared memory. The
 * listener makes the segment (a client names nothing, so it cannot make the listener open or remove a name it does
 * not own), its name is random and removed as soon as the client attached, and it learns of the attach from the
 * connection instead of waiting on the segment's futex (no thread is held per pending client). A client killed at
 * any step leaves nothing: before the attach the listener removes the segment when the connection ends, after it
 * the name is gone already. A hostile client cannot stall others: a request is read into 16 bytes (more is not
 * kept), a rendezvous not finished within `handshakeTimeout` is dropped (segment removed, connection closed), at
 * most `maxPending` run at once (more get "busy"), at most `backlog` channels wait for `accept()`, and with
 * `maxConnections` at most that many channels are open at once (rendezvous in progress, waiting and accepted; more get
 * "full"). With `idleTimeout`, an accepted channel over which no message went either way for that long is closed. If the
 * listener process dies, its socket file and the segments of rendezvous in progress stay, recorded: `ipckit clean`
 * removes them.
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const name = `/ipckit-echo-${(await runtime()).pid}`;
 * await using listener = await shm.listen(name, { capacity: 64 * 1024 });
 * const [client, served] = await Promise.all([shm.connect(name), listener.accept()]);
 * await client.send(new TextEncoder().encode("over shared memory"));
 * await served.send(await served.receive());
 * console.log(new TextDecoder().decode(await client.receive())); // "over shared memory"
 * await client.close();
 * await served.close();
 * ```
 *
 * @module
 */
import { onAbort } from "../async/mod.ts";
import {
  AlreadyExistsError,
  ClosedError,
  IpcError,
  NotFoundError,
  PermissionError,
  ProtocolError,
  TimeoutError,
} from "../errors.ts";
import { SUN_PATH_LINUX, SUN_PATH_MACOS } from "../ffi/constants.ts";
import { type Native, native } from "../ffi/native.ts";
import { self } from "../os/liveness.ts";
import { prepare, register, unregister } from "../registry.ts";
import { runtime } from "../runtimes/detect.ts";
import type { ByteSink, ByteStream, Runtime, Server } from "../runtimes/runtime.ts";
import { Doorbell } from "../shm/doorbell.ts";
import { idleOption, type IdleStrategy } from "../shm/idle.ts";
import {
  attachedOpener,
  attachOpener,
  channelSize,
  checkMaxMessage,
  initLayout,
  openLaidOut,
  processParts,
  spinOption,
} from "../shm/ring_channel_layout.ts";
import { ringCapacity } from "../shm/ring.ts";
import { checkName, SharedMemory } from "../shm/segment.ts";
import { checkHandshakeTimeout } from "./auth.ts";
import { checkOnReject } from "./handshakes.ts";
import { IdleWatch, listenerLimits, QueuedListener, type Watched } from "./listener.ts";
import { ShmChannel } from "./shm.ts";

const MAGIC = 0x4c435049;
const VERSION = 1;
const REQUEST = 16;
const REPLY_HEAD = 12;
const OK = 0, BUSY = 1, BAD_REQUEST = 2, FAILED = 3, FULL = 4;
const ATTACHED = new Uint8Array([1]);
const MAX_NAME = 255;
/** The shorter sun_path (macOS, Linux), less its NUL: a socket path that works on both. */
const MAX_PATH = Math.min(SUN_PATH_LINUX, SUN_PATH_MACOS) - 1;
const DEFAULT_CAPACITY = 1 << 20;
/** Channels waiting for accept(): each holds a mapping of two rings, so fewer than a socket listener's default. */
const DEFAULT_BACKLOG = 64;
const DEFAULT_MAX_PENDING = 16;
const DEFAULT_TIMEOUT = 10_000;

/** Options of {@linkcode listen}. */
export interface ShmListenOptions {
  /** Data bytes of each ring of each client's channel (rounded up to a power of two, at least 64); 1 MiB by default. */
  capacity?: number;
  /** Largest message the listener's ends send or accept, at most `capacity - 8`; the ring's limit by default. */
  maxMessage?: number;
  /** How the listener's ends wait (see `shm.ShmOptions.idle`); `"spin-then-park"` by default. */
  idle?: IdleStrategy;
  /** Microseconds the listener's ends spin at most before sleeping; 50 by default. */
  spin?: number;
  /** Where the rendezvous socket is (both sides must name the same); see the module doc for the default. */
  dir?: string;
  /** Milliseconds a client has from connecting to attaching; 10 000 by default. */
  handshakeTimeout?: number;
  /** Rendezvous in progress at once, at most; beyond it a client is answered "busy". 16 by default. */
  maxPending?: number;
  /** Channels waiting for `accept()`, at most; beyond it a new one is closed at once. 64 by default. */
  backlog?: number;
  /**
   * Channels open at once, at most: rendezvous in progress, channels waiting for `accept()`, and accepted ones not
   * closed yet (each holds a segment of two rings). Beyond it a client is answered "full". No limit by default.
   */
  maxConnections?: number;
  /**
   * Milliseconds an accepted channel may go without a message either way; then the listener closes it (its
   * `receive()` rejects with a `ClosedError` whose cause is a `TimeoutError`, the client's with the peer's close).
   * 0 (the default): never.
   */
  idleTimeout?: number;
  /** Told about each client refused before its channel was ready (bad bytes, too slow, busy). */
  onReject?: (error: Error) => void;
}

/** Options of {@linkcode connect}. */
export interface ShmConnectOptions {
  /** Largest message this end sends or accepts, at most the listener's ring capacity - 8; the ring's by default. */
  maxMessage?: number;
  /** How this end waits (see `shm.ShmOptions.idle`). */
  idle?: IdleStrategy;
  /** Microseconds to spin at most before sleeping; 50 by default. */
  spin?: number;
  /** Where the listener's rendezvous socket is; see the module doc for the default. */
  dir?: string;
  /** Aborts the rendezvous. */
  signal?: AbortSignal;
  /** Milliseconds the whole rendezvous may take; 10 000 by default. */
  timeout?: number;
}

/**
 * Listens for shm clients under `name`: every `shm.connect(name)` becomes one channel of its own, in a fresh segment.
 *
 * @param name A shared memory name (`/app`): it names the rendezvous socket, and prefixes each client's segment.
 * @returns A Listener: `accept()` or `for await` yields one `ShmChannel` per client.
 * @throws {AlreadyExistsError} when a listener of that name exists (or a dead one left its socket: `ipckit clean`).
 * @throws {PermissionError} when the rendezvous directory is not this user's private directory.
 * @throws {TypeError} for a bad name; {@linkcode RangeError} for a bad option, or a name too long for a socket path.
 *
 * @example
 * ```ts
 * import { rpc, runtime, runtimeArgv, shm } from "ipckit";
 * const rt = await runtime();
 * const [role, name] = rt.args();
 * if (role === "client") {
 *   await using client = rpc.connect<{ add(a: number, b: number): number }>(await shm.connect(name!));
 *   console.log(`${rt.name}: 2 + 3 = ${await client.api.add(2, 3)}`);
 * } else {
 *   const service = `/ipckit-calc-${rt.pid}`;
 *   await using server = rpc.serve(await shm.listen(service), { add: (a: number, b: number) => a + b });
 *   const argv = (r: "bun" | "node") => [...runtimeArgv(r, rt.fromFileUrl(import.meta.url)), "client", service];
 *   const clients = [rt.spawn(argv("bun"), { stdio: "inherit" }), rt.spawn(argv("node"), { stdio: "inherit" })];
 *   console.log((await Promise.all(clients.map((c) => c.exited))).map((s) => s.code)); // [0, 0]
 * }
 * ```
 */
export async function listen(name: string, options: ShmListenOptions = {}): Promise<ShmListener> {
  checkName(name);
  const what = `listen on shm "${name}"`;
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  spinOption(options.spin);
  idleOption(options.idle);
  checkMaxMessage(options.maxMessage, capacity);
  const timeout = checkHandshakeTimeout(options.handshakeTimeout, what);
  const onReject = checkOnReject(options.onReject, what);
  const maxPending = options.maxPending ?? DEFAULT_MAX_PENDING;
  if (!Number.isSafeInteger(maxPending) || maxPending < 1) {
    throw new RangeError(`Cannot ${what}: maxPending ${String(maxPending)} must be a positive integer`);
  }
  const limits = listenerLimits({
    backlog: options.backlog ?? DEFAULT_BACKLOG,
    ...(options.maxConnections === undefined ? {} : { maxConnections: options.maxConnections }),
    ...(options.idleTimeout === undefined ? {} : { idleTimeout: options.idleTimeout }),
  }, `shm listener "${name}"`);
  if (new TextEncoder().encode(name).byteLength + 25 > MAX_NAME) {
    throw new RangeError(`Cannot ${what}: the name leaves no room for the clients' segment names (at most 230 bytes)`);
  }
  const [ffi, rt] = await Promise.all([native(), runtime()]);
  await prepare();
  // Another listener closing may remove the shared directory between making it and binding in it: make it again.
  for (let attempt = 0;; attempt++) {
    const { dir, path } = await rendezvousPath(rt, ffi, name, options.dir, what, true);
    const listener = new ShmListener(name, path, {
      ffi,
      rt,
      capacity,
      options,
      timeout,
      maxPending,
      onReject,
      removeDir: options.dir === undefined ? dir : undefined,
      maxConnections: limits.maxConnections,
      idle: limits.idleTimeout > 0 ? new IdleWatch(limits.idleTimeout, `shm listener "${name}"`) : undefined,
    }, limits.backlog);
    try {
      listener.attach(await rt.listenUnix(path, listener.onConnection, { mode: 0o600 }));
    } catch (e) {
      if (e instanceof NotFoundError && attempt < 3) continue;
      if (e instanceof AlreadyExistsError) {
        throw new AlreadyExistsError(
          `Cannot ${what}: its rendezvous socket "${path}" exists (another listener, or one that died: \`ipckit clean\` removes what dead processes left)`,
          { ...(e.code === undefined ? {} : { code: e.code }), cause: e },
        );
      }
      throw e;
    }
    register("unix", path);
    return listener;
  }
}

/**
 * Connects to the shm listener `name`: asks it for a channel of its own and attaches to it.
 *
 * @throws {NotFoundError} when nothing listens under `name` (none started, or it closed).
 * @throws {ClosedError} when the listener closed the connection during the rendezvous (it is closing).
 * @throws {TimeoutError} after `timeout` ms; the signal's reason when it aborts.
 * @throws {IpcError} when the listener is busy (code `EAGAIN`) or could not make the segment;
 * {@linkcode ProtocolError} when it answers with what no ipckit listener sends.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, shm } from "ipckit";
 * const name = `/ipckit-late-listener-${(await runtime()).pid}`;
 * try {
 *   await shm.connect(name);
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true: nobody listens yet
 * }
 * const listener = await shm.listen(name, { capacity: 4096 });
 * const clients = await Promise.all([shm.connect(name), shm.connect(name)]); // each gets its own rings
 * const served = [await listener.accept(), await listener.accept()];
 * await clients[1]!.send(new Uint8Array([2]));
 * console.log((await Promise.any(served.map((c) => c.receive({ timeout: 5000 })))).at(0)); // 2
 * await listener.close(); // no new clients; the accepted channels go on until closed
 * await Promise.all([...clients, ...served].map((c) => c.close()));
 * ```
 */
export async function connect(name: string, options: ShmConnectOptions = {}): Promise<ShmChannel> {
  checkName(name);
  const what = `connect to shm listener "${name}"`;
  spinOption(options.spin);
  idleOption(options.idle);
  const max = options.maxMessage;
  if (max !== undefined && (!Number.isSafeInteger(max) || max < 0)) {
    throw new RangeError(`Cannot ${what}: maxMessage ${String(max)} must be a non-negative integer`);
  }
  const ms = options.timeout ?? DEFAULT_TIMEOUT;
  if (typeof ms !== "number" || !(ms > 0) || ms > 2 ** 31 - 1) {
    throw new RangeError(`Cannot ${what}: timeout ${String(ms)} must be from 1 to ${2 ** 31 - 1} ms`);
  }
  options.signal?.throwIfAborted();
  const [ffi, rt] = await Promise.all([native(), runtime()]);
  const { path } = await rendezvousPath(rt, ffi, name, options.dir, what, false);
  let stream: ByteStream;
  try {
    stream = await rt.connectUnix(path);
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
    throw new NotFoundError(`Cannot ${what}: nothing listens at "${path}"`, {
      ...(e.code === undefined ? {} : { code: e.code }),
      cause: e,
    });
  }
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(new TimeoutError(`Cannot ${what}: timed out after ${ms} ms`)), ms);
  const unlisten = onAbort(options.signal, () => abort.abort(options.signal!.reason));
  const inbox = new Inbox(REPLY_HEAD + MAX_NAME);
  const handover = new Handover(stream, inbox);
  let segment: SharedMemory | undefined;
  try {
    handover.write(request(rt.pid))?.catch(() => {});
    const ended = () => new ClosedError(`Cannot ${what}: the listener closed the connection during the rendezvous`);
    while (inbox.length < REPLY_HEAD) await inbox.next(abort.signal, ended);
    const head = new DataView(inbox.bytes.buffer, inbox.bytes.byteOffset, REPLY_HEAD);
    const status = head.getUint32(4, true), length = head.getUint32(8, true);
    if (head.getUint32(0, true) !== MAGIC || status > FULL || (status === OK) !== (length > 0) || length > MAX_NAME) {
      throw new ProtocolError(`Cannot ${what}: its reply is not an ipckit shm listener's`);
    }
    if (status === BUSY) {
      throw new IpcError(`Cannot ${what}: it has too many clients in rendezvous; try again`, { code: "EAGAIN" });
    }
    if (status === BAD_REQUEST) throw new ProtocolError(`Cannot ${what}: it refused the request (another version?)`);
    if (status === FAILED) throw new IpcError(`Cannot ${what}: it could not make a segment for this client`);
    if (status === FULL) {
      throw new IpcError(`Cannot ${what}: it serves as many clients as it may (maxConnections); try again later`, {
        code: "EAGAIN",
      });
    }
    while (inbox.length < REPLY_HEAD + length) await inbox.next(abort.signal, ended);
    const segmentName = new TextDecoder().decode(inbox.bytes.subarray(REPLY_HEAD, REPLY_HEAD + length));
    if (!segmentName.startsWith(`${name}-`)) throw new ProtocolError(`Cannot ${what}: it named a foreign segment`);
    checkName(segmentName);
    segment = await openLaidOut(segmentName, 1000, abort.signal);
    // The doorbell takes the connection before the attach: the listener may ring as soon as it sees it.
    const bell = new Doorbell(handover);
    const peer = attachOpener(ffi, segment, segmentName, true);
    handover.write(ATTACHED)?.catch(() => {});
    return new ShmChannel(processParts(ffi, segment, 1, peer, options, bell, rt.availableCpus()));
  } catch (e) {
    segment?.close();
    handover.close();
    throw abort.signal.aborted ? abort.signal.reason : e;
  } finally {
    clearTimeout(timer);
    unlisten();
  }
}

/** What a listener's rendezvous need. */
interface ListenerContext {
  ffi: Native;
  rt: Runtime;
  capacity: number;
  options: ShmListenOptions;
  timeout: number;
  maxPending: number;
  onReject: ((error: Error) => void) | undefined;
  /** The default directory, removed when empty after close (a `dir` given is the caller's). */
  removeDir: string | undefined;
  maxConnections: number;
  /** Closes accepted channels idle for `idleTimeout`; undefined without one. */
  idle: IdleWatch | undefined;
}

/** An accepted channel as the idle watch sees it: its messages either way are its traffic. */
class WatchedChannel implements Watched {
  readonly paused = false;
  constructor(readonly channel: ShmChannel) {}
  get activity(): number {
    return this.channel.traffic;
  }
  get closed(): boolean {
    return this.channel.closed;
  }
  expire(error: ClosedError): void {
    void this.channel.closeWith(error);
  }
}

/**
 * A listener of shm clients (see {@linkcode listen}): `accept()` resolves with each client's `ShmChannel`.
 *
 * @example
 * ```ts
 * import { ClosedError, runtime, shm } from "ipckit";
 * const listener = await shm.listen(`/ipckit-closing-${(await runtime()).pid}`, { capacity: 4096 });
 * const waiting = listener.accept().catch((e) => e instanceof ClosedError);
 * await listener.close();
 * console.log(await waiting); // true: a pending accept() rejects with ClosedError
 * ```
 */
export class ShmListener extends QueuedListener<ShmChannel> {
  /** The name clients connect to. */
  readonly name: string;
  /** The rendezvous socket's path. */
  readonly path: string;
  readonly #c: ListenerContext;
  #server: Server | undefined;
  readonly #pending = new Map<AbortController, Promise<unknown>>();
  /** Channels made and not closed yet (waiting for `accept()` or accepted): with `#pending`, under maxConnections. */
  #open = 0;
  #closing: Promise<void> | undefined;

  /** @internal Use {@linkcode listen}. */
  constructor(name: string, path: string, context: ListenerContext, backlog: number) {
    super(backlog);
    this.name = name;
    this.path = path;
    this.#c = context;
  }

  /** @internal Binds the socket server; called once by `listen`. */
  attach(server: Server): void {
    this.#server = server;
  }

  /** Rendezvous in progress (at most `maxPending`). */
  get pending(): number {
    return this.#pending.size;
  }

  /** Clients' channels open now: waiting for `accept()`, or accepted and not closed yet. */
  get connections(): number {
    return this.#open;
  }

  /** Hands an accepted channel to the caller, watched for idleness when there is an `idleTimeout`. */
  protected override adopt(channel: ShmChannel): ShmChannel {
    this.#c.idle?.add(new WatchedChannel(channel));
    return channel;
  }

  /** Waits for the next client's channel; rejects with `ClosedError` after `close()`. */
  override accept(options: { signal?: AbortSignal } = {}): Promise<ShmChannel> {
    return super.accept(options) as Promise<ShmChannel>;
  }

  /** Iterates clients' channels until the listener closes. */
  override [Symbol.asyncIterator](): AsyncIterator<ShmChannel> {
    return super[Symbol.asyncIterator]() as AsyncIterator<ShmChannel>;
  }

  /** @internal The runtime hands over a new connection. */
  readonly onConnection = (stream: ByteStream): void => {
    if (this.#closing) return stream.close();
    if (this.#open + this.#pending.size >= this.#c.maxConnections) {
      this.#reject(
        new IpcError(`Cannot accept a client on shm listener "${this.name}": it serves maxConnections clients already`),
      );
      return refuse(stream, FULL);
    }
    if (this.#pending.size >= this.#c.maxPending) {
      this.#reject(
        new IpcError(`Cannot accept a client on shm listener "${this.name}": too many rendezvous in progress`),
      );
      return refuse(stream, BUSY);
    }
    const abort = new AbortController();
    const timer = setTimeout(() => {
      const ms = this.#c.timeout;
      abort.abort(
        new TimeoutError(`Cannot finish a rendezvous on shm listener "${this.name}": timed out after ${ms} ms`),
      );
    }, this.#c.timeout);
    const done = this.#rendezvous(stream, abort.signal).then(
      (channel) => {
        if (this.stopped || !this.offer(channel)) void channel.close();
      },
      (e) => this.#reject(e instanceof Error ? e : new Error(String(e))),
    ).finally(() => {
      clearTimeout(timer);
      this.#pending.delete(abort);
    });
    this.#pending.set(abort, done);
  };

  #reject(error: Error): void {
    if (!this.#closing) this.#c.onReject?.(error);
  }

  /** One client's rendezvous (the module doc's steps); whatever fails removes the segment and closes the stream. */
  async #rendezvous(stream: ByteStream, signal: AbortSignal): Promise<ShmChannel> {
    const { ffi, rt, capacity, options } = this.#c;
    const what = `accept a client on shm listener "${this.name}"`;
    const inbox = new Inbox(REQUEST);
    const handover = new Handover(stream, inbox);
    const ended = () => new ClosedError(`Cannot ${what}: the client closed the connection during the rendezvous`);
    let segment: SharedMemory | undefined;
    let unlinked = false;
    try {
      while (inbox.length < REQUEST) await inbox.next(signal, ended);
      const head = new DataView(inbox.bytes.buffer, inbox.bytes.byteOffset, REQUEST);
      if (head.getUint32(0, true) !== MAGIC || head.getUint32(4, true) !== VERSION) {
        handover.write(reply(BAD_REQUEST))?.catch(() => {});
        throw new ProtocolError(`Cannot ${what}: its request is not an ipckit shm client's`);
      }
      const pid = head.getUint32(8, true);
      try {
        segment = await freshSegment(this.name, channelSize(capacity));
        initLayout(segment.buffer, capacity, self(ffi));
      } catch (e) {
        handover.write(reply(FAILED))?.catch(() => {});
        throw e;
      }
      handover.write(reply(OK, segment.name))?.catch(() => {});
      let attached = attachedOpener(segment.buffer);
      while (attached === undefined) {
        await inbox.next(signal, ended);
        attached = attachedOpener(segment.buffer);
      }
      segment.unlink();
      unlinked = true;
      if (!attached.bell || attached.peer.id !== pid) {
        throw new ProtocolError(
          `Cannot ${what}: the process that attached (pid ${attached.peer.id}) is not the one that asked (pid ${pid})`,
        );
      }
      const bell = new Doorbell(handover);
      const parts = processParts(ffi, segment, 0, attached.peer, options, bell, rt.availableCpus());
      // Counted from here until the channel is closed and its memory released (once).
      const release = parts.release;
      parts.release = () => {
        this.#open--;
        release();
      };
      this.#open++;
      return new ShmChannel(parts);
    } catch (e) {
      if (segment !== undefined) {
        if (!unlinked) {
          try {
            segment.unlink();
          } catch { /* removed already */ }
        }
        segment.close();
      }
      handover.close();
      throw signal.aborted ? signal.reason : e;
    }
  }

  /**
   * Stops listening: pending and later `accept()` calls reject with `ClosedError`, rendezvous in progress are
   * dropped (their segments removed), channels nobody accepted are closed, and the socket file is removed. Accepted
   * channels stay open. Idempotent.
   */
  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const left = this.stopAccepting(new ClosedError(`Cannot accept on shm listener "${this.name}": it is closed`));
      for (const channel of left) void channel.close();
      const closed = new ClosedError(`Cannot finish a rendezvous on shm listener "${this.name}": it is closed`);
      for (const abort of this.#pending.keys()) abort.abort(closed);
      await this.#server?.close();
      await Promise.all(this.#pending.values());
      await this.#c.rt.removeFile(this.path).catch(() => {});
      unregister("unix", this.path);
      // The default directory goes when no other listener uses it (rmdir fails on a directory with sockets in it).
      if (this.#c.removeDir !== undefined) this.#c.ffi.call.rmdir(this.#c.ffi.cstring(this.#c.removeDir));
    })());
  }
}

/** The rendezvous socket of `name`: in `given`, or in the default private directory (made if needed, and checked). */
async function rendezvousPath(
  rt: Runtime,
  ffi: Native,
  name: string,
  given: string | undefined,
  what: string,
  make: boolean,
): Promise<{ dir: string; path: string }> {
  if (given !== undefined && (typeof given !== "string" || given.length === 0)) {
    throw new TypeError(`Cannot ${what}: dir must be a non-empty string`);
  }
  const uid = ffi.call.getuid();
  const base = envVar(rt, "XDG_RUNTIME_DIR") ?? envVar(rt, "TMPDIR") ?? "/tmp";
  const dir = (given ?? `${base}/ipckit-shm-${uid}`).replace(/(.)\/+$/, "$1");
  const path = `${dir}/${name.slice(1)}.sock`;
  if (new TextEncoder().encode(path).byteLength > MAX_PATH) {
    throw new RangeError(`Cannot ${what}: its socket path "${path}" is longer than ${MAX_PATH} bytes`);
  }
  // The listener makes the directory (EEXIST is fine: the checks below decide); a client only looks.
  if (make) ffi.call.mkdir(ffi.cstring(dir), 0o700);
  const info = await rt.fileInfo(dir).catch(() => undefined);
  if (info === undefined || info.type !== "directory") {
    throw new NotFoundError(
      make ? `Cannot ${what}: the directory "${dir}" cannot be made` : `Cannot ${what}: nothing listens at "${path}"`,
    );
  }
  if (given === undefined && (info.uid !== uid || (info.mode & 0o077) !== 0)) {
    throw new PermissionError(`Cannot ${what}: "${dir}" is not a private directory of user ${uid}`);
  }
  return { dir, path };
}

function envVar(rt: Runtime, name: string): string | undefined {
  try {
    return rt.env(name) || undefined;
  } catch {
    return undefined; // Deno without --allow-env
  }
}

/** A segment `<name>-<24 random hex digits>`; another name if that one is taken (it never is, in practice). */
async function freshSegment(name: string, size: number): Promise<SharedMemory> {
  for (let attempt = 0;; attempt++) {
    const suffix = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0"));
    try {
      return await SharedMemory.create(`${name}-${suffix.join("")}`, { size });
    } catch (e) {
      if (attempt >= 3 || (e as { code?: string }).code !== "EEXIST") throw e;
    }
  }
}

function request(pid: number): Uint8Array {
  const bytes = new Uint8Array(REQUEST);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, pid, true);
  return bytes;
}

function reply(status: number, segmentName = ""): Uint8Array {
  const name = new TextEncoder().encode(segmentName);
  const bytes = new Uint8Array(REPLY_HEAD + name.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, status, true);
  view.setUint32(8, name.length, true);
  bytes.set(name, REPLY_HEAD);
  return bytes;
}

/** Answers a connection with a refusal and closes it, reading nothing. */
function refuse(stream: ByteStream, status: number): void {
  stream.write(reply(status))?.catch(() => {});
  stream.end().catch(() => {}).finally(() => stream.close());
}

/** The bytes of a rendezvous: kept up to `limit` (a peer cannot make it grow), with a wait for the next chunk. */
class Inbox implements ByteSink {
  readonly #bytes: Uint8Array;
  length = 0;
  #ended: Error | null | undefined;
  #wake: (() => void) | undefined;

  constructor(limit: number) {
    this.#bytes = new Uint8Array(limit);
  }

  get bytes(): Uint8Array {
    return this.#bytes.subarray(0, this.length);
  }

  data(chunk: Uint8Array): void {
    const n = Math.min(chunk.length, this.#bytes.length - this.length);
    this.#bytes.set(chunk.subarray(0, n), this.length);
    this.length += n;
    this.#wake?.();
  }

  end(error?: Error): void {
    this.#ended = error ?? null;
    this.#wake?.();
  }

  /**
   * Resolves at the next chunk; rejects with `ended()` (its cause the stream's error) once the stream ended, or
   * with the signal's reason.
   */
  next(signal: AbortSignal, ended: () => Error): Promise<void> {
    return new Promise((resolve, reject) => {
      const settle = () => {
        this.#wake = undefined;
        unlisten();
        if (signal.aborted) reject(signal.reason);
        else if (this.#ended !== undefined) {
          const e = ended();
          if (this.#ended !== null) (e as { cause?: unknown }).cause = this.#ended;
          reject(e);
        } else resolve();
      };
      const unlisten = onAbort(signal, settle);
      if (signal.aborted || this.#ended !== undefined) return settle();
      this.#wake = settle;
    });
  }
}

/**
 * A started stream whose reader can be handed on: the rendezvous reads it first, then the doorbell takes it
 * (`start()` again), without the runtime stream being started twice.
 */
class Handover implements ByteStream {
  readonly #inner: ByteStream;
  #sink: ByteSink;
  #end: { error: Error | undefined } | undefined;

  constructor(inner: ByteStream, first: ByteSink) {
    this.#inner = inner;
    this.#sink = first;
    inner.start({
      data: (chunk) => this.#sink.data(chunk),
      end: (error) => {
        this.#end = { error };
        this.#sink.end(error);
      },
    });
  }

  get ownsChunks(): boolean {
    return this.#inner.ownsChunks;
  }

  start(sink: ByteSink): void {
    this.#sink = sink;
    if (this.#end !== undefined) sink.end(this.#end.error);
  }

  pause(): void {
    this.#inner.pause();
  }

  resume(): void {
    this.#inner.resume();
  }

  write(chunk: Uint8Array): Promise<void> | undefined {
    return this.#inner.write(chunk);
  }

  end(): Promise<void> {
    return this.#inner.end();
  }

  close(): void {
    this.#inner.close();
  }

  unref(): void {
    this.#inner.unref?.();
  }

  ref(): void {
    this.#inner.ref?.();
  }
}
