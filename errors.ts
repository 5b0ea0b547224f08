/**
 * ipckit's error classes. Every failure ipckit reports is an {@linkcode IpcError} (or a `TypeError`/`RangeError`
 * for a bad argument), and messages follow one style: `Cannot <do what> on <what>: <why>`.
 *
 * @module
 */

/** Options shared by all ipckit errors. */
export interface IpcErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown;
  /** The OS error code (`ENOENT`, `EACCES`…) when the error came from the OS. */
  code?: string;
}

/**
 * The base class of every error ipckit throws for a failed operation.
 *
 * @example
 * ```ts
 * import { IpcError, unix } from "ipckit";
 * try {
 *   await unix.connect("/tmp/nobody-listens-here.sock");
 * } catch (e) {
 *   if (e instanceof IpcError) console.log(e.code); // "ENOENT"
 * }
 * ```
 */
export class IpcError extends Error {
  /** The OS error code (`ENOENT`, `EACCES`…) when the error came from the OS. */
  readonly code: string | undefined;
  constructor(message: string, options: IpcErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code;
  }
}

/**
 * The channel, listener or object was closed (by this side or by the peer).
 *
 * @example
 * ```ts
 * import { ClosedError, shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 1024 });
 * const b = shm.fromHandle(handle);
 * await a.close();
 * try {
 *   await b.receive();
 * } catch (e) {
 *   console.log(e instanceof ClosedError); // true: the peer closed and nothing is left to read
 * }
 * await b.close();
 * ```
 */
export class ClosedError extends IpcError {}

/**
 * A wait ran out of time.
 *
 * @example
 * ```ts
 * import { shm, TimeoutError } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 1024 });
 * const b = shm.fromHandle(handle);
 * try {
 *   await b.receive({ timeout: 50 });
 * } catch (e) {
 *   console.log(e instanceof TimeoutError); // true: nothing came within 50 ms
 * }
 * await a.close();
 * await b.close();
 * ```
 */
export class TimeoutError extends IpcError {}

/**
 * The named object does not exist (`ENOENT`).
 *
 * @example
 * ```ts
 * import { NotFoundError, SharedMemory } from "ipckit";
 * try {
 *   await SharedMemory.open("/ipckit-no-such-segment");
 * } catch (e) {
 *   console.log(e instanceof NotFoundError, (e as NotFoundError).code); // true "ENOENT"
 * }
 * ```
 */
export class NotFoundError extends IpcError {}

/**
 * The named object exists already (`EEXIST`, `EADDRINUSE`).
 *
 * @example
 * ```ts
 * import { AlreadyExistsError, runtime, SharedMemory } from "ipckit";
 * const name = `/ipckit-taken-${(await runtime()).pid}`;
 * using segment = await SharedMemory.create(name, { size: 4096 });
 * try {
 *   await SharedMemory.create(name, { size: 4096 });
 * } catch (e) {
 *   console.log(e instanceof AlreadyExistsError); // true
 * } finally {
 *   segment.unlink();
 * }
 * ```
 */
export class AlreadyExistsError extends IpcError {}

/**
 * The OS refused access (`EACCES`, `EPERM`).
 *
 * @example
 * ```ts
 * import { PermissionError, tcp } from "ipckit";
 * try {
 *   const server = await tcp.listen({ port: 1 }); // a port below 1024
 *   console.log("allowed: this process may bind privileged ports (root, or CAP_NET_BIND_SERVICE)");
 *   await server.close();
 * } catch (e) {
 *   if (!(e instanceof PermissionError)) throw e;
 *   console.log(e.code); // "EACCES"
 * }
 * ```
 */
export class PermissionError extends IpcError {}

/**
 * The peer broke the wire protocol (a bad length, a truncated frame). The channel is closed.
 *
 * @example
 * ```ts
 * import { ProtocolError, shm, typed } from "ipckit";
 * const [raw, handle] = shm.pair({ capacity: 1024 });
 * const values = typed(shm.fromHandle(handle)); // CBOR
 * await raw.send(new Uint8Array([0xff, 0xff])); // not CBOR
 * try {
 *   await values.receive();
 * } catch (e) {
 *   console.log(e instanceof ProtocolError); // true; a typed channel stays usable after a bad message
 * }
 * await raw.close();
 * await values.close();
 * ```
 */
export class ProtocolError extends IpcError {}

/**
 * A message is larger than the channel's `maxMessage`. It is a {@linkcode ProtocolError}: the size limit is part of
 * what both sides agree on. `send()` rejects with it before writing anything (the channel stays usable); a
 * receiver that reads a larger length rejects with it and closes the channel.
 *
 * @example
 * ```ts
 * import { MessageTooLargeError, shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 1024 }); // a ring of 1024 bytes holds messages up to 1016
 * try {
 *   await a.send(new Uint8Array(4096));
 * } catch (e) {
 *   if (e instanceof MessageTooLargeError) console.log(e.size, e.limit); // 4096 1016
 * }
 * await a.close();
 * await shm.fromHandle(handle).close();
 * ```
 */
export class MessageTooLargeError extends ProtocolError {
  /** The size of the rejected message in bytes. */
  readonly size: number;
  /** The limit it exceeded, in bytes. */
  readonly limit: number;
  constructor(message: string, size: number, limit: number, options: IpcErrorOptions = {}) {
    super(message, options);
    this.size = size;
    this.limit = limit;
  }
}

/**
 * The owner of a process-shared lock died while holding it. `Mutex.lock()` reports that by resolving to `true`
 * rather than throwing (the caller holds the lock either way); throw this when a dead owner must abort your work:
 * `if (await mutex.lock()) throw new OwnerDiedError("the previous owner died mid-update")`.
 *
 * @example
 * ```ts
 * import { Mutex, OwnerDiedError } from "ipckit";
 * const lock = new Mutex();
 * async function update(): Promise<void> {
 *   const ownerDied = await lock.lock();
 *   try {
 *     if (ownerDied) throw new OwnerDiedError("Cannot update the totals: their previous owner died mid-update");
 *     // ... update the shared state ...
 *   } finally {
 *     lock.unlock();
 *   }
 * }
 * await update();
 * console.log("updated");
 * ```
 */
export class OwnerDiedError extends IpcError {}

/**
 * The operation does not exist on this platform or runtime.
 *
 * @example
 * ```ts
 * import { pipe, UnsupportedError } from "ipckit";
 * try {
 *   await pipe.inherited(); // only a child started with pipe.spawn(argv, { over: "fds" }) has the pipes
 * } catch (e) {
 *   console.log(e instanceof UnsupportedError); // true
 * }
 * ```
 */
export class UnsupportedError extends IpcError {}

/**
 * What a remote handler threw, rebuilt on the calling side: the remote name, message, stack and `data`.
 *
 * @example
 * ```ts
 * import { RemoteError, rpc, shm } from "ipckit";
 * const [here, handle] = shm.pair();
 * await using _server = rpc.serve(here, {
 *   parse(text: string) {
 *     if (!/^\d+$/.test(text)) throw new TypeError(`not a number: ${text}`);
 *     return Number(text);
 *   },
 * });
 * await using client = rpc.connect(shm.fromHandle(handle));
 * try {
 *   await client.call("parse", "abc");
 * } catch (e) {
 *   if (e instanceof RemoteError) console.log(e.remoteName); // "TypeError", with e.message and e.remoteStack
 * }
 * ```
 */
export class RemoteError extends IpcError {
  /** The name of the error the handler threw (`TypeError`, a custom class name...). */
  readonly remoteName: string;
  /** The handler's stack, as text (empty when the peer sent none). */
  readonly remoteStack: string;
  /** Extra data the handler attached (`error.data`), decoded. */
  readonly data: unknown;
  constructor(
    message: string,
    remote: { name: string; stack?: string; data?: unknown; code?: string },
    options: IpcErrorOptions = {},
  ) {
    super(message, { ...options, ...(remote.code === undefined ? {} : { code: remote.code }) });
    this.remoteName = remote.name;
    this.remoteStack = remote.stack ?? "";
    this.data = remote.data;
  }
}

/**
 * The peer has no handler of that name.
 *
 * @example
 * ```ts
 * import { MethodNotFoundError, rpc, shm } from "ipckit";
 * const [here, handle] = shm.pair();
 * await using _server = rpc.serve(here, { add: (a: number, b: number) => a + b });
 * await using client = rpc.connect(shm.fromHandle(handle));
 * try {
 *   await client.call("subtract", 3, 1);
 * } catch (e) {
 *   console.log(e instanceof MethodNotFoundError); // true
 * }
 * ```
 */
export class MethodNotFoundError extends RemoteError {}

/**
 * A pool worker stopped (crashed, exited, was killed, or hung past `taskTimeout` and was replaced) while it held the
 * task, and the task was not re-run: it was not marked idempotent, or it used up its retries. The task may or may
 * not have taken effect.
 *
 * @example
 * ```ts
 * import { Pool, pool, runtime, WorkerDiedError } from "ipckit";
 * if ((await runtime()).parentPort() !== null) {
 *   // This module is also the pool's worker thread; its task crashes it.
 *   await pool.worker(() => {
 *     setTimeout(() => {
 *       throw new Error("the worker crashes");
 *     });
 *     return new Promise(() => {});
 *   });
 * } else {
 *   await using workers = new Pool({ worker: new URL(import.meta.url), size: 1 });
 *   try {
 *     await workers.run("job"); // not marked idempotent: not re-run on another worker
 *   } catch (e) {
 *     if (e instanceof WorkerDiedError) console.log("lost with its worker after", e.attempts, "attempt"); // 1
 *   }
 * }
 * ```
 */
export class WorkerDiedError extends IpcError {
  /** The worker's pid (processes) or thread number (threads), when it had started. */
  readonly worker: number | undefined;
  /** How many times the task was started. */
  readonly attempts: number;
  constructor(message: string, info: { worker?: number; attempts: number }, options: IpcErrorOptions = {}) {
    super(message, options);
    this.worker = info.worker;
    this.attempts = info.attempts;
  }
}

/**
 * A pool's queue is at `maxQueue`: the task was not queued.
 *
 * @example
 * ```ts
 * import { Pool, pool, QueueFullError, runtime } from "ipckit";
 * if ((await runtime()).parentPort() !== null) {
 *   await pool.worker((ms: number) => new Promise((r) => setTimeout(r, ms))); // this module is also the worker
 * } else {
 *   await using workers = new Pool({ worker: new URL(import.meta.url), size: 1, maxQueue: 2 });
 *   const tasks = [1, 2, 3].map((n) => workers.run(10 * n));
 *   const settled = await Promise.allSettled(tasks);
 *   console.log(settled.map((s) => s.status === "rejected" && s.reason instanceof QueueFullError)); // [false, false, true]
 * }
 * ```
 */
export class QueueFullError extends IpcError {}

/**
 * A subscriber of an `overwrite` publish-subscribe channel fell so far behind that the publisher overwrote messages
 * it had not read yet (as tokio's broadcast channel reports `Lagged`). The subscriber goes on from the oldest message
 * still there: receive again.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit"; // LaggedError is shm.LaggedError too
 * await using news = await shm.publisher({ capacity: 256, policy: "overwrite" });
 * await using reader = await shm.subscriber(news.handle);
 * for (let i = 0; i < 40; i++) news.tryPublish(new Uint8Array([i]));
 * try {
 *   await reader.receive();
 * } catch (e) {
 *   if (e instanceof shm.LaggedError) console.log(e.missed > 0); // true: the oldest were overwritten
 * }
 * console.log((await reader.receive())[0]! > 0); // true: it goes on from the oldest still there
 * ```
 */
export class LaggedError extends IpcError {
  /** How many messages the subscriber missed. */
  readonly missed: number;
  constructor(message: string, missed: number, options: IpcErrorOptions = {}) {
    super(message, options);
    this.missed = missed;
  }
}

/**
 * The error an aborted operation rejects with: the signal's reason when it is an Error, otherwise a
 * `DOMException` named `AbortError` (what `fetch` and Web Streams use).
 *
 * @example
 * ```ts
 * import { abortError } from "ipckit";
 * const plain = new AbortController();
 * plain.abort();
 * console.log((abortError(plain.signal) as DOMException).name); // "AbortError"
 * const withReason = new AbortController();
 * withReason.abort(new Error("shutting down"));
 * console.log((abortError(withReason.signal) as Error).message); // "shutting down"
 * ```
 */
export function abortError(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason instanceof Error || reason instanceof DOMException) return reason;
  return new DOMException("The operation was aborted", "AbortError");
}
