/**
 * RPC over any Channel: `rpc.serve(channelOrListener, handlers)` on one side, `rpc.connect(channel)` on the other;
 * both may serve at once (`rpc.connect(channel, { handlers })`). See `peer.ts` for the semantics and
 * `protocol.ts` for the wire format.
 *
 * @example
 * ```ts
 * import { rpc, runtime, unix } from "ipckit";
 * const handlers = {
 *   add: (a: number, b: number) => a + b,
 *   async *count(n: number) { for (let i = 0; i < n; i++) yield i; },
 * };
 * const path = `/tmp/ipckit-calc-${(await runtime()).pid}.sock`;
 * await using server = rpc.serve(await unix.listen(path), handlers);
 * await using client = rpc.connect<typeof handlers>(await unix.connect(path));
 * console.log(await client.api.add(1, 2)); // 3
 * for await (const i of await client.api.count(3)) console.log(i); // 0 1 2
 * ```
 *
 * @module
 */
import type { Channel, Listener } from "../transports/channel.ts";
import { ClosedError } from "../errors.ts";
import { type RpcOptions, RpcPeer } from "./peer.ts";
import { type JsonRpcOptions, JsonRpcServer } from "./jsonrpc.ts";
import { checkLimits } from "./limits.ts";

export { type JsonRpcOptions, JsonRpcServer } from "./jsonrpc.ts";
export type { ServerLimits } from "./limits.ts";
export { cluster, type ClusterCallOptions, type ClusterOptions, RpcCluster } from "./cluster.ts";

/**
 * Options of {@linkcode serve}, given to every connection it serves: the limits (`maxInFlight`,
 * `replyHighWaterMark`, `exposeStack`) hold per connection.
 */
export interface ServeOptions extends Omit<RpcOptions, "handlers"> {
  /** `"ipckit"` (default: the protocol of `rpc.connect`) or `"jsonrpc"`: JSON-RPC 2.0 for outside clients. */
  protocol?: "ipckit" | "jsonrpc";
  /** JSON-RPC only: the most requests in one batch (default 100); a longer batch gets one -32600 error. */
  maxBatch?: number;
}

export { type CallContext, type CallOptions, type CallSink, type RemoteApi, type RpcOptions, RpcPeer } from "./peer.ts";

/** A server on a Listener: one RpcPeer per accepted connection. */
export interface RpcServer extends AsyncDisposable {
  /** The connections being served. */
  readonly peers: ReadonlySet<RpcPeer | JsonRpcServer>;
  /** Stops accepting, closes every connection and the listener. */
  close(): Promise<void>;
}

function isChannel(x: unknown): x is Channel {
  return x !== null && typeof x === "object" && typeof (x as Channel).send === "function" &&
    typeof (x as Channel).receive === "function";
}

/**
 * Serves `handlers` on a Channel (returns its RpcPeer, which can also call the other side) or on every connection
 * a Listener accepts (returns an RpcServer).
 *
 * @example
 * ```ts
 * import { type CallContext, rpc, tcp } from "ipckit";
 * const handlers = {
 *   greet: (name: string) => `hello, ${name}`,
 *   async slow(this: CallContext, ms: number) {
 *     await new Promise((resolve, reject) => {
 *       const timer = setTimeout(resolve, ms);
 *       this.signal.addEventListener("abort", () => {
 *         clearTimeout(timer); // the caller gave up: stop working
 *         reject(this.signal.reason);
 *       });
 *     });
 *     return ms;
 *   },
 * };
 * const listener = await tcp.listen({ port: 0 });
 * await using _server = rpc.serve(listener, handlers); // one RpcPeer per connection, closed with the server
 * await using client = rpc.connect<typeof handlers>(await tcp.connect({ port: listener.port }));
 * console.log(await client.api.greet("ipckit")); // "hello, ipckit"
 * try {
 *   await client.callWith("slow", [60_000], { timeout: 50 }); // the deadline crosses the wire
 * } catch (e) {
 *   console.log((e as Error).name); // "TimeoutError"; the handler's this.signal aborted too
 * }
 * ```
 */
export function serve<H extends object>(
  target: Channel,
  handlers: H,
  options: ServeOptions & { protocol: "jsonrpc" },
): JsonRpcServer;
export function serve<H extends object>(target: Channel, handlers: H, options?: ServeOptions): RpcPeer;
export function serve<H extends object>(target: Listener, handlers: H, options?: ServeOptions): RpcServer;
export function serve<H extends object>(
  target: Channel | Listener,
  handlers: H,
  options: ServeOptions = {},
): RpcPeer | RpcServer | JsonRpcServer {
  if (handlers === null || typeof handlers !== "object") {
    throw new TypeError("Cannot serve RPC: handlers must be an object of functions");
  }
  const { protocol = "ipckit", maxBatch, ...rest } = options;
  if (protocol !== "ipckit" && protocol !== "jsonrpc") {
    throw new TypeError(`Cannot serve RPC: protocol must be "ipckit" or "jsonrpc", not ${JSON.stringify(protocol)}`);
  }
  const { maxInFlight, replyHighWaterMark, exposeStack, onError } = rest;
  // Bad limits fail here, once, rather than on each connection a listener accepts.
  checkLimits(rest, "serve RPC");
  const jsonOptions: JsonRpcOptions = {
    ...(maxBatch === undefined ? {} : { maxBatch }),
    ...(maxInFlight === undefined ? {} : { maxInFlight }),
    ...(replyHighWaterMark === undefined ? {} : { replyHighWaterMark }),
    ...(exposeStack === undefined ? {} : { exposeStack }),
    ...(onError === undefined ? {} : { onError }),
  };
  if (maxBatch !== undefined && (!Number.isSafeInteger(maxBatch) || maxBatch < 1)) {
    throw new RangeError(`Cannot serve RPC with maxBatch ${String(maxBatch)}: it must be a positive integer`);
  }
  const start = (channel: Channel) =>
    protocol === "jsonrpc"
      ? new JsonRpcServer(channel, handlers, jsonOptions)
      : new RpcPeer(channel, { ...rest, handlers });
  if (isChannel(target)) return start(target);
  if (target === null || typeof target !== "object" || typeof (target as Listener).accept !== "function") {
    throw new TypeError("Cannot serve RPC: the target must be a Channel or a Listener");
  }
  const listener = target as Listener;
  const peers = new Set<RpcPeer | JsonRpcServer>();
  let closing = false;
  const accepting = (async () => {
    for (;;) {
      let channel: Channel;
      try {
        channel = await listener.accept();
      } catch (e) {
        if (e instanceof ClosedError || closing) return;
        throw e;
      }
      const peer = start(channel);
      peers.add(peer);
      void peer.done.then(() => peers.delete(peer));
    }
  })();
  accepting.catch(() => {});
  const close = async () => {
    closing = true;
    await listener.close();
    await Promise.all([...peers].map((p) => p.close()));
    await accepting;
  };
  return { peers, close, [Symbol.asyncDispose]: close };
}

/**
 * Connects an RPC client (which may also serve `options.handlers`) over `channel`.
 *
 * @example
 * ```ts
 * import { type CallContext, rpc, shm } from "ipckit";
 * const [a, handle] = shm.pair(); // any Channel: a socket, a pipe, a queue...
 * // Both sides may serve: the server calls the client back while it answers.
 * const server = rpc.serve(a, {
 *   async fetch(this: CallContext, key: string) {
 *     const token = await this.peer.call("token"); // a call back to the client
 *     return `${key} (with ${token})`;
 *   },
 * });
 * await using client = rpc.connect<{ fetch(key: string): string }>(shm.fromHandle(handle), {
 *   handlers: { token: () => "t-123" },
 * });
 * console.log(await client.api.fetch("report")); // "report (with t-123)"
 * await server.close();
 * ```
 */
export function connect<Remote = Record<string, (...args: never[]) => unknown>>(
  channel: Channel,
  options: RpcOptions = {},
): RpcPeer<Remote> {
  if (!isChannel(channel)) throw new TypeError("Cannot connect RPC: the target must be a Channel");
  return new RpcPeer<Remote>(channel, options);
}
