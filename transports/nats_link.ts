/**
 * One connection to a NATS server, shared by every channel, listener, RPC service and pool that uses it. Auth
 * (user and password, token) and TLS options are handed to nats.js as given; ipckit never prints them: a server
 * URL in an error message has its credentials replaced by `***`.
 *
 * A channel over NATS is reliable only while its connection lives: core NATS does not keep messages for a
 * disconnected client. So when the connection drops, every channel on it ends with `ClosedError`, even if nats.js
 * reconnects a moment later (listeners, RPC services and pools then accept new connections on the new link).
 *
 * @example
 * ```ts
 * import { nats, runtime } from "ipckit";
 * const rt = await runtime();
 * await using link = await nats.open({ servers: rt.env("NATS_URL") ?? "nats://127.0.0.1:4222", name: "docs" });
 * console.log(link.server.startsWith("nats://") || link.server.includes(":")); // true: never credentials
 * // The nats.js connection, for what ipckit does not wrap (plain subjects, JetStream...):
 * link.connection.publish(`metrics.${rt.pid}`, new TextEncoder().encode("cpu 0.5"));
 * ```
 *
 * @module
 */
import { ClosedError, IpcError, NotFoundError, PermissionError, TimeoutError } from "../errors.ts";
import { loadNats, type NatsConnectionLike } from "../runtimes/nats.ts";
import { type Counters, track } from "../shm/stats.ts";

/** TLS settings, passed to nats.js as they are (file paths or PEM strings). */
export interface NatsTlsOptions {
  /** CA certificate(s) to trust: a file path, or PEM text in `ca`. */
  caFile?: string;
  ca?: string;
  /** Client certificate and key, for servers that verify clients (mutual TLS). */
  certFile?: string;
  cert?: string;
  keyFile?: string;
  key?: string;
  /** Start TLS before the server's INFO (servers with `handshake_first`). */
  handshakeFirst?: boolean;
}

/** How to reach a NATS server. */
export interface NatsLinkOptions {
  /** Server URL(s): `"nats://host:4222"`, `"tls://host:4222"`, `"host:port"`. Default `"127.0.0.1:4222"`. */
  servers?: string | string[];
  /** User name and password (server `authorization { user, password }`). */
  user?: string;
  pass?: string;
  /** Token (server `authorization { token }`). */
  token?: string;
  /** TLS: `true` to require it with the system's CAs, or the certificates to use. */
  tls?: boolean | NatsTlsOptions;
  /** The client name the server shows in its monitoring. Default `ipckit-<runtime>-<pid>`. */
  name?: string;
  /** Milliseconds to wait for the connection. Default 10 000. */
  timeout?: number;
  /** Any other nats.js `ConnectionOptions` (reconnect policy, ping interval, nkeys...), passed through. */
  options?: Record<string, unknown>;
}

/** Either an open link to share, or how to open one (then owned, and closed, by the object that opened it). */
export type NatsTarget = { link: NatsLink } | NatsLinkOptions;

let clients = 0;

// Where a link's counters are (`COUNTERS.nats` of shm/stats.ts).
const CONNECTED = 0, DISCONNECTS = 1, RECONNECTS = 2, CHANNELS = 3;

/**
 * A connection to a NATS server. Channels, listeners and services made on it are listed here so that a lost
 * connection ends them all at once.
 *
 * @example
 * ```ts
 * import { nats, runtime } from "ipckit";
 * const rt = await runtime();
 * const link = await nats.open({ servers: rt.env("NATS_URL") ?? "nats://127.0.0.1:4222" });
 * const server = await nats.listen(`link.${rt.pid}`, { link });
 * const client = await nats.connect(`link.${rt.pid}`, { link });
 * const peer = await server.accept();
 * const ended = client.receive().catch((e) => e.name);
 * await link.close(); // every channel on it ends
 * console.log(await ended, link.closed); // "ClosedError" true
 * await Promise.all([client.close(), peer.close(), server.close()]);
 * ```
 */

export class NatsLink implements AsyncDisposable {
  /** The nats.js connection (for subjects and features of NATS that ipckit does not wrap). */
  readonly connection: NatsConnectionLike;
  /** The largest payload the server accepts, in bytes (its `max_payload`). */
  readonly maxPayload: number;
  readonly #users = new Set<{ linkLost(error: Error): void }>();
  #closing: Promise<void> | undefined;
  #lost: Error | undefined;
  #holds = 0;
  /** The live counters (`ipckit stats`): `COUNTERS.nats` of shm/stats.ts. */
  readonly #stats: Counters;

  private constructor(connection: NatsConnectionLike, name: string) {
    this.connection = connection;
    this.maxPayload = connection.info?.max_payload ?? 1024 * 1024;
    this.#stats = track("nats", `${name} ${this.server}`);
    this.#stats.values[CONNECTED] = 1;
    void this.#watch();
  }

  /**
   * Connects to a NATS server.
   *
   * @throws {NotFoundError} when no server answers; {@linkcode PermissionError} when it refuses the credentials;
   * {@linkcode TimeoutError} after `timeout`; {@linkcode UnsupportedError} without the nats.js package.
   */
  static async open(options: NatsLinkOptions = {}): Promise<NatsLink> {
    const o = checkOptions(options);
    const { connect } = await loadNats();
    const servers = o.servers ?? "127.0.0.1:4222";
    const name = o.name ?? `ipckit-${++clients}`;
    const config: Record<string, unknown> = {
      servers,
      name,
      timeout: o.timeout ?? 10_000,
      ...(o.user === undefined ? {} : { user: o.user }),
      ...(o.pass === undefined ? {} : { pass: o.pass }),
      ...(o.token === undefined ? {} : { token: o.token }),
      ...(o.tls === undefined || o.tls === false ? {} : { tls: o.tls === true ? {} : o.tls }),
      ...o.options,
    };
    try {
      return new NatsLink(await connect(config), name);
    } catch (e) {
      throw connectError(e, redact(servers));
    }
  }

  /** Wraps a nats.js connection the caller made; closing the link closes it. */
  static wrap(connection: NatsConnectionLike): NatsLink {
    if (connection === null || typeof connection !== "object" || typeof connection.publish !== "function") {
      throw new TypeError("Cannot wrap a NATS connection: give the object nats.js connect() resolved with");
    }
    return new NatsLink(connection, "nats link");
  }

  /** The server this link is connected to, without credentials. */
  get server(): string {
    return redact(this.connection.getServer());
  }

  /** True once the connection is closed or was lost. */
  get closed(): boolean {
    return this.#closing !== undefined || this.#lost !== undefined || this.connection.isClosed();
  }

  /** Registers something to end when the connection drops; returns the function that unregisters it. */
  use(user: { linkLost(error: Error): void }): () => void {
    if (this.#lost) {
      user.linkLost(this.#lost);
      return () => {};
    }
    this.#users.add(user);
    this.#stats.values[CHANNELS] = this.#users.size;
    return () => {
      this.#users.delete(user);
      this.#stats.values[CHANNELS] = this.#users.size;
    };
  }

  /**
   * Keeps a link that an object opened for itself alive until every holder let go: the returned function releases
   * one hold (once), and the last release closes the link (a listener's accepted channels outlive the listener).
   */
  hold(): () => Promise<void> {
    this.#holds++;
    let released = false;
    return async () => {
      if (released) return;
      released = true;
      if (--this.#holds === 0) await this.close();
    };
  }

  /** Closes the connection (after a flush of what was published). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.connection.isClosed()) return;
      await this.connection.flush().catch(() => {});
      await this.connection.close().catch(() => {});
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #watch(): Promise<void> {
    try {
      for await (const s of this.connection.status()) {
        const v = this.#stats.values;
        if (s.type === "disconnect") {
          v[CONNECTED] = 0;
          v[DISCONNECTS]!++;
          this.#lose(new ClosedError(`The NATS connection to ${this.server} was lost`));
        } else if (s.type === "reconnect") {
          v[CONNECTED] = 1;
          v[RECONNECTS]!++;
        }
      }
    } catch {
      // the status iterator ends with the connection
    }
    await this.connection.closed();
    this.#stats.values[CONNECTED] = 0;
    this.#lose(new ClosedError(`The NATS connection to ${this.server} is closed`));
    this.#stats.close();
  }

  #lose(error: Error): void {
    const users = [...this.#users];
    this.#users.clear();
    for (const u of users) u.linkLost(error);
    this.#stats.values[CHANNELS] = this.#users.size;
    if (this.connection.isClosed()) this.#lost ??= error;
  }
}

/** Opens a link for `target`, or returns the shared one; `owned` says whether the caller must close it. */
export async function linkFor(target: NatsTarget | undefined): Promise<{ link: NatsLink; owned: boolean }> {
  if (target !== undefined && target !== null && "link" in target) {
    if (!(target.link instanceof NatsLink)) throw new TypeError("Cannot use link: it must be a NatsLink");
    if (target.link.closed) throw new ClosedError("Cannot use the NATS link: it is closed");
    return { link: target.link, owned: false };
  }
  return { link: await NatsLink.open(target ?? {}), owned: true };
}

/** A NATS subject to publish to or subscribe on: dot-separated tokens, no spaces, no wildcards. */
export function checkSubject(subject: unknown, what: string): string {
  if (typeof subject !== "string" || !/^[^\s.*>]+(?:\.[^\s.*>]+)*$/.test(subject)) {
    throw new TypeError(
      `Cannot use ${
        JSON.stringify(subject)
      } as ${what}: a NATS subject is dot-separated tokens without spaces or wildcards`,
    );
  }
  return subject;
}

/** A fresh, unguessable inbox subject under `prefix`. */
export function inbox(prefix = "_INBOX"): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  let id = "";
  for (const b of bytes) id += b.toString(36).padStart(2, "0");
  return `${prefix}.${id}`;
}

/** `nats://user:pass@host` → `nats://***@host`, for messages. */
export function redact(servers: string | string[]): string {
  const list = Array.isArray(servers) ? servers : [servers];
  return list.map((s) => String(s).replace(/\/\/[^@/]*@/, "//***@")).join(", ");
}

function checkOptions(options: NatsLinkOptions): NatsLinkOptions {
  if (options === null || typeof options !== "object") throw new TypeError("Cannot connect to NATS: bad options");
  const { servers, timeout } = options;
  const list = servers === undefined ? [] : Array.isArray(servers) ? servers : [servers];
  if (!list.every((s) => typeof s === "string" && s !== "")) {
    throw new TypeError("Cannot connect to NATS: servers must be a URL or a list of URLs");
  }
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
    throw new RangeError(`Cannot connect to NATS with timeout ${timeout}: it must be a number > 0 (ms)`);
  }
  for (const key of ["user", "pass", "token", "name"] as const) {
    if (options[key] !== undefined && typeof options[key] !== "string") {
      throw new TypeError(`Cannot connect to NATS: ${key} must be a string`);
    }
  }
  return options;
}

/** nats.js errors → ipckit's classes, with the server named (never its credentials). */
function connectError(e: unknown, where: string): Error {
  const message = String((e as Error)?.message ?? e);
  const name = String((e as Error)?.name ?? "");
  const code = String((e as { code?: unknown })?.code ?? "");
  if (/auth|authorization|permission/i.test(message) || /Auth/.test(name)) {
    return new PermissionError(`Cannot connect to NATS at ${where}: the server refused the credentials`, {
      cause: e,
    });
  }
  if (/timeout/i.test(message) || /Timeout/.test(name)) {
    return new TimeoutError(`Cannot connect to NATS at ${where}: it did not answer in time`, { cause: e });
  }
  if (/ECONNREFUSED|refused|ENOTFOUND|EHOSTUNREACH|ENETUNREACH/i.test(message + code)) {
    return new NotFoundError(`Cannot connect to NATS at ${where}: nothing answers there`, { cause: e });
  }
  return new IpcError(`Cannot connect to NATS at ${where}: ${message}`, { cause: e });
}
