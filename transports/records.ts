/**
 * The record protocol shared by the channel views over message-oriented OS objects (POSIX and System V message
 * queues, the file queue): every record starts with one kind byte.
 *
 * ```text
 * 0  DATA   the rest is the last (or only) piece of a user message (a 0-byte message is just this byte)
 * 1  MORE   the rest is a piece of a user message, more pieces follow (messages larger than one record)
 * 2  END    the sender closed: the receiver has every message, then ClosedError
 * 3  HELLO  then the sender's pid as u32 little-endian, then its start-time tag as u32 little-endian (see
 *           `os/liveness.ts`; 9 bytes in all): sent once by each side when connecting. A 5-byte HELLO (pid only, as
 *           older versions and simple peers send) is accepted: that peer's liveness is then its pid alone (a
 *           zombie still counts as dead, a reused pid is not noticed)
 * ```
 *
 * @module
 */
import { MessageTooLargeError, ProtocolError } from "../errors.ts";
import { type Identity, tagOfId } from "../os/liveness.ts";

export const DATA = 0;
export const MORE = 1;
export const END = 2;
export const HELLO = 3;

/** The HELLO record of process `pid` (this process: its start-time tag is read from `/proc`). */
export function helloRecord(pid: number): Uint8Array {
  const m = new Uint8Array(9);
  m[0] = HELLO;
  const view = new DataView(m.buffer);
  view.setUint32(1, pid, true);
  view.setUint32(5, tagOfId(pid), true);
  return m;
}

/**
 * Who sent a HELLO record: its pid and start-time tag (0 for a 5-byte HELLO).
 *
 * @throws {ProtocolError} when `record` is not a HELLO record, or names no process (pid 0).
 */
export function helloIdentity(record: Uint8Array, what: string): Identity {
  if ((record.byteLength !== 5 && record.byteLength !== 9) || record[0] !== HELLO) {
    throw new ProtocolError(`Cannot connect ${what}: the peer sent no ipckit channel greeting`);
  }
  const view = new DataView(record.buffer, record.byteOffset, record.byteLength);
  const id = view.getUint32(1, true);
  if (id === 0 || id > 0x3fff_ffff) {
    throw new ProtocolError(`Cannot connect ${what}: the peer's greeting names no process (pid ${id})`);
  }
  return { id, tag: record.byteLength === 9 ? view.getUint32(5, true) : 0 };
}

/** Splits a message into DATA/MORE records of at most `recordSize` bytes (kind byte included). */
export function* pieces(message: Uint8Array, recordSize: number): Generator<Uint8Array> {
  const piece = recordSize - 1;
  let offset = 0;
  do {
    const end = Math.min(offset + piece, message.byteLength);
    const record = new Uint8Array(1 + end - offset);
    record[0] = end === message.byteLength ? DATA : MORE;
    record.set(message.subarray(offset, end), 1);
    yield record;
    offset = end;
  } while (offset < message.byteLength);
}

/**
 * Sends a message as records through `put`, one after the other. `signal` can abort only before the first piece:
 * a message goes whole or not at all.
 */
export async function writeRecords(
  message: Uint8Array,
  recordSize: number,
  put: (record: Uint8Array, signal?: AbortSignal) => Promise<void> | undefined,
  signal: AbortSignal | undefined,
): Promise<void> {
  let first = true;
  for (const record of pieces(message, recordSize)) {
    await put(record, first ? signal : undefined);
    first = false;
  }
}

/** Joins DATA/MORE records back into messages, enforcing the receiver's `maxMessage`. */
export class Reassembler {
  readonly #maxMessage: number;
  readonly #description: string;
  #parts: Uint8Array[] = [];
  #size = 0;

  constructor(maxMessage: number, description: string) {
    this.#maxMessage = maxMessage;
    this.#description = description;
  }

  /**
   * Takes a DATA or MORE record; returns the whole message when the record completes one.
   *
   * @throws {MessageTooLargeError} when the pieces add up to more than `maxMessage`.
   */
  take(record: Uint8Array): Uint8Array | undefined {
    const body = record.subarray(1);
    this.#size += body.byteLength;
    if (this.#size > this.#maxMessage) {
      throw new MessageTooLargeError(
        `Cannot receive on ${this.#description}: a message of ${this.#size}+ bytes exceeds maxMessage (${this.#maxMessage} bytes)`,
        this.#size,
        this.#maxMessage,
      );
    }
    if (record[0] === MORE) {
      this.#parts.push(body);
      return undefined;
    }
    const parts = this.#parts;
    const size = this.#size;
    this.#parts = [];
    this.#size = 0;
    if (parts.length === 0) return body;
    const whole = new Uint8Array(size);
    let at = 0;
    for (const p of [...parts, body]) {
      whole.set(p, at);
      at += p.byteLength;
    }
    return whole;
  }
}
