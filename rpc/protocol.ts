/**
 * ipckit's RPC wire protocol: every message is one Channel message holding one array, encoded with the connection's
 * codec (CBOR by default, JSON on request). The first element says what it is:
 *
 * | message | array                                                | meaning                                           |
 * | ------- | ---------------------------------------------------- | ------------------------------------------------- |
 * | HELLO   | `[0, "ipckit-rpc", major, minor]`                    | first message of each side                        |
 * | CALL    | `[1, id, method, params, timeoutMs \| null, window]` | a call; the reply carries the same id; `window`:  |
 * |         |                                                      | the stream credit to start with (1 to 2^20)       |
 * | NOTIFY  | `[2, method, params]`                                | a call without reply                              |
 * | RESULT  | `[3, id, value]`                                     | the handler's value                               |
 * | ERROR   | `[4, id \| null, { name, message, data, code }]`     | the handler threw; id null: the connection failed |
 * |         |                                                      | (with `stack` when the server exposes stacks)     |
 * | CANCEL  | `[5, id]`                                            | the caller gave up: abort the handler             |
 * | STREAM  | `[6, id]`                                            | the result is a stream; ITEMs follow              |
 * | ITEM    | `[7, id, value]`                                     | one item of a stream                              |
 * | END     | `[8, id]`                                            | the stream is complete                            |
 * | CREDIT  | `[9, id, n]`                                         | the caller may take `n` more items (backpressure; |
 * |         |                                                      | 1 to 2^20, never more than 2^20 outstanding)      |
 * | BYE     | `[10]`                                               | this side is closing (datagram channels carry no  |
 * |         |                                                      | end of stream of their own)                       |
 *
 * Ids are the caller's (integers from 1). A side that gets a HELLO of another major version answers ERROR (id null)
 * and closes, so two incompatible versions fail with a clear message instead of hanging. A message that breaks these
 * rules (a bad id, a call id already in flight, a credit out of range, more stream items than the credit allowed)
 * is a `ProtocolError`: the side that read it answers ERROR (id null) and closes.
 *
 * @module
 */
import { MethodNotFoundError, ProtocolError, RemoteError } from "../errors.ts";

export const HELLO = 0,
  CALL = 1,
  NOTIFY = 2,
  RESULT = 3,
  ERROR = 4,
  CANCEL = 5,
  STREAM = 6,
  ITEM = 7,
  END = 8,
  CREDIT = 9,
  BYE = 10;

export const MAGIC = "ipckit-rpc";
/** The largest stream window, and the most credit a stream may have outstanding. */
export const MAX_WINDOW = 2 ** 20;
/** The longest deadline a timer can hold (setTimeout fires at once past it): longer ones mean none. */
export const MAX_DEADLINE = 2 ** 31 - 1;
export const MAJOR = 1;
export const MINOR = 0;

/** An error as it travels. */
export interface WireError {
  name: string;
  message: string;
  stack?: string;
  data?: unknown;
  code?: string;
}

/**
 * Turns anything a handler threw into its wire form (never throws). The stack travels only when `stack` is true: it
 * names the server's files, which a caller should not learn unless the server says so.
 */
export function toWire(e: unknown, stack = false): WireError {
  if (e instanceof Error) {
    const w: WireError = {
      name: typeof e.name === "string" ? e.name : "Error",
      message: typeof e.message === "string" ? e.message : "",
    };
    if (stack) w.stack = e.stack ?? "";
    const data = (e as { data?: unknown }).data;
    if (data !== undefined) w.data = data;
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") w.code = code;
    return w;
  }
  return { name: "Error", message: typeof e === "string" ? e : `a non-Error value was thrown (${typeof e})` };
}

/** A peer-supplied value for an error message: a short string, whatever it is (never throws). */
export function describe(x: unknown): string {
  if (typeof x === "string") return JSON.stringify(x.length > 100 ? `${x.slice(0, 100)}...` : x);
  if (typeof x === "number" || typeof x === "boolean" || typeof x === "bigint" || x == null) return String(x);
  return Array.isArray(x) ? "an array" : `a value of type ${typeof x}`;
}

/** Rebuilds a wire error as a RemoteError (MethodNotFoundError for unknown methods). */
export function fromWire(w: unknown, method: string): RemoteError {
  if (w === null || typeof w !== "object") {
    return new RemoteError(`Remote call "${method}" failed with a malformed error`, { name: "Error" });
  }
  const o = w as Record<string, unknown>;
  const name = typeof o.name === "string" ? o.name : "Error";
  const message = typeof o.message === "string" ? o.message : "";
  const remote = {
    name,
    ...(typeof o.stack === "string" ? { stack: o.stack } : {}),
    ...(o.data === undefined ? {} : { data: o.data }),
    ...(typeof o.code === "string" ? { code: o.code } : {}),
  };
  const Class = name === "MethodNotFoundError" ? MethodNotFoundError : RemoteError;
  return new Class(`Remote call "${method}" failed: ${name}: ${message}`, remote);
}

/** Checks a decoded message's shape; returns its kind. */
export function kindOf(m: unknown): number {
  if (!Array.isArray(m) || m.length === 0 || typeof m[0] !== "number") {
    throw new ProtocolError("Cannot read an RPC message: it is not an array starting with a kind number");
  }
  return m[0];
}

/** Whether `x` is a stream result (an AsyncIterable that is not a plain value). */
export function isAsyncIterable(x: unknown): x is AsyncIterable<unknown> {
  return x !== null && typeof x === "object" &&
    typeof (x as Record<symbol, unknown>)[Symbol.asyncIterator] === "function";
}
