/**
 * Codecs turn values into message bytes and back: `cbor` (the default, binary-safe: a Uint8Array travels as bytes;
 * plain data only, every size bounded), {@linkcode cborCodec} for other limits or, between trusted peers, cbor-x's
 * richer values, and `json` (UTF-8 JSON; interoperable with anything).
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { type CborSettings, decodeCbor, decodeExtended, DEFAULT_SETTINGS, encodeCbor } from "./cbor.ts";

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

/** Options of {@linkcode cborCodec}. */
export interface CborOptions {
  /**
   * Decode what cbor-x decodes beyond plain data (RegExp, Error, shared and cyclic references, records, any tag),
   * and encode such values through cbor-x. Default `false`: a hostile peer can freeze a process with some of them
   * (a RegExp that backtracks, a bignum that cbor-x builds in quadratic time), so only for peers you trust.
   */
  extended?: boolean;
  /**
   * How deep arrays, maps and tags may nest, 1 to 2000 (deeper needs more stack than every runtime gives). Default
   * 500.
   */
  maxDepth?: number;
  /** The largest BigInt beyond 64 bits (a tag 2/3 bignum), in bytes, 0 to 2^26. Default 4096 (32 768 bits). */
  maxBignumBytes?: number;
}

const OPTIONS = new Set(["extended", "maxDepth", "maxBignumBytes"]);

/**
 * A CBOR codec with limits of your own, or with cbor-x's full decoder for trusted peers (`extended: true`).
 *
 * Without `extended`, decoding takes plain data only, in time linear in the message: numbers (64-bit integers as
 * BigInt), strings, byte strings, arrays, maps (objects; a `__proto__` key stays an own property), booleans, null,
 * undefined, and the tags ipckit writes for Date, Map, Set, BigInt and typed arrays. Anything else is a
 * `ProtocolError` that names it; encoding refuses the same values with a `TypeError`, so what one side sends the
 * other decodes. Both sides should use the same options.
 *
 * @param options `extended`, `maxDepth`, `maxBignumBytes`.
 * @returns a {@linkcode Codec} named `cbor`.
 * @throws {TypeError} for an unknown option or one of the wrong type.
 * @throws {RangeError} for a limit out of range.
 *
 * @example
 * ```ts
 * import { cbor, cborCodec, ProtocolError } from "ipckit";
 * // A RegExp travels only between peers that both opted in.
 * const trusted = cborCodec({ extended: true });
 * const bytes = trusted.encode({ pattern: /^a+$/ });
 * console.log(trusted.decode(bytes)); // { pattern: /^a+$/ }
 * try {
 *   cbor.decode(bytes);
 * } catch (e) {
 *   console.log(e instanceof ProtocolError); // true: tag 27 (an object built by a constructor) is refused
 * }
 * // Deeper nesting than the default 500 levels, for data you know is deep.
 * const deep = cborCodec({ maxDepth: 2000 });
 * let tree: unknown = [];
 * for (let i = 0; i < 1000; i++) tree = [tree];
 * console.log(deep.decode(deep.encode(tree)) !== undefined); // true
 * ```
 */
export function cborCodec(options: CborOptions = {}): Codec {
  if (options === null || typeof options !== "object") {
    throw new TypeError("Cannot create a CBOR codec: options must be an object");
  }
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) throw new TypeError(`Cannot create a CBOR codec: unknown option "${key}"`);
  }
  const { extended = false, maxDepth = DEFAULT_SETTINGS.maxDepth } = options;
  const { maxBignumBytes = DEFAULT_SETTINGS.maxBignumBytes } = options;
  if (typeof extended !== "boolean") throw new TypeError("Cannot create a CBOR codec: extended must be a boolean");
  limit("maxDepth", maxDepth, 1, 2000);
  limit("maxBignumBytes", maxBignumBytes, 0, 2 ** 26);
  const settings: CborSettings = { extended, maxDepth, maxBignumBytes };
  return codecOf(settings, extended ? decodeExtended : decodeCbor);
}

function limit(name: string, value: unknown, min: number, max: number): void {
  if (typeof value !== "number") throw new TypeError(`Cannot create a CBOR codec: ${name} must be a number`);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`Cannot create a CBOR codec: ${name} ${value} must be an integer from ${min} to ${max}`);
  }
}

function codecOf(settings: CborSettings, decode: (bytes: Uint8Array, limits: CborSettings) => unknown): Codec {
  return {
    name: "cbor",
    encode: (value) => encodeCbor(value, settings),
    decode(bytes) {
      // Byte strings decode as views of the input: make them plain Uint8Arrays, not Node Buffers.
      if (bytes.constructor !== Uint8Array) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return decode(bytes, settings);
    },
  };
}

/**
 * CBOR (RFC 8949) through ipckit's own encoder and decoder (`transports/cbor.ts`): plain data, Date, Map, Set,
 * BigInt and typed arrays, with the default limits (500 levels, bignums up to 4 KiB). A message beyond that (a
 * RegExp, an Error, a shared reference, an unknown tag, a declared length the message does not hold) is a
 * `ProtocolError`; {@linkcode cborCodec} changes the limits or, for trusted peers, decodes with cbor-x.
 *
 * @example
 * ```ts
 * import { cbor } from "ipckit";
 * const bytes = cbor.encode({ a: 1, b: new Uint8Array([1]), when: new Date(0), tags: new Set(["x"]) });
 * console.log(cbor.decode(bytes)); // { a: 1, b: Uint8Array [1], when: 1970-01-01T00:00:00.000Z, tags: Set { "x" } }
 * ```
 */
export const cbor: Codec = codecOf(DEFAULT_SETTINGS, decodeCbor);

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
