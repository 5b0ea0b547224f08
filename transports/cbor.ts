/**
 * A small, fast CBOR (RFC 8949) encoder and decoder for plain data, the common case of every message: numbers,
 * strings, booleans, null, undefined, Uint8Array (as a byte string), arrays and plain objects (as maps with
 * string keys). Anything else (Map, Set, Date, BigInt, other typed arrays, class instances, tags, indefinite
 * lengths, non-string map keys) is handed whole to cbor-x, so the two together read and write what cbor-x alone
 * does. For a 16-byte message this path costs about a fifth of cbor-x's, which is most of an RPC call over
 * shared memory.
 *
 * Output is standard CBOR with the shortest heads, read the way cbor-x reads it: integers of 32 bits are integers,
 * other numbers float32 when that is exact and float64 otherwise (so -0 stays -0, and 2^40 stays a number where
 * cbor-x would read a 64-bit integer as a BigInt). Decoded byte strings are views of the input, as with cbor-x. A
 * decoded `__proto__` key becomes an own property, never a prototype.
 *
 * @module
 */
import { Decoder, Encoder } from "cbor-x";
import { copy } from "./bytes.ts";

// Plain CBOR: no record extension or shared structures, so any CBOR peer can read it.
const fallbackEncoder = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });
const fallbackDecoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/** Thrown inside this module when a value or a byte sequence needs cbor-x. */
const FALLBACK = new Error("cbor: not plain data");
const MAX_DEPTH = 500;
const TWO_32 = 2 ** 32;

let buf = new Uint8Array(8192);
let view = new DataView(buf.buffer);
let pos = 0;
let encoding = false;

/** Encodes `value` as CBOR into fresh bytes. */
export function encodeCbor(value: unknown): Uint8Array {
  if (encoding) return copyOut(fallbackEncoder.encode(value)); // re-entered from a getter: keep our buffer intact
  encoding = true;
  pos = 0;
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
      if (depth > MAX_DEPTH) throw FALLBACK;
      if (Array.isArray(v)) {
        const n = v.length;
        head(4, n);
        for (let i = 0; i < n; i++) item(v[i], depth + 1);
        return;
      }
      if (v instanceof Uint8Array) {
        const n = v.byteLength;
        head(2, n);
        ensure(n);
        buf.set(v, pos);
        pos += n;
        return;
      }
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null) throw FALLBACK;
      const keys = Object.keys(v);
      head(5, keys.length);
      for (const key of keys) {
        string(key);
        item((v as Record<string, unknown>)[key], depth + 1);
      }
      return;
    }
    default:
      throw FALLBACK; // bigint, symbol, function: cbor-x decides
  }
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

// ---- decoding ----

const EMPTY = new Uint8Array(0);
let data: Uint8Array = EMPTY;
let at = 0;
const fromUtf8 = new TextDecoder();
/** Floats are read through this scratch space: a DataView per message would cost more than the whole decode. */
const scratch = new Uint8Array(8);
const scratchView = new DataView(scratch.buffer);

/**
 * Decodes one CBOR item that fills `bytes` exactly.
 *
 * @throws {Error} (from cbor-x) when the bytes are not one valid CBOR item.
 */
export function decodeCbor(bytes: Uint8Array): unknown {
  data = bytes;
  at = 0;
  try {
    const v = read(0);
    if (at === bytes.length) return v;
  } catch (e) {
    if (e !== FALLBACK) throw e;
  } finally {
    data = EMPTY; // do not keep the message alive
  }
  return fallbackDecoder.decode(bytes);
}

/** Reads `n` (4 or 8) bytes at `at` into the scratch space. */
function toScratch(n: number): void {
  if (at + n > data.length) throw FALLBACK;
  for (let i = 0; i < n; i++) scratch[i] = data[at + i]!;
  at += n;
}

/** Reads a head's argument for additional information `ai`. */
function argument(ai: number): number {
  if (ai < 24) return ai;
  let n: number;
  switch (ai) {
    case 24:
      if (at + 1 > data.length) throw FALLBACK;
      return data[at++]!;
    case 25:
      if (at + 2 > data.length) throw FALLBACK;
      n = (data[at]! << 8) | data[at + 1]!;
      at += 2;
      return n;
    case 26:
      if (at + 4 > data.length) throw FALLBACK;
      n = uint32(at);
      at += 4;
      return n;
    default:
      throw FALLBACK; // 64-bit arguments (cbor-x reads them as BigInt), indefinite lengths, reserved values
  }
}

function uint32(i: number): number {
  return ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
}

function read(depth: number): unknown {
  if (at >= data.length || depth > MAX_DEPTH) throw FALLBACK;
  const ib = data[at++]!;
  const major = ib >> 5;
  const ai = ib & 31;
  switch (major) {
    case 0:
      return argument(ai);
    case 1:
      return -1 - argument(ai);
    case 2: {
      const n = argument(ai);
      if (at + n > data.length) throw FALLBACK;
      const out = data.subarray(at, at + n);
      at += n;
      return out;
    }
    case 3: {
      const n = argument(ai);
      if (at + n > data.length) throw FALLBACK;
      return text(n);
    }
    case 4: {
      const n = argument(ai);
      if (n > data.length - at) throw FALLBACK; // every item takes at least a byte
      const out = new Array(n);
      for (let i = 0; i < n; i++) out[i] = read(depth + 1);
      return out;
    }
    case 5: {
      const n = argument(ai);
      if (n * 2 > data.length - at) throw FALLBACK;
      const out: Record<string, unknown> = {};
      for (let i = 0; i < n; i++) {
        const key = read(depth + 1);
        if (typeof key !== "string") throw FALLBACK; // cbor-x's rules for other keys
        const value = read(depth + 1);
        if (key === "__proto__") {
          Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
        } else out[key] = value;
      }
      return out;
    }
    case 7:
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
          if (at + 2 > data.length) throw FALLBACK;
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
      }
      throw FALLBACK;
    default:
      throw FALLBACK; // tags
  }
}

/** A UTF-8 string of `n` bytes at `at`: ASCII by hand, the rest through TextDecoder. */
function text(n: number): string {
  const end = at + n;
  if (n <= 32) {
    let s = "";
    let i = at;
    for (; i < end; i++) {
      const c = data[i]!;
      if (c >= 0x80) break;
      s += String.fromCharCode(c);
    }
    if (i === end) {
      at = end;
      return s;
    }
  }
  const s = fromUtf8.decode(data.subarray(at, end));
  at = end;
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
