/**
 * What Unix and TCP listeners share for connections that must prove something before they are accepted: the
 * options, and the gate that runs the auth handshake ({@linkcode authenticateStream}) on each new connection and
 * hands only the authenticated ones to the listener.
 *
 * @module
 */
import { ClosedError } from "../errors.ts";
import { MAX_PENDING_HANDSHAKES } from "../runtimes/tls_errors.ts";
import type { ByteStream } from "../runtimes/runtime.ts";
import { authenticateStream, type AuthOptions, type PreparedAuth } from "./auth.ts";
import type { ListenerLimits } from "./listener.ts";

/** Options every stream listener takes: limits, and the auth handshake. */
export interface SecureListenOptions extends ListenerLimits {
  /**
   * Require every connection to prove it knows this shared secret (HMAC-SHA256 challenge-response, see
   * `transports/auth.ts`) before `accept()` returns it. Connections that fail are closed and reported to `onReject`.
   */
  auth?: AuthOptions;
  /** How long a connection's handshakes (TLS, auth) may take, in milliseconds; 10 000 by default. */
  handshakeTimeout?: number;
  /**
   * Told about each connection refused before it became a channel: a failed TLS or auth handshake, one that took
   * too long, or one over the limit of pending handshakes. The listener goes on either way.
   */
  onReject?: (error: Error) => void;
}

/** Options of connecting with the auth handshake. */
export interface SecureConnectOptions {
  /** Prove knowledge of this shared secret to the server, and require the server to prove it too. */
  auth?: AuthOptions;
  /** How long the handshakes (TLS, auth) may take once connected, in milliseconds; 10 000 by default. */
  handshakeTimeout?: number;
}

/**
 * Validates `onReject`, and wraps it so that a callback that throws cannot stop the listener.
 *
 * @throws {TypeError} when it is given and not a function.
 */
export function checkOnReject(fn: unknown, what: string): ((error: Error) => void) | undefined {
  if (fn === undefined) return undefined;
  if (typeof fn !== "function") throw new TypeError(`Cannot ${what}: onReject must be a function`);
  return (error) => {
    try {
      fn(error);
    } catch { /* the listener goes on */ }
  };
}

/**
 * Runs the auth handshake on each connection before passing it on; at most {@linkcode MAX_PENDING_HANDSHAKES} at
 * once (more connections are closed at once, before anything is read from them). `close()` ends the pending ones.
 */
export class HandshakeGate {
  #pending = new Set<AbortController>();
  #closed = false;
  readonly #auth: PreparedAuth;
  readonly #timeout: number;
  readonly #what: () => string;
  readonly #next: (stream: ByteStream) => void;
  readonly #onReject: ((error: Error) => void) | undefined;

  constructor(
    auth: PreparedAuth,
    timeout: number,
    what: () => string,
    next: (stream: ByteStream) => void,
    onReject: ((error: Error) => void) | undefined,
  ) {
    this.#auth = auth;
    this.#timeout = timeout;
    this.#what = what;
    this.#next = next;
    this.#onReject = onReject;
  }

  /** Where the runtime server hands new connections. */
  readonly onConnection = (stream: ByteStream): void => {
    if (this.#closed) return stream.close();
    if (this.#pending.size >= MAX_PENDING_HANDSHAKES) {
      stream.close();
      return this.#reject(
        new ClosedError(`Cannot ${this.#what()}: ${MAX_PENDING_HANDSHAKES} auth handshakes are pending already`),
      );
    }
    const abort = new AbortController();
    this.#pending.add(abort);
    authenticateStream(stream, this.#auth, "server", this.#timeout, this.#what(), abort.signal).then(
      (authenticated) => {
        this.#pending.delete(abort);
        this.#next(authenticated);
      },
      (e: Error) => {
        this.#pending.delete(abort);
        if (!abort.signal.aborted) this.#reject(e);
      },
    );
  };

  #reject(error: Error): void {
    this.#onReject?.(error);
  }

  /** Ends the pending handshakes (their connections are closed) and refuses new connections. */
  close(): void {
    this.#closed = true;
    for (const a of this.#pending) a.abort(new ClosedError(`Cannot ${this.#what()}: the listener is closed`));
    this.#pending.clear();
  }
}
