/**
 * The CBOR decoder behind the `cbor` codec: plain data only, every size bounded, linear time in the input.
 *
 * It reads what ipckit's encoder writes (`transports/cbor.ts`) and the same values from any standard peer:
 * integers (64-bit ones as BigInt, as cbor-x reads them), floats of 16, 32 and 64 bits, strings, byte strings, arrays
 * and maps of definite or indefinite length, `true`/`false`/`null`/`undefined`, and these tags: 0 and 1 (Date), 2 and
 * 3 (bignum, at most `maxBignumBytes`), 258 (Set), 259 (Map), 64 to 86 (typed arrays, RFC 8746; not the float16 and
 * float128 ones) and 55799 (self-described CBOR, no meaning). Anything else is refused with a `ProtocolError` that
 * names it: other tags (27 RegExp/Error/class instance, 28/29 shared and cyclic references, 35 RegExp, cbor-x records
 * and packed values…), simple values, indefinite-length strings, and malformed input.
 *
 * The limits, and why each keeps the work linear in the input's length:
 * - nesting: arrays, maps and tags at most `maxDepth` deep (recursion, and a hostile `[[[[…]]]]`);
 * - counts: an array or map may not declare more items than bytes are left (each item takes a byte at least), and
 *   the declared counts of the whole message together may not exceed its length, so nested headers cannot make
 *   it reserve more than it holds;
 * - strings and byte strings may not be longer than what is left;
 * - bignums are built from hexadecimal in one step (linear in every runtime), and refused past `maxBignumBytes`.
 *
 * A map with string keys becomes a plain object (a `__proto__` key an own property, never a prototype); integer,
 * boolean, null and undefined keys become their string, as cbor-x makes them; other keys only inside a Map (259).
 * Byte strings, and typed arrays whose bytes are aligned, are views of the input, as with cbor-x.
 *
 * Why one file of ~440 lines: one decoder, one pass over the input, with the limit that keeps each case linear beside
 * it.
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { copy } from "../runtimes/bytes.ts";

/** The sizes the decoder accepts. */
export interface CborLimits {
  /** How deep arrays, maps and tags may nest. */
  readonly maxDepth: number;
  /** The largest bignum (tag 2 or 3), in bytes. */
  readonly maxBignumBytes: number;
}

/** The defaults: 500 levels (cbor-x's encoder and JSON peers stay well within), bignums up to 4 KiB (32 768 bits). */
export const DEFAULT_LIMITS: CborLimits = { maxDepth: 500, maxBignumBytes: 4096 };

const EMPTY = new Uint8Array(0);
let data: Uint8Array = EMPTY;
let at = 0;
/** The message is `data` from `base` to `end` (all of it, but for `decodeCborRest` over a shared-memory ring). */
let base = 0;
let end = 0;
/** Byte strings and typed arrays as copies, not views of `data` (memory the caller takes back after the decode). */
let copying = false;
let maxDepth = DEFAULT_LIMITS.maxDepth;
let maxBignum = DEFAULT_LIMITS.maxBignumBytes;
/** Items the arrays and maps read so far may still declare: never more than the message's length in all. */
let budget = 0;
const fromUtf8 = new TextDecoder();
/** Floats are read through this scratch space: a DataView per message would cost more than the whole decode. */
const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);
const TWO_32 = 2 ** 32;
const TWO_64 = 2n ** 64n;
const REFUSED = "refused: plain data only by default (cborCodec({ extended: true }) decodes it from a trusted peer)";

/**
 * Decodes the one CBOR item that fills `bytes` exactly.
 *
 * @throws {ProtocolError} when the bytes are not one valid CBOR item of plain data within `limits`; the message says
 * what was refused and where.
 */
export function decodeCbor(bytes: Uint8Array, limits: CborLimits = DEFAULT_LIMITS): unknown {
  data = bytes;
  at = 0;
  base = 0;
  end = bytes.length;
  copying = false;
  maxDepth = limits.maxDepth;
  maxBignum = limits.maxBignumBytes;
  budget = bytes.length;
  try {
    const v = read(0);
    if (at !== end) fail(`the item ends ${end - at} bytes before the message does`, at);
    return v;
  } catch (e) {
    // The stack ran out before maxDepth (a caller already deep in it), or a runtime size limit: still the peer's.
    if (e instanceof RangeError) fail(`it is beyond what this runtime can build (${e.message})`, at);
    throw e;
  } finally {
    data = EMPTY; // do not keep the message alive
  }
}

/**
 * Decodes the items from `offset` to the message's end into `out`, from index `from` to its end: the rest of a
 * message whose first bytes the caller read by hand (RPC's CALL and RESULT, `rpc/wire_cbor.ts`). The message is
 * `bytes` from `start` to `stop` (all of it by default); `copy`: byte strings and typed arrays come out as copies,
 * not views of `bytes` (for a message read where it lies in a shared-memory ring, whose space goes back to the
 * producer). The items are at `depth` in the message, `counted` is the number of items the part before declared
 * (they count toward the budget, as in decodeCbor): the same bytes pass or fail here as there.
 *
 * @throws {ProtocolError} as decodeCbor.
 */
export function decodeCborRest(
  bytes: Uint8Array,
  offset: number,
  depth: number,
  counted: number,
  out: unknown[],
  from: number,
  limits: CborLimits = DEFAULT_LIMITS,
  start = 0,
  stop: number = bytes.length,
  copy = false,
): void {
  data = bytes;
  at = offset;
  base = start;
  end = stop;
  copying = copy;
  maxDepth = limits.maxDepth;
  maxBignum = limits.maxBignumBytes;
  budget = stop - start - counted;
  try {
    for (let i = from; i < out.length; i++) out[i] = read(depth);
    if (at !== end) fail(`the item ends ${end - at} bytes before the message does`, at);
  } catch (e) {
    if (e instanceof RangeError) fail(`it is beyond what this runtime can build (${e.message})`, at);
    throw e;
  } finally {
    data = EMPTY;
  }
}

function fail(what: string, offset: number): never {
  throw new ProtocolError(`Cannot decode a CBOR message of ${end - base} bytes: at byte ${offset - base}, ${what}`);
}

function truncated(): never {
  fail("it ends inside an item", end);
}

function tooDeep(offset: number): never {
  fail(`it nests deeper than ${maxDepth} levels`, offset);
}

/** Reads `n` (4 or 8) bytes at `at` into the scratch space. */
function toScratch(n: number): void {
  if (at + n > end) truncated();
  for (let i = 0; i < n; i++) scratch[i] = data[at + i]!;
  at += n;
}

/** Reads a head's argument for additional information `ai` (not 27 in an integer: see `uint64`). */
function argument(ai: number): number {
  if (ai < 24) return ai;
  let n: number;
  switch (ai) {
    case 24:
      if (at + 1 > end) truncated();
      return data[at++]!;
    case 25:
      if (at + 2 > end) truncated();
      n = (data[at]! << 8) | data[at + 1]!;
      at += 2;
      return n;
    case 26:
      if (at + 4 > end) truncated();
      n = uint32(at);
      at += 4;
      return n;
    case 27:
      // A 64-bit length or tag number: exact up to 2^53, and far past any message's length beyond.
      if (at + 8 > end) truncated();
      n = uint32(at) * TWO_32 + uint32(at + 4);
      at += 8;
      return n;
    case 31:
      return fail("an indefinite length where none is allowed (integers, tags, strings) is " + REFUSED, at - 1);
    default:
      return fail(`additional information ${ai} is reserved`, at - 1);
  }
}

function uint32(i: number): number {
  return ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
}

/** A 64-bit integer argument, as a BigInt (cbor-x reads these as BigInt whatever their value). */
function uint64(): bigint {
  toScratch(8);
  return scratchView.getBigUint64(0);
}

function read(depth: number): unknown {
  if (at >= end) truncated();
  const ib = data[at++]!;
  const major = ib >> 5;
  const ai = ib & 31;
  switch (major) {
    case 0:
      return ai === 27 ? uint64() : argument(ai);
    case 1:
      return ai === 27 ? -1n - uint64() : -1 - argument(ai);
    case 2: {
      const n = argument(ai);
      if (n > end - at) truncated();
      // A copy with set(), not slice(): slice() of external memory (a mapped segment) is slow on Node.
      const out = copying ? copy(data, at, at + n) : data.subarray(at, at + n);
      at += n;
      return out;
    }
    case 3: {
      const n = argument(ai);
      if (n > end - at) truncated();
      return text(n);
    }
    case 4: {
      if (depth >= maxDepth) tooDeep(at - 1);
      if (ai === 31) return indefiniteArray(depth);
      const n = argument(ai);
      // Every item takes a byte at least: a count past what is left (or past the budget) is a lie, refused before
      // anything is allocated for it.
      if (n > end - at || (budget -= n) < 0) fail(`an array of ${n} items cannot fit`, at);
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = read(depth + 1);
      return out;
    }
    case 5: {
      if (depth >= maxDepth) tooDeep(at - 1);
      if (ai === 31) return indefiniteObject(depth);
      const n = argument(ai);
      if (n * 2 > end - at || (budget -= n * 2) < 0) fail(`a map of ${n} entries cannot fit`, at);
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        let key = read(depth + 1);
        if (typeof key !== "string") key = objectKey(key);
        const value = read(depth + 1);
        if (key === "__proto__") {
          Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
        } else out[key as string] = value;
      }
      return out;
    }
    case 6: {
      const start = at - 1;
      if (depth >= maxDepth) tooDeep(start);
      return tagged(argument(ai), depth, start);
    }
    default:
      switch (ai) {
        case 20:
          return false;
        case 21:
          return true;
        case 22:
          return null;
        case 23:
          return undefined;
        case 25: {
          if (at + 2 > end) truncated();
          const h = (data[at]! << 8) | data[at + 1]!;
          at += 2;
          return half(h);
        }
        case 26:
          toScratch(4);
          return scratchView.getFloat32(0);
        case 27:
          toScratch(8);
          return scratchView.getFloat64(0);
        case 31:
          return fail("a break (0xff) outside an indefinite-length item", at - 1);
      }
      if (ai === 24 && at >= end) truncated();
      return fail(`the simple value ${ai === 24 ? data[at] : ai} is ` + REFUSED, at - 1);
  }
}

/** A map key of a type other than string, as a plain object's key (cbor-x's rule), or a refusal. */
function objectKey(key: unknown): string {
  switch (typeof key) {
    case "bigint":
      if (key < -TWO_64 || key >= TWO_64) break; // a bignum's decimal string costs more than linear time
      return String(key);
    case "number":
    case "boolean":
    case "undefined":
      return String(key);
    case "object":
      if (key === null) return "null";
  }
  return fail(
    "a map key that is not a string, number, boolean or null (arrays, maps, byte strings, bignums and tagged values " +
      "are keys only in a Map, tag 259)",
    at,
  );
}

/** Runs `each` until the break byte that ends an indefinite-length item. */
function untilBreak(each: () => void): void {
  for (;;) {
    if (at >= end) truncated();
    if (data[at] === 0xff) {
      at++;
      return;
    }
    each();
  }
}

function indefiniteArray(depth: number): unknown[] {
  const out: unknown[] = [];
  untilBreak(() => out.push(read(depth + 1)));
  return out;
}

function indefiniteObject(depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  untilBreak(() => {
    let key = read(depth + 1);
    if (typeof key !== "string") key = objectKey(key);
    const value = read(depth + 1);
    Object.defineProperty(out, key as string, { value, enumerable: true, writable: true, configurable: true });
  });
  return out;
}

/** The major type of the next item, or -1 at the end of the message. */
function nextMajor(): number {
  return at < end ? data[at]! >> 5 : -1;
}

/** Reads tag `tag`'s content (the tag's head began at `offset`). */
function tagged(tag: number, depth: number, offset: number): unknown {
  switch (tag) {
    case 0: {
      const s = read(depth + 1);
      if (typeof s !== "string" || s.length > 64) fail("tag 0 (a date) must hold a date-time string", offset);
      return new Date(s);
    }
    case 1: {
      const seconds = read(depth + 1);
      if (typeof seconds !== "number") fail("tag 1 (a date) must hold a number of seconds", offset);
      return new Date(Math.round(seconds * 1000)); // as cbor-x reads it
    }
    case 2:
      return bignum(offset);
    case 3:
      return -1n - bignum(offset);
    case 258:
      if (nextMajor() !== 4) fail("tag 258 (a Set) must hold an array", offset);
      return new Set(read(depth + 1) as unknown[]);
    case 259:
      if (nextMajor() !== 5) fail("tag 259 (a Map) must hold a map", offset);
      return map(depth + 1);
    case 55799:
      return read(depth + 1);
  }
  if (tag >= 64 && tag <= 87) return typedArray(tag, offset);
  return fail(`tag ${tag} (${tagName(tag)}) is ` + REFUSED, offset);
}

/** What a refused tag is, for the error message. */
function tagName(tag: number): string {
  if (tag === 27) return "an object built by a constructor: RegExp, Error or a class instance";
  if (tag === 28 || tag === 29) return "a shared or cyclic reference";
  if (tag === 35) return "a regular expression";
  if (tag === 105 || (tag >= 0xdff9 && tag <= 0xffff)) return "a cbor-x record or structure";
  if (tag === 6 || tag === 51 || (tag >= 216 && tag <= 255)) return "a cbor-x packed value";
  if (tag === 4 || tag === 5) return "a decimal fraction or bigfloat";
  if (tag === 24) return "embedded CBOR";
  if (tag === 25 || tag === 256) return "a string reference";
  return "unknown";
}

const HEX_DIGITS = new TextEncoder().encode("0123456789abcdef");

/** The unsigned bignum in the byte string that follows a tag 2 or 3: its hexadecimal, then one BigInt (linear). */
function bignum(offset: number): bigint {
  const ib = at < end ? data[at]! : -1;
  if (ib >> 5 !== 2 || (ib & 31) === 31) fail("a bignum (tag 2 or 3) must hold a byte string", offset);
  at++;
  const n = argument(ib & 31);
  if (n > maxBignum) fail(`a bignum of ${n} bytes is longer than the limit of ${maxBignum} (maxBignumBytes)`, offset);
  if (n > end - at) truncated();
  const digits = new Uint8Array(3 + 2 * n);
  digits.set([0x30, 0x78, 0x30]); // "0x0"
  for (let i = 0, j = 3; i < n; i++, j += 2) {
    const b = data[at + i]!;
    digits[j] = HEX_DIGITS[b >> 4]!;
    digits[j + 1] = HEX_DIGITS[b & 15]!;
  }
  at += n;
  return BigInt(fromUtf8.decode(digits));
}

/** A tag 259 map as a Map, keys of any type. */
function map(depth: number): Map<unknown, unknown> {
  const ai = data[at++]! & 31;
  const out = new Map<unknown, unknown>();
  if (depth >= maxDepth) tooDeep(at - 1);
  if (ai === 31) {
    untilBreak(() => out.set(read(depth + 1), read(depth + 1)));
    return out;
  }
  const n = argument(ai);
  if (n * 2 > end - at || (budget -= n * 2) < 0) fail(`a map of ${n} entries cannot fit`, at);
  for (let i = 0; i < n; i++) out.set(read(depth + 1), read(depth + 1));
  return out;
}

type TypedArrayClass = new (buffer: ArrayBufferLike, byteOffset?: number, length?: number) => ArrayBufferView;
/** The typed arrays of RFC 8746 that cbor-x writes, by tag minus 64: class, element size, little-endian. */
const TYPED: ([TypedArrayClass, number, boolean] | undefined)[] = [];
for (
  const [tag, Class] of [
    [64, Uint8Array],
    [68, Uint8ClampedArray],
    [69, Uint16Array],
    [70, Uint32Array],
    [71, BigUint64Array],
    [72, Int8Array],
    [77, Int16Array],
    [78, Int32Array],
    [79, BigInt64Array],
    [85, Float32Array],
    [86, Float64Array],
  ] as const
) {
  const size = Class.BYTES_PER_ELEMENT;
  TYPED[tag - 64] = [Class as TypedArrayClass, size, true];
  if (size > 1) TYPED[tag - 68] = [Class as TypedArrayClass, size, false]; // the big-endian tag
}
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A typed array (tags 64 to 87) from the byte string that follows: a view when aligned, else a copy. */
function typedArray(tag: number, offset: number): ArrayBufferView {
  const kind = TYPED[tag - 64];
  if (kind === undefined) return fail(`tag ${tag} (a float16, float128 or reserved typed array) is ` + REFUSED, offset);
  const [Class, size, little] = kind;
  const ib = at < end ? data[at]! : -1;
  if (ib >> 5 !== 2 || (ib & 31) === 31) fail(`tag ${tag} (a typed array) must hold a byte string`, offset);
  at++;
  const n = argument(ib & 31);
  if (n > end - at) truncated();
  if (n % size !== 0) fail(`tag ${tag} holds ${n} bytes, not a whole number of ${size}-byte elements`, offset);
  const start = data.byteOffset + at;
  at += n;
  if (size === 1 || little === LITTLE_ENDIAN) {
    if (start % size === 0 && !copying) return new Class(data.buffer, start, n / size);
    return new Class(data.slice(at - n, at).buffer, 0, n / size);
  }
  // The other byte order: swap each element's bytes into a fresh array.
  const bytes = data.slice(at - n, at);
  for (let i = 0; i < n; i += size) {
    for (let j = i, k = i + size - 1; j < k; j++, k--) {
      const b = bytes[j]!;
      bytes[j] = bytes[k]!;
      bytes[k] = b;
    }
  }
  return new Class(bytes.buffer, 0, n / size);
}

/**
 * Short ASCII strings decoded lately (method names, map keys), by a hash of their bytes: the same bytes give back
 * the same string, with no allocation, and a string whose hash V8 already knows (a Map lookup by it is faster).
 * A slot holds one string; a collision replaces it.
 */
const recent: (string | undefined)[] = new Array(1024).fill(undefined);

/** A short ASCII string at `at`, from `recent` if it is there (n <= 16); undefined when a byte is not ASCII. */
function shortAscii(n: number): string | undefined {
  let h = n;
  for (let i = at; i < at + n; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  const slot = (h ^ (h >>> 15)) & 1023;
  const hit = recent[slot];
  if (hit !== undefined && hit.length === n) {
    let i = 0;
    while (i < n && hit.charCodeAt(i) === data[at + i]) i++;
    if (i === n) {
      at += n;
      return hit;
    }
  }
  let s = "";
  for (let i = at; i < at + n; i++) {
    const c = data[i]!;
    if (c >= 0x80) return undefined;
    s += String.fromCharCode(c);
  }
  at += n;
  return (recent[slot] = s);
}

/** A UTF-8 string of `n` bytes at `at`: ASCII by hand, the rest through TextDecoder. */
function text(n: number): string {
  if (n <= 16) {
    const s = shortAscii(n);
    if (s !== undefined) return s;
  }
  const stop = at + n;
  if (n <= 32) {
    let s = "";
    let i = at;
    for (; i < stop; i++) {
      const c = data[i]!;
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === stop) {
      at = stop;
      return s;
    }
  }
  const s = fromUtf8.decode(data.subarray(at, stop));
  at = stop;
  return s;
}

/** An IEEE 754 half-precision float. */
function half(h: number): number {
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  const sign = h & 0x8000 ? -1 : 1;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}
