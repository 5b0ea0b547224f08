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
 * Why one file of ~540 lines: one encoder, one pass over the value; its cases are one switch.
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
let encoding = false;
let maxDepth = DEFAULT_SETTINGS.maxDepth;
let maxBignum = DEFAULT_SETTINGS.maxBignumBytes;
let extended = false;

// How the encoder runs: every writer takes the position to write at and returns the position after what it wrote,
// and reads `buf` at the moment it writes (a part it called may have grown it). A position kept in a local costs a
// fifth of one kept in module state on V8 (a 16-byte call: 128 ns against 51 on Node here).

/**
 * Encodes `value` as CBOR into fresh bytes.
 *
 * @throws {TypeError} for a value the decoder with the same `settings` would refuse (see the module doc).
 */
export function encodeCbor(value: unknown, settings: CborSettings = DEFAULT_SETTINGS): Uint8Array {
  if (encoding) return reentered(value, settings);
  encoding = true;
  maxDepth = settings.maxDepth;
  maxBignum = settings.maxBignumBytes;
  extended = settings.extended;
  try {
    const n = item(0, value, 0);
    return copy(buf, 0, n);
  } catch (e) {
    if (e !== FALLBACK) throw e;
    return copyOut(fallbackEncoder.encode(value));
  } finally {
    encoding = false;
    if (buf.length > 1 << 20) shrink();
  }
}

// A message its caller frames by hand: heads written directly, plain values through the encoder, into the encoder's
// own buffer, which the caller copies from (into a shared-memory ring: no array of the message's size). For a
// protocol's hot messages (RPC's CALL and RESULT, `rpc/wire_cbor.ts`): byte for byte what `encodeCbor` writes for the
// same value with the default settings, without the per-item dispatch of the parts that are always alike.
// `beginFrame()`, then the parts (each takes the position and returns the next), then `finishFrame(position)` (or
// `abortFrame()` when a part threw), in one synchronous run; a getter that encodes meanwhile gets a buffer of its own,
// as with `encodeCbor`. Plain functions, not methods of one object: V8 inlines them (through an object, seven heads
// cost 69 ns against 25 on Node here).

/**
 * Starts a frame (plain data, default limits); returns its first position (0).
 *
 * @throws {Error} inside another encode (a getter that frames).
 */
export function beginFrame(): number {
  if (encoding) throw new Error("Cannot start a CBOR frame inside another encode");
  if (buf.length > 1 << 20) shrink(); // a frame finished with `finishFrame()` left it large
  encoding = true;
  maxDepth = DEFAULT_SETTINGS.maxDepth;
  maxBignum = DEFAULT_SETTINGS.maxBignumBytes;
  extended = false;
  return 0;
}

/**
 * A value at `p`, `depth` levels down (1 for an item of the message's array); returns the next position.
 *
 * @throws {TypeError} as encodeCbor.
 */
export function frameValue(p: number, v: unknown, depth: number): number {
  return item(p, v, depth);
}

/**
 * Ends the frame that ends at `p` and returns its length: its bytes are the first ones of {@linkcode frameBuffer},
 * valid until the next encode: a sender copies them at once.
 */
export function finishFrame(p: number): number {
  encoding = false;
  return p;
}

/** Ends a frame whose part threw. */
export function abortFrame(): void {
  encoding = false;
  if (buf.length > 1 << 20) shrink();
}

/** The encoder's buffer: after `finishFrame()`, the frame's bytes are at its start. */
export function frameBuffer(): Uint8Array {
  return buf;
}

/** An encode started from inside another (a getter that encodes): a buffer of its own, the outer state kept. */
function reentered(value: unknown, settings: CborSettings): Uint8Array {
  const saved = { buf, view, maxDepth, maxBignum, extended };
  buf = new Uint8Array(256);
  view = new DataView(buf.buffer);
  encoding = false;
  try {
    return encodeCbor(value, settings);
  } finally {
    ({ buf, view, maxDepth, maxBignum, extended } = saved);
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

/** The buffer, with room for `n` bytes at `p` (grown, its first `p` bytes kept, when it has not). */
function room(p: number, n: number): Uint8Array {
  if (p + n <= buf.length) return buf;
  let size = buf.length * 2;
  while (size < p + n) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, p));
  buf = next;
  view = new DataView(buf.buffer);
  return next;
}

/** Writes a head at `p`: major type and argument (below 2^53), in the shortest form; returns the next position. */
export function head(p: number, major: number, n: number): number {
  const b = p + 9 <= buf.length ? buf : room(p, 9);
  const m = major << 5;
  if (n < 24) {
    b[p] = m | n;
    return p + 1;
  }
  if (n < 0x100) {
    b[p] = m | 24;
    b[p + 1] = n;
    return p + 2;
  }
  if (n < 0x10000) {
    b[p] = m | 25;
    b[p + 1] = n >>> 8;
    b[p + 2] = n & 0xff;
    return p + 3;
  }
  if (n < TWO_32) {
    b[p] = m | 26;
    b[p + 1] = n >>> 24;
    b[p + 2] = (n >>> 16) & 0xff;
    b[p + 3] = (n >>> 8) & 0xff;
    b[p + 4] = n & 0xff;
    return p + 5;
  }
  b[p] = m | 27;
  view.setUint32(p + 1, Math.floor(n / TWO_32));
  view.setUint32(p + 5, n >>> 0);
  return p + 9;
}

/** One byte at `p` (a simple value). */
function byte(p: number, x: number): number {
  const b = p < buf.length ? buf : room(p, 1);
  b[p] = x;
  return p + 1;
}

function item(p: number, v: unknown, depth: number): number {
  switch (typeof v) {
    case "number":
      return number(p, v);
    case "string":
      return string(p, v);
    case "boolean":
      return byte(p, v ? 0xf5 : 0xf4);
    case "undefined":
      return byte(p, 0xf7);
    case "object": {
      if (v === null) return byte(p, 0xf6);
      if (Array.isArray(v)) {
        level(depth);
        const n = v.length;
        p = head(p, 4, n);
        for (let i = 0; i < n; i++) p = item(p, v[i], depth + 1);
        return p;
      }
      if (v instanceof Uint8Array) return bytes(p, v);
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) return special(p, v, depth);
      return map(p, v, depth);
    }
    case "bigint":
      return bigint(p, v, depth);
    default:
      return refuse(`a ${typeof v}`);
  }
}

/** An object's own enumerable string keys and their values, as a map. */
function map(p: number, v: object, depth: number): number {
  level(depth);
  const keys = Object.keys(v);
  p = head(p, 5, keys.length);
  for (const key of keys) {
    p = string(p, key);
    p = item(p, (v as Record<string, unknown>)[key], depth + 1);
  }
  return p;
}

function bytes(p: number, v: Uint8Array): number {
  const n = v.byteLength;
  p = head(p, 2, n);
  const b = room(p, n);
  b.set(v, p);
  return p + n;
}

/** Writes a tag's head (the tagged item follows). */
function tag(p: number, n: number, depth: number): number {
  level(depth);
  return head(p, 6, n);
}

/** Everything that is not an array, a byte string or a plain object. */
function special(p: number, v: object, depth: number): number {
  if (v instanceof Date) {
    p = tag(p, 1, depth);
    return number(p, dateSeconds(v.getTime()));
  }
  if (v instanceof Map) {
    p = tag(p, 259, depth);
    level(depth + 1);
    p = head(p, 5, v.size);
    for (const [key, value] of v) {
      p = item(p, key, depth + 2);
      p = item(p, value, depth + 2);
    }
    return p;
  }
  if (v instanceof Set) {
    p = tag(p, 258, depth);
    level(depth + 1);
    p = head(p, 4, v.size);
    for (const x of v) p = item(p, x, depth + 2);
    return p;
  }
  if (ArrayBuffer.isView(v)) return typedArray(p, v, depth);
  if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && v instanceof SharedArrayBuffer)) {
    return bytes(p, new Uint8Array(v));
  }
  if (
    v instanceof Error || v instanceof RegExp || v instanceof Tag || v instanceof Promise || v instanceof WeakMap ||
    v instanceof WeakSet
  ) {
    return refuse(`a ${v.constructor?.name ?? "value"}`);
  }
  // A class instance or another iterable: what cbor-x wrote for them, read back as plain data.
  if (extended) throw FALLBACK; // cbor-x decides, as before
  if (Symbol.iterator in v) return item(p, Array.from(v as Iterable<unknown>), depth);
  return map(p, v, depth);
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
function bigint(p: number, v: bigint, depth: number): number {
  const negative = v < 0n;
  const magnitude = negative ? -1n - v : v;
  if (magnitude < TWO_64 && v !== -TWO_64) { // cbor-x writes -2^64 as a bignum: so does this
    const b = room(p, 9);
    b[p] = negative ? 0x3b : 0x1b;
    view.setBigUint64(p + 1, magnitude);
    return p + 9;
  }
  let hex = magnitude.toString(16); // linear: a power-of-two radix
  if (hex.length & 1) hex = "0" + hex;
  const n = hex.length / 2;
  if (n > maxBignum) {
    refuse(`a BigInt of ${n} bytes`, `the receiving codec refuses more than ${maxBignum} (maxBignumBytes)`);
  }
  p = tag(p, negative ? 3 : 2, depth);
  p = head(p, 2, n);
  const b = room(p, n);
  for (let i = 0; i < hex.length; i += 2) b[p++] = (nibble(hex.charCodeAt(i)) << 4) | nibble(hex.charCodeAt(i + 1));
  return p;
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
function typedArray(p: number, v: ArrayBufferView, depth: number): number {
  const raw = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof DataView) return bytes(p, raw);
  for (const [Class, le] of TYPED_TAGS) {
    if (v instanceof Class) {
      p = tag(p, LITTLE_ENDIAN || le === 68 || le === 72 ? le : le - 4, depth);
      return bytes(p, raw);
    }
  }
  return refuse(`a ${v.constructor?.name ?? "typed array"} (no CBOR tag that cbor-x reads)`);
}

function number(p: number, v: number): number {
  // Integers in 32 bits as integers; larger ones as floats, as cbor-x writes them (it reads a 64-bit integer as a
  // BigInt, so a number written that way would come back as another type).
  if (v >= 0) {
    if (v < TWO_32 && Number.isInteger(v) && (v !== 0 || 1 / v > 0)) return head(p, 0, v);
  } else if (v >= -TWO_32 && Number.isInteger(v)) return head(p, 1, -1 - v);
  const b = p + 9 <= buf.length ? buf : room(p, 9);
  if (Math.fround(v) === v) {
    b[p] = 0xfa;
    view.setFloat32(p + 1, v);
    return p + 5;
  }
  b[p] = 0xfb;
  view.setFloat64(p + 1, v);
  return p + 9;
}

const utf8 = new TextEncoder();

function string(p: number, s: string): number {
  const len = s.length;
  if (len > 64) {
    // Long: encodeInto after room for the longest head, then move the bytes up if the head is shorter.
    const max = len * 3;
    const headRoom = max < 0x100 ? 2 : max < 0x10000 ? 3 : 5;
    const b = room(p, headRoom + max);
    const written = utf8.encodeInto(s, b.subarray(p + headRoom)).written;
    const start = p;
    p = head(p, 3, written);
    if (p !== start + headRoom) b.copyWithin(p, start + headRoom, start + headRoom + written);
    return p + written;
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
    const b = room(p, 2 + len);
    if (len < 24) b[p++] = 0x60 | len;
    else {
      b[p++] = 0x78;
      b[p++] = len;
    }
    for (let i = 0; i < len; i++) b[p++] = s.charCodeAt(i);
    return p;
  }
  // Short, not ASCII: one pass writing UTF-8 after a one- or two-byte head (at most 64 * 3 = 192 bytes).
  const b = room(p, 2 + len * 3);
  const start = p;
  let at = start + 2;
  for (let i = 0; i < len; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      b[at++] = c;
    } else if (c < 0x800) {
      b[at++] = 0xc0 | (c >> 6);
      b[at++] = 0x80 | (c & 0x3f);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const next = s.charCodeAt(i + 1);
        if (c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
          c = 0x10000 + ((c - 0xd800) << 10) + (next - 0xdc00);
          i++;
          b[at++] = 0xf0 | (c >> 18);
          b[at++] = 0x80 | ((c >> 12) & 0x3f);
          b[at++] = 0x80 | ((c >> 6) & 0x3f);
          b[at++] = 0x80 | (c & 0x3f);
          continue;
        }
        c = 0xfffd; // a lone surrogate, as TextEncoder writes it
      }
      b[at++] = 0xe0 | (c >> 12);
      b[at++] = 0x80 | ((c >> 6) & 0x3f);
      b[at++] = 0x80 | (c & 0x3f);
    }
  }
  const n = at - start - 2;
  if (n < 24) {
    b[start] = 0x60 | n;
    for (let i = start + 2; i < at; i++) b[i - 1] = b[i]!;
    return at - 1;
  }
  b[start] = 0x78;
  b[start + 1] = n;
  return at;
}
