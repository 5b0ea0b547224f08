/**
 * A JSON-RPC 2.0 server over any Channel, for clients that are not ipckit: each Channel message is one JSON-RPC
 * request, notification or batch (UTF-8 JSON), and each reply one message. Over TCP or a Unix socket opened with
 * `framing: "lines"`, any client that speaks newline-delimited JSON is a peer (most do); with the default framing,
 * any client that writes a 4-byte big-endian length before each message.
 *
 * The same handlers as `rpc.serve` (own function properties only). Params by position are spread; params by name
 * arrive as one object. A handler's throw becomes error code -32000 (or the error's own integer `code`) with its
 * message and `data`. Standard codes: -32700 parse error, -32600 invalid request, -32601 method not found.
 *
 * @module
 */
import type { Channel } from "../transports/channel.ts";

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => unknown;

const PARSE_ERROR = -32700, INVALID_REQUEST = -32600, METHOD_NOT_FOUND = -32601, SERVER_ERROR = -32000;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

type Id = string | number | null;

function failure(id: Id, code: number, message: string, data?: unknown): Record<string, unknown> {
  const error: Record<string, unknown> = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: "2.0", error, id };
}

/**
 * A JSON-RPC 2.0 server on one channel.
 *
 * @example
 * ```ts
 * import { rpc, tcp } from "ipckit";
 * const handlers = { add: (a: number, b: number) => a + b };
 * // Newline-delimited JSON-RPC 2.0, what most JSON-RPC clients speak: echo '{...}' | nc 127.0.0.1 <port>
 * const listener = await tcp.listen({ port: 0, framing: "lines" });
 * await using _server = rpc.serve(listener, handlers, { protocol: "jsonrpc" });
 * await using client = await tcp.connect({ port: listener.port, framing: "lines" }); // a plain client
 * await client.send(new TextEncoder().encode('{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'));
 * console.log(new TextDecoder().decode(await client.receive())); // {"jsonrpc":"2.0","result":3,"id":1}
 * ```
 */
export class JsonRpcServer implements AsyncDisposable {
  readonly channel: Channel;
  readonly #handlers = new Map<string, AnyFunction>();
  readonly done: Promise<void>;

  constructor(channel: Channel, handlers: object) {
    this.channel = channel;
    for (const key of Object.keys(handlers)) {
      const fn = (handlers as Record<string, unknown>)[key];
      if (typeof fn === "function") this.#handlers.set(key, fn as AnyFunction);
    }
    this.done = this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      for await (const bytes of this.channel) {
        void this.#handle(bytes).then((reply) => {
          if (reply !== undefined) return this.channel.send(utf8.encode(JSON.stringify(reply)));
        }).catch(() => {});
      }
    } catch {
      // The connection broke: nothing more to answer.
    }
  }

  async #handle(bytes: Uint8Array): Promise<unknown> {
    let message: unknown;
    try {
      message = JSON.parse(fromUtf8.decode(bytes));
    } catch {
      return failure(null, PARSE_ERROR, "Parse error");
    }
    if (Array.isArray(message)) {
      if (message.length === 0) return failure(null, INVALID_REQUEST, "Invalid Request: empty batch");
      const replies = (await Promise.all(message.map((m) => this.#one(m)))).filter((r) => r !== undefined);
      return replies.length > 0 ? replies : undefined;
    }
    return this.#one(message);
  }

  /** Answers one request (undefined for a notification). */
  async #one(m: unknown): Promise<unknown> {
    if (m === null || typeof m !== "object" || Array.isArray(m)) {
      return failure(null, INVALID_REQUEST, "Invalid Request");
    }
    const r = m as Record<string, unknown>;
    const hasId = Object.hasOwn(r, "id");
    const id = r.id;
    if (hasId && id !== null && typeof id !== "string" && typeof id !== "number") {
      return failure(null, INVALID_REQUEST, "Invalid Request: bad id");
    }
    const replyId = (hasId ? id : null) as Id;
    const params = r.params;
    if (
      r.jsonrpc !== "2.0" || typeof r.method !== "string" ||
      (params !== undefined && (params === null || typeof params !== "object"))
    ) {
      return failure(replyId, INVALID_REQUEST, "Invalid Request");
    }
    const fn = this.#handlers.get(r.method);
    if (!fn) return hasId ? failure(replyId, METHOD_NOT_FOUND, `Method not found: ${r.method}`) : undefined;
    try {
      const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
      const result = await fn.apply({ method: r.method }, args);
      return hasId ? { jsonrpc: "2.0", result: result === undefined ? null : result, id: replyId } : undefined;
    } catch (e) {
      if (!hasId) return undefined;
      const code = (e as { code?: unknown })?.code;
      return failure(
        replyId,
        Number.isInteger(code) ? code as number : SERVER_ERROR,
        e instanceof Error ? e.message : String(e),
        (e as { data?: unknown })?.data,
      );
    }
  }

  /** Closes the channel. */
  async close(): Promise<void> {
    await this.channel.close();
    await this.done;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
