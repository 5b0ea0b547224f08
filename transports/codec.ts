/**
 * Codecs turn values into message bytes and back: `cbor` (cbor-x; the default, binary-safe: a Uint8Array travels
 * as bytes) and `json` (UTF-8 JSON; interoperable with anything).
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { decodeCbor, encodeCbor } from "./cbor.ts";

/**
 * Encodes values of type T to bytes and back.
 *
 * @example
 * ```ts
 * import { type Codec, ProtocolError, shm, typed } from "ipckit";
 * // A codec of your own: plain UTF-8 text.
 * const text: Codec<string> = {
 *   name: "text",
 *   encode: (value) => new TextEncoder().encode(value),
 *   decode(bytes) {
 *     try {
 *       return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
 *     } catch (e) {
 *       throw new ProtocolError("Cannot decode a text message: it is not UTF-8", { cause: e });
 *     }
 *   },
 * };
 * const [here, handle] = shm.pair({ capacity: 4096 });
 * const a = typed(here, text);
 * const b = typed(shm.fromHandle(handle), text);
 * await a.send("plain text");
 * console.log(await b.receive()); // "plain text"
 * await a.close();
 * await b.close();
 * ```
 */
export interface Codec<T = unknown> {
  /** A short name, for error messages. */
  readonly name: string;
  encode(value: T): Uint8Array;
  /** @throws {ProtocolError} when the bytes are not a valid encoding. */
  decode(bytes: Uint8Array): T;
}

/**
 * CBOR (RFC 8949): plain data through ipckit's own small encoder (`transports/cbor.ts`), everything else through
 * cbor-x.
 *
 * @example
 * ```ts
 * import { cbor } from "ipckit";
 * const bytes = cbor.encode({ a: 1, b: new Uint8Array([1]) });
 * console.log(cbor.decode(bytes)); // { a: 1, b: Uint8Array [1] }: bytes stay bytes, no base64
 * ```
 */
export const cbor: Codec = {
  name: "cbor",
  encode: encodeCbor,
  decode(bytes) {
    // Byte strings decode as views of the input: make them plain Uint8Arrays, not Node Buffers.
    if (bytes.constructor !== Uint8Array) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    try {
      return decodeCbor(bytes);
    } catch (e) {
      throw new ProtocolError(`Cannot decode a CBOR message of ${bytes.byteLength} bytes: ${(e as Error).message}`, {
        cause: e,
      });
    }
  },
};

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * JSON as UTF-8 bytes.
 *
 * @example
 * ```ts
 * import { json } from "ipckit";
 * console.log(new TextDecoder().decode(json.encode({ a: 1 }))); // '{"a":1}'
 * console.log(json.decode(new TextEncoder().encode("[1,2]"))); // [1, 2]
 * ```
 */
export const json: Codec = {
  name: "json",
  encode(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`Cannot encode ${typeof value} as JSON`);
    return utf8.encode(text);
  },
  decode(bytes) {
    try {
      return JSON.parse(fromUtf8.decode(bytes));
    } catch (e) {
      throw new ProtocolError(`Cannot decode a JSON message of ${bytes.byteLength} bytes: ${(e as Error).message}`, {
        cause: e,
      });
    }
  },
};
