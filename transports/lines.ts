/**
 * Line framing (`framing: "lines"` on a stream channel): each message is one line ending in `\n` (0x0A), the
 * framing of newline-delimited JSON (NDJSON, JSON Lines) that most JSON-RPC clients and many tools speak.
 *
 * - Sending appends `\n`. A message that contains a 0x0A byte cannot be a line: `send()` rejects with a
 *   `TypeError` and writes nothing. (`JSON.stringify` never writes one: newlines in strings are escaped.)
 * - Receiving splits at `\n`, drops a `\r` before it (CRLF peers) and skips empty lines. A line longer than
 *   `maxMessage` is a `MessageTooLargeError` and ends the channel, as an oversized frame does. At end of stream a
 *   last line without its `\n` still counts as a message.
 *
 * @module
 */
import { MessageTooLargeError } from "../errors.ts";
import { allocate, copy } from "./bytes.ts";

const LF = 0x0a;
const CR = 0x0d;

/**
 * The line for `message` (a fresh buffer: the message and `\n`), or throws when the message holds a newline.
 *
 * @example
 * ```ts
 * import { encodeLine } from "ipckit";
 * const line = encodeLine(new TextEncoder().encode('{"id":1}'), "my socket");
 * console.log(JSON.stringify(new TextDecoder().decode(line))); // "{\"id\":1}\n"
 * try {
 *   encodeLine(new TextEncoder().encode("two\nlines"), "my socket");
 * } catch (e) {
 *   console.log(e instanceof TypeError); // true: a message with a newline cannot be a line
 * }
 * ```
 */
export function encodeLine(message: Uint8Array, description: string): Uint8Array {
  if (message.indexOf(LF) >= 0) {
    throw new TypeError(
      `Cannot send on ${description}: the channel frames messages as lines, and this one contains a newline byte`,
    );
  }
  const n = message.byteLength;
  const line = allocate(n + 1);
  line.set(message);
  line[n] = LF;
  return line;
}

/**
 * Incremental line decoder, with the interface of `FrameDecoder`.
 *
 * @example
 * ```ts
 * import { LineDecoder } from "ipckit";
 * const lines: string[] = [];
 * const decoder = new LineDecoder(1024, (line) => lines.push(new TextDecoder().decode(line)));
 * decoder.push(new TextEncoder().encode("first\r\n\nsec"), false); // CRLF and blank lines are fine
 * decoder.push(new TextEncoder().encode("ond\nlast"), false);
 * decoder.finish(); // a last line without its newline still counts
 * console.log(lines); // ["first", "second", "last"]
 * ```
 */
export class LineDecoder {
  readonly #maxMessage: number;
  readonly #onLine: (line: Uint8Array) => void;
  /** Bytes of an unfinished line from earlier chunks. */
  #parts: Uint8Array[] = [];
  #partLen = 0;

  constructor(maxMessage: number, onLine: (line: Uint8Array) => void) {
    this.#maxMessage = maxMessage;
    this.#onLine = onLine;
  }

  /** True when no unfinished line is held. */
  get idle(): boolean {
    return this.#partLen === 0;
  }

  /**
   * Decodes a chunk. `owned` says the chunk may be kept (views of it may be handed out).
   *
   * @throws {MessageTooLargeError} when a line grows past `maxMessage` bytes.
   */
  push(chunk: Uint8Array, owned: boolean): void {
    let off = 0;
    const end = chunk.byteLength;
    while (off < end) {
      const nl = chunk.indexOf(LF, off);
      if (nl < 0) {
        this.#hold(chunk.subarray(off), owned);
        return;
      }
      if (this.#partLen === 0) {
        const view = chunk.subarray(off, nl);
        this.#check(view.byteLength);
        this.#emit(owned ? view : copy(view));
      } else {
        this.#hold(chunk.subarray(off, nl), false);
        this.#emit(this.#join());
      }
      off = nl + 1;
    }
  }

  /** At end of stream: a last line without its newline is still a message. */
  finish(): void {
    if (this.#partLen > 0) this.#emit(this.#join());
  }

  #hold(bytes: Uint8Array, owned: boolean): void {
    if (bytes.byteLength === 0) return;
    this.#check(this.#partLen + bytes.byteLength);
    this.#parts.push(owned ? bytes : copy(bytes));
    this.#partLen += bytes.byteLength;
  }

  #join(): Uint8Array {
    const parts = this.#parts;
    const line = parts.length === 1 ? parts[0]! : allocate(this.#partLen);
    if (parts.length > 1) {
      let at = 0;
      for (const p of parts) {
        line.set(p, at);
        at += p.byteLength;
      }
    }
    this.#parts = [];
    this.#partLen = 0;
    return line;
  }

  #check(n: number): void {
    // A CR may still be dropped from the end, so allow one byte more than the limit while the line is open.
    if (n > this.#maxMessage + 1) {
      throw new MessageTooLargeError(
        `Cannot receive a line of more than ${this.#maxMessage} bytes: it exceeds maxMessage`,
        n,
        this.#maxMessage,
      );
    }
  }

  #emit(line: Uint8Array): void {
    const n = line.byteLength > 0 && line[line.byteLength - 1] === CR ? line.byteLength - 1 : line.byteLength;
    if (n === 0) return; // an empty line separates nothing
    if (n > this.#maxMessage) {
      throw new MessageTooLargeError(
        `Cannot receive a line of ${n} bytes: it exceeds maxMessage (${this.#maxMessage} bytes)`,
        n,
        this.#maxMessage,
      );
    }
    this.#onLine(n === line.byteLength ? line : line.subarray(0, n));
  }
}
