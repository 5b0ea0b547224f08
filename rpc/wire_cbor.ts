/**
 * The two messages of every call, CALL and RESULT, in CBOR without the codec's per-item path: the fixed parts (the
 * array's head, the kind, the id, a null deadline, the window) are written and read by hand, the values (method,
 * params, result) go through ipckit's CBOR encoder and decoder. Byte for byte what the `cbor` codec (the default)
 * writes for the same array, and the same values and errors back from the same bytes: `tests/rpc_wire.test.ts` holds
 * both against the codec with fast-check. A round trip of a small call spends about half its JavaScript in the codec
 * (issue 18's profile), and most of that in the parts that are always alike.
 *
 * Only for the `cbor` codec with its default settings: other codecs (json, `cborCodec({...})`, one of the
 * application's own) take the generic path.
 *
 * @module
 */
import { copy } from "../runtimes/bytes.ts";
import {
  abortFrame,
  beginFrame,
  decodeCbor,
  decodeCborRest,
  DEFAULT_LIMITS,
  finishFrame,
  frameBuffer,
  frameValue,
  head,
} from "../transports/cbor.ts";
import { CALL, RESULT } from "./protocol.ts";

/** Integers from here on are floats in ipckit's CBOR (see `number()` in transports/cbor.ts). */
const TWO_32 = 2 ** 32;
/** Heads: an array of 6 and of 3 items, null. */
const ARRAY = 4, UINT = 0, SIMPLE = 7, NULL = 22;

/**
 * Writes `[CALL, id, method, params, timeout, window]` as the `cbor` codec does, into the encoder's buffer
 * (`frameBuffer()`, valid until the next encode); returns its length.
 *
 * @throws {TypeError} for params the codec refuses (as it would).
 */
export function writeCall(
  id: number,
  method: string,
  params: unknown[],
  timeout: number | null,
  window: number,
): number {
  let p = beginFrame();
  try {
    p = head(p, ARRAY, 6);
    p = head(p, UINT, CALL);
    p = writeId(p, id);
    p = frameValue(p, method, 1);
    p = frameValue(p, params, 1);
    p = timeout === null ? head(p, SIMPLE, NULL) : frameValue(p, timeout, 1);
    p = head(p, UINT, window); // an integer from 1 to 2^20 (checked by the peer)
    return finishFrame(p);
  } catch (e) {
    abortFrame();
    throw e;
  }
}

/**
 * Writes `[RESULT, id, value]` as the `cbor` codec does, into the encoder's buffer; returns its length.
 *
 * @throws {TypeError} for a value the codec refuses (as it would).
 */
export function writeResult(id: number, value: unknown): number {
  let p = beginFrame();
  try {
    p = head(p, ARRAY, 3);
    p = head(p, UINT, RESULT);
    p = writeId(p, id);
    p = frameValue(p, value, 1);
    return finishFrame(p);
  } catch (e) {
    abortFrame();
    throw e;
  }
}

/**
 * An id: a head by hand for the ids a caller makes (1 to 2^32 - 1), the codec for the rest (a peer's 0, -0, negative
 * or large id, which a server answers with: the codec writes -1 as a negative integer, -0 and 2^32 as floats).
 */
function writeId(p: number, id: number): number {
  return id > 0 && id < TWO_32 && Number.isInteger(id) ? head(p, UINT, id) : frameValue(p, id, 1);
}

/** What the last `write...` wrote, as fresh bytes. */
export function written(length: number): Uint8Array {
  return copy(frameBuffer(), 0, length);
}

/** {@linkcode writeCall}, as fresh bytes. */
export function encodeCall(
  id: number,
  method: string,
  params: unknown[],
  timeout: number | null,
  window: number,
): Uint8Array {
  return written(writeCall(id, method, params, timeout, window));
}

/** {@linkcode writeResult}, as fresh bytes. */
export function encodeResult(id: number, value: unknown): Uint8Array {
  return written(writeResult(id, value));
}

/**
 * Decodes an RPC message as the `cbor` codec does; a CALL or a RESULT with an id below 2^32 (every id a caller makes
 * in its first four billion calls) has its head read by hand. Anything else, and any message the fast path does not
 * take whole, goes to the codec, whose error then says what is wrong.
 *
 * @throws {ProtocolError} as the codec.
 */
export function decodeMessage(bytes: Uint8Array): unknown {
  // Byte strings decode as views of the input: make them plain Uint8Arrays, not Node Buffers (as the codec does).
  if (bytes.constructor !== Uint8Array) bytes = new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return fast(bytes, 0, bytes.length, false) ?? decodeCbor(bytes);
}

/**
 * {@linkcode decodeMessage} of the `length` bytes at `offset` in `data`, read where they lie (a shared-memory ring's
 * data area): byte strings and typed arrays come out as copies, since the ring's space goes back to its producer
 * once this returns. For `RingChannel.receiveWith`.
 *
 * @throws {ProtocolError} as the codec.
 */
export function decodeMessageAt(data: Uint8Array, offset: number, length: number): unknown {
  // A copy with set(), not slice(): slice() of mapped memory is slow on Node until its caller is optimized.
  return fast(data, offset, offset + length, true) ?? decodeCbor(copy(data, offset, offset + length));
}

/** A CALL or RESULT decoded by hand from `data[start..end)`, or undefined for anything else (the codec's turn). */
function fast(data: Uint8Array, start: number, end: number, copyViews: boolean): unknown[] | undefined {
  const n = end - start;
  const kind = data[start + 1];
  // [RESULT, id, value] or [CALL, id, method, params, timeout, window]: an array of 3 or 6, the kind, a uint id.
  const items = data[start] === 0x83 && kind === RESULT ? 3 : data[start] === 0x86 && kind === CALL ? 6 : 0;
  if (items === 0 || n < items + 1) return undefined;
  const ib = data[start + 2]!;
  let id = -1, at = start + 3;
  if (ib < 24) id = ib;
  else if (ib === 24) id = data[at++]!;
  else if (ib === 25) {
    id = (data[at]! << 8) | data[at + 1]!;
    at += 2;
  } else if (ib === 26 && n >= 7) {
    id = ((data[at]! << 24) | (data[at + 1]! << 16) | (data[at + 2]! << 8) | data[at + 3]!) >>> 0;
    at += 4;
  }
  if (id < 0 || at >= end) return undefined;
  const out = new Array<unknown>(items);
  out[0] = kind;
  out[1] = id;
  try {
    decodeCborRest(data, at, 1, items, out, 2, DEFAULT_LIMITS, start, end, copyViews);
    return out;
  } catch {
    return undefined; // the codec reads it again and says what is wrong
  }
}
