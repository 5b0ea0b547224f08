/**
 * A JSON-RPC 2.0 server over any Channel, for clients that are not ipckit: each Channel message is one JSON-RPC
 * request, notification or batch (UTF-8 JSON), and each reply one message. Over TCP or a Unix socket opened with
 * `framing: "lines"`, any client that speaks newline-delimited JSON is a peer (most do); with the default framing,
 * any client that writes a 4-byte big-endian length before each message.
 *
 * The same handlers as `rpc.serve` (own function properties only). Params by position are spread; params by name
 * arrive as one object. A handler's throw becomes error code -32000 (or the error's own integer `code`) with its
 * message and `data` (and the stack in `data.stack` only with `exposeStack: true`).
 *
 * Every request gets an answer, also when its result cannot be sent: standard codes -32700 parse error, -32600
 * invalid request (also: a batch longer than `maxBatch`, a request nested deeper than 512 levels), -32601 method
 * not found, -32603 internal error (a result JSON cannot encode, such as a BigInt or a cyclic object, or a reply
 * larger than the channel's `maxMessage`), -32001 server busy (`maxInFlight` requests of this connection are
 * running). Like `rpc.serve`, the server stops reading while its replies back up (`replyHighWaterMark`).
 *
 * @module
 */
import { ClosedError, MessageTooLargeError, QueueFullError } from "../errors.ts";
import type { Channel } from "../transports/channel.ts";
import { checkLimits, Outbox, type ServerLimits } from "./limits.ts";

// deno-lint-ignore no-explicit-any
type AnyFunction = (...args: any[]) => unknown;

const PARSE_ERROR = -32700,
  INVALID_REQUEST = -32600,
  METHOD_NOT_FOUND = -32601,
  INTERNAL_ERROR = -32603,
  SERVER_ERROR = -32000,
  SERVER_BUSY = -32001;

/** The deepest nesting a request may have (the request object is level 1): deeper ones are invalid requests. */
export const MAX_JSON_DEPTH = 512;
/** The default of {@linkcode JsonRpcOptions.maxBatch}. */
export const DEFAULT_MAX_BATCH = 100;

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });
const NOOP = () => {};

type Id = string | number | null;
type Reply = Record<string, unknown>;

/** Options of {@linkcode JsonRpcServer}. */
export interface JsonRpcOptions extends ServerLimits {
  /** The most requests one batch may hold (default 100): a longer batch gets one -32600 error and none runs. */
  maxBatch?: number;
  /** Called with errors of notifications (no reply carries them): a handler's throw, one dropped as busy. */
  onError?: (error: unknown) => void;
}

function failure(id: Id, code: number, message: string, data?: unknown): Reply {
  const error: Record<string, unknown> = { code, message };
  if (data !== undefined) error.data = data;
  return { jsonrpc: "2.0", error, id };
}

/** Whether valid JSON `bytes` nest deeper than `limit` (a linear scan, no allocation). */
function deeperThan(bytes: Uint8Array, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === 0x5c) i++; // a backslash: skip the escaped byte
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) inString = true;
    else if (b === 0x5b || b === 0x7b) {
      if (++depth > limit) return true;
    } else if (b === 0x5d || b === 0x7d) depth--;
  }
  return false;
}

/** Whether a parsed value nests deeper than `limit` (iterative: a deep value cannot overflow the stack). */
function nestedDeeperThan(value: unknown, limit: number): boolean {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth > limit) return true;
    for (const x of Object.values(v)) stack.push([x, depth + 1]);
  }
  return false;
}

/** A thrown value's message, whatever it is (never throws). */
function messageOf(e: unknown): string {
  if (e instanceof Error) return typeof e.message === "string" ? e.message : "";
  return typeof e === "string" ? e : `a non-Error value was thrown (${typeof e})`;
}

/**
 * A JSON-RPC 2.0 server on one channel.
 *
 * @example
 * ```ts
 * import { rpc, tcp } from "ipckit";
 * const handlers = { add: (a: number, b: number) => a + b, huge: () => 2n ** 64n };
 * // Newline-delimited JSON-RPC 2.0, what most JSON-RPC clients speak: echo '{...}' | nc 127.0.0.1 <port>
 * const listener = await tcp.listen({ port: 0, framing: "lines" });
 * await using _server = rpc.serve(listener, handlers, { protocol: "jsonrpc", maxBatch: 20 });
 * await using client = await tcp.connect({ port: listener.port, framing: "lines" }); // a plain client
 * await client.send(new TextEncoder().encode('{"jsonrpc":"2.0","method":"add","params":[1,2],"id":1}'));
 * console.log(new TextDecoder().decode(await client.receive())); // {"jsonrpc":"2.0","result":3,"id":1}
 * await client.send(new TextEncoder().encode('{"jsonrpc":"2.0","method":"huge","id":2}'));
 * console.log(new TextDecoder().decode(await client.receive())); // {..."error":{"code":-32603,...},"id":2}: a BigInt is no JSON
 * ```
 */
export class JsonRpcServer implements AsyncDisposable {
  readonly channel: Channel;
  readonly #handlers = new Map<string, AnyFunction>();
  readonly done: Promise<void>;
  readonly #maxInFlight: number;
  readonly #maxBatch: number;
  readonly #exposeStack: boolean;
  readonly #maxMessage: number;
  readonly #outbox: Outbox;
  readonly #onError: (error: unknown) => void;
  #inFlight = 0;
  #closed = false;

  /**
   * Serves `handlers` on `channel`.
   *
   * @throws {RangeError} when `maxBatch`, `maxInFlight` or `replyHighWaterMark` is not a positive integer.
   * @throws {TypeError} when `exposeStack` is not a boolean.
   */
  constructor(channel: Channel, handlers: object, options: JsonRpcOptions = {}) {
    const limits = checkLimits(options, "serve JSON-RPC");
    const maxBatch = options.maxBatch ?? DEFAULT_MAX_BATCH;
    if (!Number.isSafeInteger(maxBatch) || maxBatch < 1) {
      throw new RangeError(`Cannot serve JSON-RPC with maxBatch ${String(maxBatch)}: it must be a positive integer`);
    }
    this.channel = channel;
    this.#maxInFlight = limits.maxInFlight;
    this.#maxBatch = maxBatch;
    this.#exposeStack = limits.exposeStack;
    this.#onError = options.onError ?? NOOP;
    // BaseChannel knows its own limit; any other Channel at least its transport's.
    const own = (channel as { maxMessage?: unknown }).maxMessage;
    this.#maxMessage = typeof own === "number" ? own : channel.capabilities?.maxMessage ?? Infinity;
    this.#outbox = new Outbox(channel, limits.replyHighWaterMark);
    for (const key of Object.keys(handlers)) {
      const fn = (handlers as Record<string, unknown>)[key];
      if (typeof fn === "function") this.#handlers.set(key, fn as AnyFunction);
    }
    this.done = this.#loop();
  }

  async #loop(): Promise<void> {
    try {
      for (;;) {
        // Replies back up (the client does not read them): read no more requests until half of them went out.
        if (this.#outbox.full) await this.#outbox.drained();
        if (this.#closed) return;
        const bytes = await this.channel.receive();
        void this.#handle(bytes).then((reply) => {
          if (reply !== undefined) this.#send(reply);
        }, (e) => {
          // Not expected (every failure has its answer above), but a client must not wait for ever.
          this.#report(e);
          this.#send(utf8.encode(JSON.stringify(failure(null, INTERNAL_ERROR, "Internal error"))));
        });
      }
    } catch (e) {
      // The connection ended or broke: nothing more to answer.
      if (!(e instanceof ClosedError)) this.#report(e);
    }
  }

  /** Sends a reply; one the channel refuses as too large becomes an internal error (the client gets an answer). */
  #send(reply: Uint8Array): void {
    void this.#outbox.send(reply, (e) => {
      if (e instanceof MessageTooLargeError) this.#send(this.#tooLarge(null, e.size));
    });
  }

  #tooLarge(id: Id, size: number): Uint8Array {
    return utf8.encode(JSON.stringify(failure(
      id,
      INTERNAL_ERROR,
      `Internal error: the reply of ${size} bytes exceeds the channel's maxMessage (${this.#maxMessage} bytes)`,
    )));
  }

  /** Answers one message: the reply's bytes, or undefined when nothing is to be sent (notifications only). */
  async #handle(bytes: Uint8Array): Promise<Uint8Array | undefined> {
    let message: unknown;
    try {
      message = JSON.parse(fromUtf8.decode(bytes));
    } catch {
      return this.#encode(failure(null, PARSE_ERROR, "Parse error"));
    }
    // A message shorter than the limit cannot nest deeper than it: most skip the scan.
    const deep = bytes.byteLength > MAX_JSON_DEPTH && deeperThan(bytes, MAX_JSON_DEPTH);
    if (!Array.isArray(message)) {
      const reply = await this.#one(message, deep);
      return reply === undefined ? undefined : this.#encode(reply);
    }
    if (message.length === 0) return this.#encode(failure(null, INVALID_REQUEST, "Invalid Request: empty batch"));
    if (message.length > this.#maxBatch) {
      return this.#encode(failure(
        null,
        INVALID_REQUEST,
        `Invalid Request: a batch of ${message.length} requests exceeds maxBatch (${this.#maxBatch})`,
      ));
    }
    const replies = (await Promise.all(
      message.map((m) => this.#one(m, deep && nestedDeeperThan(m, MAX_JSON_DEPTH - 1))),
    )).filter((r) => r !== undefined);
    return replies.length > 0 ? this.#encodeBatch(replies) : undefined;
  }

  /** One reply as bytes; a reply JSON cannot encode or the channel cannot carry becomes an internal error. */
  #encode(reply: Reply): Uint8Array {
    const bytes = utf8.encode(this.#stringify(reply));
    if (bytes.byteLength <= this.#maxMessage) return bytes;
    const id = reply.id as Id;
    const small = this.#tooLarge(id, bytes.byteLength);
    // An id nearly as large as the limit leaves no room even for the error: answer without it.
    return small.byteLength <= this.#maxMessage ? small : this.#tooLarge(null, bytes.byteLength);
  }

  /** A batch reply: the largest results become internal errors until it fits the channel's maxMessage. */
  #encodeBatch(replies: Reply[]): Uint8Array {
    const parts: Uint8Array[] = replies.map((r) => utf8.encode(this.#stringify(r)));
    let total = parts.reduce((n, p) => n + p.byteLength + 1, 1);
    if (total > this.#maxMessage) {
      const bySize = parts.map((p, i) => [p.byteLength, i] as const).sort((a, b) => b[0] - a[0]);
      for (const [size, i] of bySize) {
        if (total <= this.#maxMessage) break;
        const small = this.#tooLarge(replies[i]!.id as Id, size);
        total += small.byteLength - size;
        parts[i] = small;
      }
      if (total > this.#maxMessage) return this.#tooLarge(null, total);
    }
    const out = new Uint8Array(total);
    out[0] = 0x5b; // [
    let at = 1;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
      out[at++] = 0x2c; // ,
    }
    out[total - 1] = 0x5d; // ] in place of the last comma
    return out;
  }

  /** JSON text of a reply; a result or error data JSON cannot encode gives an internal error instead. */
  #stringify(reply: Reply): string {
    const isResult = Object.hasOwn(reply, "result");
    try {
      if (!isResult) return JSON.stringify(reply);
      const result = JSON.stringify(reply.result);
      // A function or a symbol has no JSON text: the reply would carry neither result nor error.
      if (result === undefined) throw new TypeError(`a ${typeof reply.result} is not JSON data`);
      return `{"jsonrpc":"2.0","result":${result},"id":${JSON.stringify(reply.id)}}`;
    } catch (e) {
      const what = isResult ? "result" : "error";
      return JSON.stringify(
        failure(
          reply.id as Id,
          INTERNAL_ERROR,
          `Internal error: the ${what} cannot be encoded as JSON: ${messageOf(e)}`,
        ),
      );
    }
  }

  /** Answers one request (undefined for a notification). */
  async #one(m: unknown, deep: boolean): Promise<Reply | undefined> {
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
    if (deep) {
      return failure(replyId, INVALID_REQUEST, `Invalid Request: nested deeper than ${MAX_JSON_DEPTH} levels`);
    }
    const fn = this.#handlers.get(r.method);
    if (!fn) return hasId ? failure(replyId, METHOD_NOT_FOUND, `Method not found: ${r.method}`) : undefined;
    if (this.#inFlight >= this.#maxInFlight) {
      const busy = `Server busy: ${this.#maxInFlight} requests are in flight on this connection (maxInFlight)`;
      if (hasId) return failure(replyId, SERVER_BUSY, busy);
      this.#report(new QueueFullError(`Cannot run notification "${r.method}": ${busy}`));
      return undefined;
    }
    this.#inFlight++;
    try {
      const args = params === undefined ? [] : Array.isArray(params) ? params : [params];
      const result = await fn.apply({ method: r.method }, args);
      return hasId ? { jsonrpc: "2.0", result: result === undefined ? null : result, id: replyId } : undefined;
    } catch (e) {
      if (!hasId) {
        this.#report(e);
        return undefined;
      }
      const code = (e as { code?: unknown })?.code;
      return failure(
        replyId,
        Number.isInteger(code) ? code as number : SERVER_ERROR,
        messageOf(e),
        this.#errorData(e),
      );
    } finally {
      this.#inFlight--;
    }
  }

  /** The error's `data`, with its stack added only when the server exposes stacks. */
  #errorData(e: unknown): unknown {
    const data = (e as { data?: unknown })?.data;
    const stack = this.#exposeStack && e instanceof Error ? e.stack : undefined;
    if (stack === undefined) return data;
    if (data === undefined) return { stack };
    // A plain object gains a `stack` member; any other data stays as it is (there is no room for one).
    if (data !== null && typeof data === "object" && !Array.isArray(data)) return { ...data, stack };
    return data;
  }

  #report(error: unknown): void {
    try {
      this.#onError(error);
    } catch { /* the application's callback failed: nothing to tell */ }
  }

  /** Closes the channel. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#outbox.wake();
    await this.channel.close();
    await this.done;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
