/**
 * An RPC client over several connections to a replicated service, that survives the loss of a server:
 * `rpc.cluster(connect, options)` keeps `sessions` connections open (each made by `connect()`), sends each call on
 * the one with the fewest calls in flight, and replaces a connection that ends.
 *
 * Made for services behind something that spreads connections over servers: a NATS queue group (each
 * `nats.connect(subject)` reaches one listener of the group), a TCP load balancer, a Unix socket with several
 * accepting processes. Load is shared per connection, so keep a few more sessions than servers.
 *
 * Delivery when a connection ends with calls in flight (its server died, or the network did):
 * - a call marked `idempotent` is sent again on another connection (up to `retries` times), so it completes;
 * - any other call rejects with `ClosedError` saying it was lost: it may or may not have run, and ipckit never runs
 *   it twice behind your back;
 * - a call made while no connection is up waits for one (within its deadline, `signal` and `connectTimeout`).
 *
 * @example
 * ```ts
 * import { nats, rpc, runtime } from "ipckit";
 * const rt = await runtime();
 * const servers = rt.env("NATS_URL") ?? "nats://127.0.0.1:4222";
 * const subject = `calc.${rt.pid}`;
 * // Two servers of one service (on any hosts): one queue group.
 * const handlers = { add: (a: number, b: number) => a + b };
 * const one = rpc.serve(await nats.listen(subject, { servers, queue: "calc" }), handlers);
 * const two = rpc.serve(await nats.listen(subject, { servers, queue: "calc" }), handlers);
 * await using link = await nats.open({ servers });
 * await using calc = rpc.cluster<typeof handlers>(() => nats.connect(subject, { link }), { sessions: 4 });
 * console.log(await calc.api.add(1, 2)); // 3, from whichever server holds the least loaded connection
 * console.log(await calc.callWith("add", [2, 3], { idempotent: true })); // 5, sent again if its server dies
 * await calc.close();
 * await one.close();
 * await two.close();
 * ```
 *
 * @module
 */
import { Backoff, Deadline, delay, Waiters } from "../async/mod.ts";
import { abortError, ClosedError, TimeoutError } from "../errors.ts";
import type { Channel } from "../transports/channel.ts";
import { type CallOptions, type RemoteApi, type RpcOptions, RpcPeer } from "./peer.ts";

/** Options of {@linkcode cluster}. */
export interface ClusterOptions extends RpcOptions {
  /** Connections kept open. Default 2. */
  sessions?: number;
  /** How many times an idempotent call is sent again after its connection ended. Default 3. */
  retries?: number;
  /** Delay before a lost connection is replaced, in ms; doubles with each failure in a row, up to 5 s. 100. */
  reconnectDelay?: number;
  /** How long a call waits for a connection when none is up, in ms. Default 30 000. */
  connectTimeout?: number;
}

/** Options of one call on a cluster. */
export interface ClusterCallOptions extends CallOptions {
  /** The call may run twice: send it again if its connection ends before the reply. Default false. */
  idempotent?: boolean;
}

interface Session {
  peer: RpcPeer;
  inFlight: number;
  /** When it opened, and when it last answered a call (ms timestamps). */
  opened: number;
  answered: number;
}

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => any;

/**
 * An RPC client over several connections. See the module doc.
 *
 * @example
 * ```ts
 * import { rpc, runtime, unix } from "ipckit";
 * // Not only NATS: any connect function, here several connections to one Unix socket server.
 * const path = `/tmp/ipckit-cluster-${(await runtime()).pid}.sock`;
 * await using server = rpc.serve(await unix.listen(path), { ping: () => "pong" });
 * const cluster = new rpc.RpcCluster<{ ping(): string }>(() => unix.connect(path), { sessions: 3 });
 * await cluster.ready();
 * console.log(cluster.sessions, await cluster.api.ping()); // 3 "pong"
 * console.log(cluster.stats.calls); // 1
 * await cluster.close();
 * ```
 */
export class RpcCluster<Remote = Record<string, AnyFunction>> implements AsyncDisposable {
  /** The typed proxy: `cluster.api.add(1, 2)` is `cluster.call("add", 1, 2)`. */
  readonly api: RemoteApi<Remote>;
  readonly #connect: () => Promise<Channel>;
  readonly #options: RpcOptions;
  readonly #size: number;
  readonly #retries: number;
  readonly #delay: number;
  readonly #connectTimeout: number;
  #sessions: Session[] = [];
  #turn = 0;
  /** The pauses between failed connection attempts (reset by a success). */
  readonly #backoff: Backoff;
  #closed = false;
  #lastError: unknown;
  /** Callers waiting for a session to come up or answer. */
  #waiters = new Waiters<void>();
  readonly #stats = { calls: 0, retried: 0, lost: 0, reconnects: 0 };

  constructor(connect: () => Promise<Channel>, options: ClusterOptions = {}) {
    if (typeof connect !== "function") throw new TypeError("Cannot make an RPC cluster: connect must be a function");
    const { sessions = 2, retries = 3, reconnectDelay = 100, connectTimeout = 30_000, ...rpcOptions } = options;
    if (!Number.isInteger(sessions) || sessions < 1) {
      throw new RangeError(`Cannot keep ${sessions} sessions: it must be an integer >= 1`);
    }
    if (!Number.isInteger(retries) || retries < 0) {
      throw new RangeError(`Cannot use retries ${retries}: an integer >= 0`);
    }
    if (!(reconnectDelay >= 0)) throw new RangeError(`Cannot use reconnectDelay ${reconnectDelay}: a number >= 0`);
    const window = rpcOptions.window ?? 16;
    if (!Number.isInteger(window) || window < 1) throw new RangeError(`Cannot use an RPC window of ${window}`);
    if (!(connectTimeout >= 0)) throw new RangeError(`Cannot use connectTimeout ${connectTimeout}: a number >= 0`);
    this.#connect = connect;
    this.#options = rpcOptions;
    this.#size = sessions;
    this.#retries = retries;
    this.#delay = reconnectDelay;
    this.#backoff = new Backoff({
      first: Math.min(Math.max(reconnectDelay, 1), MAX_RECONNECT_DELAY),
      max: MAX_RECONNECT_DELAY,
    });
    this.#connectTimeout = connectTimeout;
    this.api = new Proxy({}, {
      get: (_, name) =>
        typeof name === "string" && name !== "then" ? (...args: unknown[]) => this.call(name, ...args) : undefined,
    }) as RemoteApi<Remote>;
    for (let i = 0; i < sessions; i++) void this.#open(0);
  }

  /** Connections up now. */
  get sessions(): number {
    return this.#sessions.length;
  }

  /** Calls made, idempotent calls sent again, calls lost with their connection, connections replaced. */
  get stats(): { calls: number; retried: number; lost: number; reconnects: number } {
    return { ...this.#stats };
  }

  /** Resolves once every session is up; rejects with the last connection error after `connectTimeout`. */
  async ready(): Promise<void> {
    const deadline = Deadline.after(this.#connectTimeout);
    while (this.#sessions.length < this.#size) {
      if (this.#closed) throw new ClosedError("Cannot wait for the RPC cluster: it is closed");
      if (deadline.passed) throw this.#noSession();
      await this.#waitForSession(deadline.remaining, undefined);
    }
  }

  /** Calls `method` with `params`. */
  call(method: string, ...params: unknown[]): Promise<unknown> {
    return this.callWith(method, params);
  }

  /**
   * Calls `method` with `params` on the least loaded connection. See the module doc for what happens when that
   * connection ends before the reply.
   */
  async callWith(method: string, params: unknown[], options: ClusterCallOptions = {}): Promise<unknown> {
    const { idempotent = false, ...callOptions } = options;
    const deadline = callOptions.timeout === undefined ? undefined : Date.now() + callOptions.timeout;
    this.#stats.calls++;
    /** After a loss: only a connection that proved alive since then (its siblings to that server die too). */
    let since = 0;
    for (let attempt = 0;; attempt++) {
      if (this.#closed) throw new ClosedError(`Cannot call "${method}": the RPC cluster is closed`);
      if (callOptions.signal?.aborted) throw abortError(callOptions.signal);
      const left = () => (deadline === undefined ? undefined : Math.max(0, deadline - Date.now()));
      const session = await this.#pick(method, left(), callOptions.signal, since);
      const timeout = left();
      session.inFlight++;
      try {
        const value = await session.peer.callWith(method, params, {
          ...callOptions,
          ...(timeout === undefined ? {} : { timeout }),
        });
        session.answered = Date.now();
        if (this.#waiters.length > 0) this.#wake();
        return value;
      } catch (e) {
        session.answered = Date.now(); // an error reply is an answer too; a ClosedError is handled below
        // A ClosedError from a live cluster: the connection ended under the call.
        if (!(e instanceof ClosedError) || this.#closed) throw e;
        if (idempotent && attempt < this.#retries) {
          this.#stats.retried++;
          since = Date.now();
          continue;
        }
        this.#stats.lost++;
        throw new ClosedError(
          `Remote call "${method}" was lost: its connection ended before the reply` +
            (idempotent
              ? ` (after ${attempt + 1} attempts)`
              : "; it may have run, and was not sent again because it is not marked idempotent"),
          { cause: e },
        );
      } finally {
        session.inFlight--;
      }
    }
  }

  /** Sends a notification on one connection. */
  async notify(method: string, ...params: unknown[]): Promise<void> {
    const session = await this.#pick(method, undefined, undefined, 0);
    await session.peer.notify(method, ...params);
  }

  /** Closes every connection; pending calls reject with `ClosedError`. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#wake();
    await Promise.all(this.#sessions.map((s) => s.peer.close().catch(() => {})));
    this.#sessions = [];
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** The least loaded session (ties taken in turn) that opened or answered after `since`; waits for one. */
  async #pick(
    method: string,
    timeout: number | undefined,
    signal: AbortSignal | undefined,
    since: number,
  ): Promise<Session> {
    const deadline = Deadline.after(Math.min(timeout ?? Infinity, this.#connectTimeout));
    for (;;) {
      const all = this.#sessions;
      let best: Session | undefined;
      const start = this.#turn++ % Math.max(1, all.length);
      for (let k = 0; k < all.length; k++) {
        const s = all[(start + k) % all.length]!;
        if (s.opened <= since && s.answered <= since) continue;
        if (!best || s.inFlight < best.inFlight) best = s;
      }
      if (best) return best;
      if (this.#closed) throw new ClosedError(`Cannot call "${method}": the RPC cluster is closed`);
      if (deadline.passed) {
        throw timeout !== undefined && timeout <= this.#connectTimeout
          ? new TimeoutError(`Remote call "${method}" timed out after ${timeout} ms waiting for a connection`)
          : this.#noSession();
      }
      await this.#waitForSession(deadline.remaining, signal);
    }
  }

  #noSession(): Error {
    const why = (this.#lastError as Error)?.message ?? this.#lastError;
    return new ClosedError(
      `Cannot reach the service: no connection came up within ${this.#connectTimeout} ms` +
        (why === undefined ? "" : ` (last error: ${why})`),
      this.#lastError === undefined ? {} : { cause: this.#lastError },
    );
  }

  #wake(): void {
    while (this.#waiters.wake());
  }

  /** Waits until a session comes up or answers, or `ms` passed (then the caller checks its own deadline). */
  #waitForSession(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return this.#waiters.wait(signal ? { signal, timeout: ms } : { timeout: ms }, stillNone).catch(rethrowUnlessNone);
  }

  async #open(wait: number): Promise<void> {
    {
      if (wait > 0) await delay(wait);
      if (this.#closed) return;
      let channel: Channel;
      try {
        channel = await this.#connect();
      } catch (e) {
        this.#lastError = e;
        if (!this.#closed) void this.#open(this.#backoff.next());
        return;
      }
      if (this.#closed) {
        await channel.close();
        return;
      }
      this.#backoff.reset();
      const now = Date.now();
      const session: Session = { peer: new RpcPeer(channel, this.#options), inFlight: 0, opened: now, answered: now };
      this.#sessions.push(session);
      this.#wake();
      void session.peer.done.then(() => {
        this.#sessions = this.#sessions.filter((s) => s !== session);
        if (this.#closed) return;
        this.#stats.reconnects++;
        void this.#open(this.#delay);
      });
    }
  }
}

/** The longest pause between failed connection attempts, in milliseconds. */
const MAX_RECONNECT_DELAY = 5000;

/** What `#waitForSession`'s time running out rejects with (never seen outside: the caller checks its deadline). */
const NONE_YET = new TimeoutError("Cannot wait for a session: none came up in time");
const stillNone = (): Error => NONE_YET;
const rethrowUnlessNone = (e: unknown): void => {
  if (e !== NONE_YET) throw e;
};

/**
 * Makes an {@linkcode RpcCluster}: an RPC client over `sessions` connections from `connect()`.
 *
 * @throws {TypeError} / {RangeError} for bad options.
 *
 * @example
 * ```ts
 * import { ClosedError, rpc, tcp } from "ipckit";
 * // A service that is down: calls wait for a connection up to connectTimeout, then fail clearly.
 * await using down = rpc.cluster(() => tcp.connect({ port: 1 }), { sessions: 1, connectTimeout: 300 });
 * try {
 *   await down.call("anything");
 * } catch (e) {
 *   console.log(e instanceof ClosedError && /no connection came up/.test(e.message)); // true
 * }
 * ```
 */
export function cluster<Remote = Record<string, AnyFunction>>(
  connect: () => Promise<Channel>,
  options: ClusterOptions = {},
): RpcCluster<Remote> {
  return new RpcCluster<Remote>(connect, options);
}
