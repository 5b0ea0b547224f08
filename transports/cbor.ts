/**
 * ipckit's CBOR (RFC 8949) encoder, and the two ways in: `decodeCbor` (plain data only, `transports/cbor_decode.ts`)
 * and `decodeExtended` (cbor-x's full decoder for trusted peers).
 *
 * The encoder writes plain data itself, in the shortest standard form: numbers, strings, booleans, null, undefined,
 * Uint8Array (and ArrayBuffer, DataView) as a byte string, arrays, and objects as maps with string keys. It also
 * writes, with the tags cbor-x uses (so older ipckit and cbor-x peers read them as before): Date (tag 1: seconds),
 * Map (tag 259), Set (tag 258), BigInt (a 64-bit integer head, or tag 2/3 past 64 bits) and the typed arrays (tags 64
 * to 86, RFC 8746, this machine's byte order). A class instance is written as a map of its own enumerable
 * properties and any other iterable as an array, as cbor-x writes them. What the plain decoder would refuse is
 * refused here too, with a `TypeError` at the sender: Error, RegExp, cbor-x `Tag`s, functions, symbols, weak
 * collections, promises, a BigInt past `maxBignumBytes`, nesting past `maxDepth` (a cyclic value ends there). So what
 * ipckit encodes, ipckit decodes, with the same limits. With `extended` those values go to cbor-x instead, whole.
 *
 * Integers of 32 bits are integers, other numbers float32 when that is exact and float64 otherwise (so -0 stays -0,
 * and 2^40 stays a number where a 64-bit integer would be read as a BigInt). For a 16-byte message this path costs
 * about a fifth of cbor-x's, which is most of an RPC call over shared memory.
 *
 * Why one file of ~460 lines: one encoder, one pass over the value; its cases are one switch.
 *
 * @module
 */
// cbor-x's subpaths, not its root: the root's Node entry also loads cbor-extract, a native addon that only speeds up
// cbor-x's own decoder (ipckit decodes plain data itself) and costs every process that imports ipckit ~65 ms of CPU
// on Deno, ~15 ms on Node.
import { Encoder } from "cbor-x/encode";
import { Decoder, Tag } from "cbor-x/decode";
import { ProtocolError } from "../errors.ts";
import { copy } from "../runtimes/bytes.ts";
import { type CborLimits, decodeCbor, DEFAULT_LIMITS } from "./cbor_decode.ts";

export { type CborLimits, decodeCbor, decodeCborRest, DEFAULT_LIMITS } from "./cbor_decode.ts";

/** How a CBOR codec reads and writes: the decoder's limits, and whether cbor-x's richer values are allowed. */
export interface CborSettings extends CborLimits {
  /** cbor-x decodes (and encodes) what ipckit's plain path refuses: for trusted peers only. */
  readonly extended: boolean;
}

/** The `cbor` codec's settings: plain data, {@linkcode DEFAULT_LIMITS}. */
export const DEFAULT_SETTINGS: CborSettings = { ...DEFAULT_LIMITS, extended: false };

// Plain CBOR: no record extension or shared structures, so any CBOR peer can read it.
const fallbackEncoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const fallbackDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/**
 * Decodes with cbor-x's full decoder what the plain decoder refuses (RegExp, Error, shared references, records,
 * unknown tags as cbor-x `Tag`s…). Plain messages still take the fast path. Only for peers you trust: cbor-x builds
 * some values in more than linear time.
 *
 * @throws {ProtocolError} when cbor-x cannot decode the bytes either.
 */
export function decodeExtended(bytes: Uint8Array, limits: CborLimits = DEFAULT_LIMITS): unknown {
  try {
    return decodeCbor(bytes, limits);
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw e;
  }
  try {
    return fallbackDecoder.decode(bytes);
  } catch (e) {
    throw new ProtocolError(`Cannot decode a CBOR message of ${bytes.byteLength} bytes: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** Thrown inside this module, with `extended`, when a value needs cbor-x. */
const FALLBACK = new Error("cbor: not plain data");
const TWO_32 = 2 ** 32;
const TWO_64 = 2n ** 64n;
const REFUSED = "the receiving codec decodes plain data only " +
  "(cborCodec({ extended: true }) on both sides carries it between trusted peers)";

let buf = new Uint8Array(8192);
let view = new DataView(buf.buffer);
let pos = 0;
let encoding = false;
let maxDepth = DEFAULT_SETTINGS.maxDepth;
let maxBignum = DEFAULT_SETTINGS.maxBignumBytes;
let extended = false;

/**
 * Encodes `value` as CBOR into fresh bytes.
 *
 * @throws {TypeError} for a value the decoder with the same `settings` would refuse (see the module doc).
 */
export function encodeCbor(value: unknown, settings: CborSettings = DEFAULT_SETTINGS): Uint8Array {
  if (encoding) return reentered(value, settings);
  encoding = true;
  pos = 0;
  maxDepth = settings.maxDepth;
  maxBignum = settings.maxBignumBytes;
  extended = settings.extended;
  try {
    item(value, 0);
    return copy(buf, 0, pos);
  } catch (e) {
    if (e !== FALLBACK) throw e;
    return copyOut(fallbackEncoder.encode(value));
  } finally {
    encoding = false;
    if (buf.length > 1 << 20) shrink();
  }
}

/**
 * A message its caller frames by hand: heads written directly, plain values through the encoder, into the encoder's
 * own buffer, which the caller copies from (into a shared-memory ring: no array of the message's size). For a protocol's hot messages (RPC's CALL and RESULT, `rpc/wire.ts`): byte for byte
 * what {@linkcode encodeCbor} writes for the same value with the default settings, without the per-item dispatch of
 * the parts that are always alike. `begin()`, then the parts, then `finish()` (or `abort()` when a part threw), in one
 * synchronous run; a getter that encodes meanwhile gets a buffer of its own, as with `encodeCbor`.
 */
export const cborFrame = {
  /** Starts a frame (plain data, default limits). @throws {Error} inside another encode (a getter that frames). */
  begin(): void {
    if (encoding) throw new Error("Cannot start a CBOR frame inside another encode");
    if (buf.length > 1 << 20) shrink(); // a frame finished with `finish()` left it large
    encoding = true;
    pos = 0;
    maxDepth = DEFAULT_SETTINGS.maxDepth;
    maxBignum = DEFAULT_SETTINGS.maxBignumBytes;
    extended = false;
  },
  /** A head: major type and argument (a non-negative integer below 2^53), in the shortest form. */
  head,
  /** A value at `depth` levels down (1 for an item of the message's array). @throws {TypeError} as encodeCbor. */
  value(v: unknown, depth: number): void {
    item(v, depth);
  },
  /**
   * Ends the frame and returns its length: its bytes are the first ones of {@linkcode cborFrame.buffer}, valid until
   * the next encode: a sender copies them at once.
   */
  finish(): number {
    encoding = false;
    return pos;
  },
  /** The encoder's buffer: after `finish()`, the frame's bytes are at its start. */
  get buffer(): Uint8Array {
    return buf;
  },
  /** Ends a frame whose part threw. */
  abort(): void {
    encoding = false;
    if (buf.length > 1 << 20) shrink();
  },
};

/** An encode started from inside another (a getter that encodes): a buffer of its own, the outer state kept. */
function reentered(value: unknown, settings: CborSettings): Uint8Array {
  const saved = { buf, view, pos, maxDepth, maxBignum, extended };
  buf = new Uint8Array(256);
  view = new DataView(buf.buffer);
  encoding = false;
  try {
    return encodeCbor(value, settings);
  } finally {
    ({ buf, view, pos, maxDepth, maxBignum, extended } = saved);
    encoding = true;
  }
}

/** Refuses a value the plain decoder would refuse (or hands the whole value to cbor-x, with `extended`). */
function refuse(what: string, why = REFUSED): never {
  if (extended) throw FALLBACK;
  throw new TypeError(`Cannot encode ${what} as CBOR: ${why}`);
}

/** Arrays, maps and tags count as levels: the decoder refuses one at `maxDepth` or deeper, and so does this. */
function level(depth: number): void {
  if (depth >= maxDepth) {
    refuse(
      `a value nested deeper than ${maxDepth} levels`,
      "the receiving codec refuses it (maxDepth; a cyclic value has no end)",
    );
  }
}

/** cbor-x reuses its buffer: copy its bytes out so a later encode cannot overwrite a message being sent. */
function copyOut(bytes: Uint8Array): Uint8Array {
  return copy(
    bytes.constructor === Uint8Array ? bytes : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength),
  );
}

/** Gives back the memory of a rare huge message. */
function shrink(): void {
  buf = new Uint8Array(8192);
  view = new DataView(buf.buffer);
}

function ensure(n: number): void {
  if (pos + n <= buf.length) return;
  let size = buf.length * 2;
  while (size < pos + n) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, pos));
  buf = next;
  view = new DataView(buf.buffer);
}

/** Writes a head: major type and argument, in the shortest form. */
function head(major: number, n: number): void {
  const m = major << 5;
  if (n < 24) {
    ensure(1);
    buf[pos++] = m | n;
  } else if (n < 0x100) {
    ensure(2);
    buf[pos++] = m | 24;
    buf[pos++] = n;
  } else if (n < 0x10000) {
    ensure(3);
    buf[pos++] = m | 25;
    buf[pos++] = n >>> 8;
    buf[pos++] = n & 0xff;
  } else if (n < TWO_32) {
    ensure(5);
    buf[pos++] = m | 26;
    view.setUint32(pos, n);
    pos += 4;
  } else {
    ensure(9);
    buf[pos++] = m | 27;
    view.setUint32(pos, Math.floor(n / TWO_32));
    view.setUint32(pos + 4, n >>> 0);
    pos += 8;
  }
}

function item(v: unknown, depth: number): void {
  switch (typeof v) {
    case "number":
      return number(v);
    case "string":
      return string(v);
    case "boolean":
      ensure(1);
      buf[pos++] = v ? 0xf5 : 0xf4;
      return;
    case "undefined":
      ensure(1);
      buf[pos++] = 0xf7;
      return;
    case "object": {
      if (v === null) {
        ensure(1);
        buf[pos++] = 0xf6;
        return;
      }
      if (Array.isArray(v)) {
        level(depth);
        const n = v.length;
        head(4, n);
        for (let i = 0; i < n; i++) item(v[i], depth + 1);
        return;
      }
      if (v instanceof Uint8Array) return bytes(v);
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return special(v, depth);
      level(depth);
      const keys = Object.keys(v);
      head(5, keys.length);
      for (const key of keys) {
        string(key);
        item((v as Record<string, unknown>)[key], depth + 1);
      }
      return;
    }
    case "bigint":
      return bigint(v, depth);
    default:
      return refuse(`a ${typeof v}`);
  }
}

function bytes(v: Uint8Array): void {
  const n = v.byteLength;
  head(2, n);
  ensure(n);
  buf.set(v, pos);
  pos += n;
}

/** Writes a tag's head (the tagged item follows). */
function tag(n: number, depth: number): void {
  level(depth);
  head(6, n);
}

/** Everything that is not an array, a byte string or a plain object. */
function special(v: object, depth: number): void {
  if (v instanceof Date) {
    tag(1, depth);
    return number(dateSeconds(v.getTime()));
  }
  if (v instanceof Map) {
    tag(259, depth);
    level(depth + 1);
    head(5, v.size);
    for (const [key, value] of v) {
      item(key, depth + 2);
      item(value, depth + 2);
    }
    return;
  }
  if (v instanceof Set) {
    tag(258, depth);
    level(depth + 1);
    head(4, v.size);
    for (const x of v) item(x, depth + 2);
    return;
  }
  if (ArrayBuffer.isView(v)) return typedArray(v, depth);
  if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && v instanceof SharedArrayBuffer)) {
    return bytes(new Uint8Array(v));
  }
  if (
    v instanceof Error || v instanceof RegExp || v instanceof Tag || v instanceof Promise || v instanceof WeakMap ||
    v instanceof WeakSet
  ) {
    return refuse(`a ${v.constructor?.name ?? "value"}`);
  }
  // A class instance or another iterable: what cbor-x wrote for them, read back as plain data.
  if (extended) throw FALLBACK; // cbor-x decides, as before
  if (Symbol.iterator in v) return item(Array.from(v as Iterable<unknown>), depth);
  level(depth);
  const keys = Object.keys(v);
  head(5, keys.length);
  for (const key of keys) {
    string(key);
    item((v as Record<string, unknown>)[key], depth + 1);
  }
}

const f64 = new Float64Array(1);
const f64Bits = new BigInt64Array(f64.buffer);

/**
 * A date's seconds, as tag 1 holds them, chosen so that `Math.round(seconds * 1000)` (how cbor-x and this decoder
 * read them) gives back the exact milliseconds: `ms / 1000` alone misses for about 0.3 % of far dates.
 */
function dateSeconds(ms: number): number {
  let s = ms / 1000;
  for (let i = 0; i < 8 && s === s; i++) {
    const back = Math.round(s * 1000);
    if (back === ms) return s;
    f64[0] = s;
    f64Bits[0]! += (back < ms) === (s > 0) ? 1n : -1n; // the next double up or down
    s = f64[0]!;
  }
  return ms / 1000;
}

/** A BigInt: a 64-bit integer head within 64 bits (cbor-x reads those as BigInt), else a bignum (tag 2 or 3). */
function bigint(v: bigint, depth: number): void {
  const negative = v < 0n;
  const magnitude = negative ? -1n - v : v;
  if (magnitude < TWO_64 && v !== -TWO_64) { // cbor-x writes -2^64 as a bignum: so does this
    ensure(9);
    buf[pos++] = negative ? 0x3b : 0x1b;
    view.setBigUint64(pos, magnitude);
    pos += 8;
    return;
  }
  let hex = magnitude.toString(16); // linear: a power-of-two radix
  if (hex.length & 1) hex = "0" + hex;
  const n = hex.length / 2;
  if (n > maxBignum) {
    refuse(`a BigInt of ${n} bytes`, `the receiving codec refuses more than ${maxBignum} (maxBignumBytes)`);
  }
  tag(negative ? 3 : 2, depth);
  head(2, n);
  ensure(n);
  for (let i = 0; i < hex.length; i += 2) buf[pos++] = (nibble(hex.charCodeAt(i)) << 4) | nibble(hex.charCodeAt(i + 1));
}

function nibble(c: number): number {
  return c <= 0x39 ? c - 0x30 : c - 0x57; // "0"-"9", "a"-"f"
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
/** The typed arrays cbor-x writes, with their little-endian tag (RFC 8746); big-endian is 4 less. */
const TYPED_TAGS: [abstract new (...args: never[]) => ArrayBufferView, number][] = [
  [Uint8ClampedArray, 68],
  [Uint16Array, 69],
  [Uint32Array, 70],
  [BigUint64Array, 71],
  [Int8Array, 72],
  [Int16Array, 77],
  [Int32Array, 78],
  [BigInt64Array, 79],
  [Float32Array, 85],
  [Float64Array, 86],
];

/** A typed array other than Uint8Array: its tag, then its bytes as they are in memory. A DataView: its bytes. */
function typedArray(v: ArrayBufferView, depth: number): void {
  const raw = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof DataView) return bytes(raw);
  for (const [Class, le] of TYPED_TAGS) {
    if (v instanceof Class) {
      tag(LITTLE_ENDIAN || le === 68 || le === 72 ? le : le - 4, depth);
      return bytes(raw);
    }
  }
  refuse(`a ${v.constructor?.name ?? "typed array"} (no CBOR tag that cbor-x reads)`);
}

function number(v: number): void {
  // Integers in 32 bits as integers; larger ones as floats, as cbor-x writes them (it reads a 64-bit integer as a
  // BigInt, so a number written that way would come back as another type).
  if (Number.isInteger(v) && v < TWO_32 && v >= -TWO_32 && !(v === 0 && 1 / v < 0)) {
    if (v >= 0) head(0, v);
    else head(1, -1 - v);
    return;
  }
  if (Math.fround(v) === v) {
    ensure(5);
    buf[pos++] = 0xfa;
    view.setFloat32(pos, v);
    pos += 4;
  } else {
    ensure(9);
    buf[pos++] = 0xfb;
    view.setFloat64(pos, v);
    pos += 8;
  }
}

const utf8 = new TextEncoder();

function string(s: string): void {
  const len = s.length;
  if (len > 64) {
    // Long: encodeInto after room for the longest head, then move the bytes up if the head is shorter.
    const max = len * 3;
    const room = max < 0x100 ? 2 : max < 0x10000 ? 3 : 5;
    ensure(room + max);
    const written = utf8.encodeInto(s, buf.subarray(pos + room)).written;
    const start = pos;
    head(3, written);
    if (pos !== start + room) buf.copyWithin(pos, start + room, start + room + written);
    pos += written;
    return;
  }
  // Short ASCII (the usual key or method name): the head, then the bytes.
  let ascii = true;
  for (let i = 0; i < len; i++) {
    if (s.charCodeAt(i) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    ensure(2 + len);
    if (len < 24) buf[pos++] = 0x60 | len;
    else {
      buf[pos++] = 0x78;
      buf[pos++] = len;
    }
    for (let i = 0; i < len; i++) buf[pos++] = s.charCodeAt(i);
    return;
  }
  // Short, not ASCII: one pass writing UTF-8 after a one- or two-byte head (at most 64 * 3 = 192 bytes).
  ensure(2 + len * 3);
  const start = pos;
  let at = start + 2;
  for (let i = 0; i < len; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      buf[at++] = c;
    } else if (c < 0x800) {
      buf[at++] = 0xc0 | (c >> 6);
      buf[at++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = s.charCodeAt(i + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          buf[at++] = 0xf0 | (c >> 18);
          buf[at++] = 0x80 | ((c >> 12) & 0x3f);
          buf[at++] = 0x80 | ((c >> 6) & 0x3f);
          buf[at++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd; // a lone surrogate, as TextEncoder writes it
      }
      buf[at++] = 0xe0 | (c >> 12);
      buf[at++] = 0x80 | ((c >> 6) & 0x3f);
      buf[at++] = 0x80 | (c & 0x3f);
    }
  }
  const n = at - start - 2;
  if (n < 24) {
    buf[start] = 0x60 | n;
    for (let i = start + 2; i < at; i++) buf[i - 1] = buf[i]!;
    pos = at - 1;
  } else {
    buf[start] = 0x78;
    buf[start + 1] = n;
    pos = at;
  }
}
