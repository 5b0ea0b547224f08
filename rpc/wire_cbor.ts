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
    p = id < TWO_32 ? head(p, UINT, id) : frameValue(p, id, 1);
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
    p = id < TWO_32 ? head(p, UINT, id) : frameValue(p, id, 1);
    p = frameValue(p, value, 1);
    return finishFrame(p);
  } catch (e) {
    abortFrame();
    throw e;
  }
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
  const n = bytes.length;
  const kind = bytes[1];
  // [RESULT, id, value] or [CALL, id, method, params, timeout, window]: an array of 3 or 6, the kind, a uint id.
  const items = bytes[0] === 0x83 && kind === RESULT ? 3 : bytes[0] === 0x86 && kind === CALL ? 6 : 0;
  if (items !== 0 && n >= items + 1) {
    const ib = bytes[2]!;
    let id = -1, at = 3;
    if (ib < 24) id = ib;
    else if (ib === 24) id = bytes[at++]!;
    else if (ib === 25) {
      id = (bytes[3]! << 8) | bytes[4]!;
      at = 5;
    } else if (ib === 26 && n >= 7) {
      id = ((bytes[3]! << 24) | (bytes[4]! << 16) | (bytes[5]! << 8) | bytes[6]!) >>> 0;
      at = 7;
    }
    if (id >= 0 && at < n) {
      const out = new Array<unknown>(items);
      out[0] = kind;
      out[1] = id;
      try {
        decodeCborRest(bytes, at, 1, items, out, 2);
        return out;
      } catch {
        // the codec reads it again and says what is wrong
      }
    }
  }
  return decodeCbor(bytes);
}
