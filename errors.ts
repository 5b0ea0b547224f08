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

/** The channel, listener or object was closed (by this side or by the peer). */
export class ClosedError extends IpcError {}

/** A wait ran out of time. */
export class TimeoutError extends IpcError {}

/** The named object does not exist (`ENOENT`). */
export class NotFoundError extends IpcError {}

/** The named object exists already (`EEXIST`, `EADDRINUSE`). */
export class AlreadyExistsError extends IpcError {}

/** The OS refused access (`EACCES`, `EPERM`). */
export class PermissionError extends IpcError {}

/** The peer broke the wire protocol (a bad length, a truncated frame). The channel is closed. */
export class ProtocolError extends IpcError {}

/**
 * A message is larger than the channel's `maxMessage`. It is a {@linkcode ProtocolError}: the size limit is part of
 * what both sides agree on. `send()` rejects with it before writing anything (the channel stays usable); a
 * receiver that reads a larger length rejects with it and closes the channel.
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
 */
export class OwnerDiedError extends IpcError {}

/** The operation does not exist on this platform or runtime. */
export class UnsupportedError extends IpcError {}

/** What a remote handler threw, rebuilt on the calling side: the remote name, message, stack and `data`. */
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

/** The peer has no handler of that name. */
export class MethodNotFoundError extends RemoteError {}

/**
 * A pool worker stopped (crashed, exited, was killed, or hung past `taskTimeout` and was replaced) while it held the
 * task, and the task was not re-run: it was not marked idempotent, or it used up its retries. The task may or may
 * not have taken effect.
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

/** A pool's queue is at `maxQueue`: the task was not queued. */
export class QueueFullError extends IpcError {}

/**
 * The error an aborted operation rejects with: the signal's reason when it is an Error, otherwise a
 * `DOMException` named `AbortError` (what `fetch` and Web Streams use).
 */
export function abortError(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason;
  if (reason instanceof Error || reason instanceof DOMException) return reason;
  return new DOMException("The operation was aborted", "AbortError");
}
