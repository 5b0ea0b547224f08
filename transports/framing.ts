/**
 * Stream framing: how ipckit keeps message boundaries on byte streams (Unix and TCP sockets, pipes, FIFOs).
 *
 * ## The wire format, byte for byte
 *
 * A stream is a sequence of frames and nothing else: no handshake, no trailer.
 *
 * ```text
 * offset  size  field
 * 0       4     length: unsigned 32-bit integer, big-endian (network order): the payload size in bytes
 * 4       n     payload: exactly `length` bytes, the message
 * ```
 *
 * - A message of 0 bytes is the frame `00 00 00 00`. The 3-byte message `"abc"` is `00 00 00 03 61 62 63`.
 * - The largest frame is 2^32 - 1 bytes; each side also enforces its own `maxMessage` (64 MiB by default). A
 *   sender refuses to send more (`MessageTooLargeError`, nothing written); a receiver that reads a larger length
 *   rejects with `MessageTooLargeError` and closes the stream, since it cannot trust the rest of it.
 * - End of stream (EOF) between frames is the clean end: the peer closed the channel. EOF inside a frame (in the
 *   length or the payload) is a `ProtocolError`.
 * - Closing: the closing side finishes writing its frames, then half-closes (shutdown(SHUT_WR), or closes its pipe
 *   end). The other side, on EOF, closes its own write side too, so both ends see EOF and no data is reset.
 *
 * A peer in any language speaks this with a few lines; with Python:
 * `sock.sendall(len(b).to_bytes(4, "big") + b)`, and to read: `n = int.from_bytes(recv_exactly(4), "big")`, then
 * `recv_exactly(n)`.
 *
 * @module
 */
import { MessageTooLargeError, ProtocolError } from "../errors.ts";
import { allocate, copy } from "../runtimes/bytes.ts";

/**
 * Size of the length prefix in bytes.
 *
 * @example
 * ```ts
 * import { encodeFrame, HEADER_SIZE } from "ipckit/framing";
 * console.log(encodeFrame(new Uint8Array(10)).byteLength - HEADER_SIZE); // 10
 * ```
 */
export const HEADER_SIZE = 4;
/**
 * The largest payload the format can describe.
 *
 * @example
 * ```ts
 * import { MAX_FRAME } from "ipckit/framing";
 * import { unix } from "ipckit";
 * console.log(MAX_FRAME === unix.capabilities.maxMessage); // true: what a stream transport can carry at all
 * ```
 */
export const MAX_FRAME = 0xffff_ffff;
/**
 * Default `maxMessage`: 64 MiB.
 *
 * @example
 * ```ts
 * import { DEFAULT_MAX_MESSAGE } from "ipckit/framing";
 * console.log(DEFAULT_MAX_MESSAGE / 1024 / 1024); // 64 (MiB): raise it per channel with { maxMessage }
 * ```
 */
export const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;

/**
 * Encodes one frame: a fresh buffer holding the 4-byte big-endian length and a copy of the payload, so the caller
 * may reuse `payload` at once and the frame goes out in one write.
 *
 * @example
 * ```ts
 * import { encodeFrame } from "ipckit/framing";
 * console.log(encodeFrame(new TextEncoder().encode("abc"))); // Uint8Array [0, 0, 0, 3, 97, 98, 99]
 * console.log(encodeFrame(new Uint8Array(0))); // Uint8Array [0, 0, 0, 0]: the empty message
 * ```
 */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  const n = payload.byteLength;
  const frame = allocate(HEADER_SIZE + n);
  frame[0] = n >>> 24;
  frame[1] = (n >>> 16) & 0xff;
  frame[2] = (n >>> 8) & 0xff;
  frame[3] = n & 0xff;
  frame.set(payload, HEADER_SIZE);
  return frame;
}

/**
 * The first buffer a payload spread over chunks gets, in bytes, when it announces more: the buffer then doubles as
 * bytes arrive (up to the announced length), so a peer that announces 64 MiB and sends 10 bytes costs 64 KiB, not
 * 64 MiB.
 */
const FIRST_BODY = 64 * 1024;

/**
 * Incremental frame decoder: feed it chunks as they arrive, it calls `onFrame` once per complete payload. Payloads
 * that lie inside one owned chunk are handed out as views (no copy); the rest are assembled into fresh buffers that
 * grow with the bytes received (never to more than twice those, plus 64 KiB), not with the length a frame announces.
 *
 * @example
 * ```ts
 * import { encodeFrame, FrameDecoder } from "ipckit/framing";
 * const text = new TextEncoder();
 * const messages: string[] = [];
 * const decoder = new FrameDecoder(1024, (payload) => messages.push(new TextDecoder().decode(payload)));
 * const stream = new Uint8Array([...encodeFrame(text.encode("ab")), ...encodeFrame(text.encode("c"))]);
 * decoder.push(stream.subarray(0, 3), false); // chunks may end anywhere, even inside the length
 * decoder.push(stream.subarray(3), false);
 * decoder.finish(); // at end of stream: throws ProtocolError when it ended inside a frame
 * console.log(messages); // ["ab", "c"]
 * ```
 */
export class FrameDecoder {
  readonly #maxMessage: number;
  readonly #onFrame: (payload: Uint8Array) => void;
  // Partial header bytes.
  readonly #head = new Uint8Array(HEADER_SIZE);
  #headLen = 0;
  // Payload being assembled (null when between frames or reading the header): `#bodyLen` bytes of `#need` so far.
  #body: Uint8Array | null = null;
  #bodyLen = 0;
  #need = 0;

  constructor(maxMessage: number, onFrame: (payload: Uint8Array) => void) {
    this.#maxMessage = maxMessage;
    this.#onFrame = onFrame;
  }

  /** True when the decoder is between frames (EOF now would be a clean end). */
  get idle(): boolean {
    return this.#headLen === 0 && this.#body === null;
  }

  /**
   * Bytes of memory held for the frame in progress (0 between frames): at most twice the payload bytes received so
   * far plus 64 KiB, whatever length the frame announced.
   *
   * @example
   * ```ts
   * import { FrameDecoder } from "ipckit/framing";
   * const decoder = new FrameDecoder(64 * 1024 * 1024, () => {});
   * decoder.push(new Uint8Array([0x03, 0xff, 0xff, 0xff, 1, 2, 3]), false); // announces 64 MiB - 1, sends 3 bytes
   * console.log(decoder.held <= 64 * 1024); // true: memory follows the bytes received
   * ```
   */
  get held(): number {
    return this.#body?.byteLength ?? 0;
  }

  /**
   * Decodes a chunk. `owned` says the chunk may be kept (views of it may be handed out).
   *
   * @throws {MessageTooLargeError} when a frame announces more than `maxMessage` bytes.
   */
  push(chunk: Uint8Array, owned: boolean): void {
    let off = 0;
    const end = chunk.byteLength;
    while (off < end) {
      if (this.#body !== null) {
        // Continue a payload spread over chunks.
        const take = Math.min(end - off, this.#need - this.#bodyLen);
        if (this.#bodyLen + take > this.#body.byteLength) this.#grow(this.#bodyLen + take);
        this.#body.set(chunk.subarray(off, off + take), this.#bodyLen);
        this.#bodyLen += take;
        off += take;
        if (this.#bodyLen === this.#need) {
          const body = this.#body;
          this.#body = null;
          this.#onFrame(body);
        }
        continue;
      }
      let n: number;
      if (this.#headLen === 0 && end - off >= HEADER_SIZE) {
        n = ((chunk[off]! << 24) | (chunk[off + 1]! << 16) | (chunk[off + 2]! << 8) | chunk[off + 3]!) >>> 0;
        off += HEADER_SIZE;
      } else {
        while (this.#headLen < HEADER_SIZE && off < end) this.#head[this.#headLen++] = chunk[off++]!;
        if (this.#headLen < HEADER_SIZE) return;
        const h = this.#head;
        n = ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
        this.#headLen = 0;
      }
      if (n > this.#maxMessage) {
        throw new MessageTooLargeError(
          `Cannot receive a message of ${n} bytes: it exceeds maxMessage (${this.#maxMessage} bytes)`,
          n,
          this.#maxMessage,
        );
      }
      if (end - off >= n) {
        // Whole payload inside this chunk.
        const view = chunk.subarray(off, off + n);
        off += n;
        this.#onFrame(owned ? view : copy(view));
      } else {
        // Reserve what the peer announced only up to a small size: beyond it, memory grows as bytes arrive.
        this.#body = allocate(n <= FIRST_BODY ? n : Math.max(FIRST_BODY, end - off));
        this.#bodyLen = 0;
        this.#need = n;
      }
    }
  }

  /** Doubles the payload buffer (capped at the announced length) until `size` bytes fit: linear copying overall. */
  #grow(size: number): void {
    const old = this.#body!;
    let cap = old.byteLength * 2;
    while (cap < size) cap *= 2;
    const body = new Uint8Array(Math.min(cap, this.#need));
    body.set(old.subarray(0, this.#bodyLen));
    this.#body = body;
  }

  /**
   * Checks the decoder at end of stream.
   *
   * @throws {ProtocolError} when the stream ended inside a frame.
   */
  finish(): void {
    if (this.idle) return;
    const where = this.#body === null
      ? `after ${this.#headLen} of 4 length bytes`
      : `after ${this.#bodyLen} of ${this.#need} payload bytes`;
    throw new ProtocolError(`Cannot read a message: the stream ended inside a frame (${where})`);
  }
}
