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
import { allocate, copy } from "../runtimes/bytes.ts";

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

/** The first buffer an unfinished line gets, in bytes; it then doubles as bytes arrive (up to `maxMessage` + 1). */
const FIRST_LINE = 1024;

/**
 * Incremental line decoder, with the interface of `FrameDecoder`. Linear in the bytes received: each byte is
 * scanned once, and an unfinished line is kept in one buffer that doubles as it grows (at most twice its bytes plus
 * 1 KiB, and never more than `maxMessage` + 1 bytes), however the peer cuts it into chunks.
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
  /** The unfinished line from earlier chunks: its first `#partLen` bytes. */
  #part: Uint8Array | null = null;
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
   * Bytes of memory held for an unfinished line (0 between lines).
   *
   * @example
   * ```ts
   * import { LineDecoder } from "ipckit";
   * const decoder = new LineDecoder(1 << 20, () => {});
   * for (let i = 0; i < 1000; i++) decoder.push(new Uint8Array([0x61]), false); // a line arriving byte by byte
   * console.log(decoder.held); // 1024: one buffer, not a thousand pieces
   * ```
   */
  get held(): number {
    return this.#part?.byteLength ?? 0;
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
        this.#hold(chunk, off, end);
        return;
      }
      if (this.#partLen === 0) {
        const view = chunk.subarray(off, nl);
        this.#check(view.byteLength);
        this.#emit(owned ? view : copy(view));
      } else {
        this.#hold(chunk, off, nl);
        this.#emit(this.#take());
      }
      off = nl + 1;
    }
  }

  /** At end of stream: a last line without its newline is still a message. */
  finish(): void {
    if (this.#partLen > 0) this.#emit(this.#take());
  }

  /** Appends `chunk[from, to)` to the unfinished line, after checking the limit (so nothing over it is kept). */
  #hold(chunk: Uint8Array, from: number, to: number): void {
    const n = to - from;
    if (n === 0) return;
    const size = this.#partLen + n;
    this.#check(size);
    let part = this.#part;
    if (part === null || size > part.byteLength) {
      let cap = part === null ? FIRST_LINE : part.byteLength * 2;
      while (cap < size) cap *= 2;
      const grown = allocate(Math.min(cap, this.#maxMessage + 1));
      if (part !== null) grown.set(part.subarray(0, this.#partLen));
      this.#part = part = grown;
    }
    part.set(chunk.subarray(from, to), this.#partLen);
    this.#partLen = size;
  }

  /**
   * The unfinished line as a message: a view of the held buffer, or a copy when more than half of that buffer is
   * unused (so a queued message never holds much more memory than its bytes).
   */
  #take(): Uint8Array {
    const part = this.#part!;
    const line = this.#partLen * 2 < part.byteLength ? copy(part, 0, this.#partLen) : part.subarray(0, this.#partLen);
    this.#part = null;
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
