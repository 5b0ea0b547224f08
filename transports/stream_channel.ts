/**
 * A Channel over any byte stream, with the framing of `framing.ts`. Unix and TCP sockets, child stdio and FIFO
 * pairs are all this class over a different {@linkcode ByteStream}.
 *
 * @module
 */
import { onAbort } from "../async/abort.ts";
import { within } from "../async/delay.ts";
import { Fifo } from "../async/fifo.ts";
import { abortError, ClosedError, type ProtocolError } from "../errors.ts";
import type { ByteStream } from "../runtimes/runtime.ts";
import { BaseChannel, type Capabilities, type ChannelOptions } from "./channel.ts";
import { encodeFrame, FrameDecoder } from "./framing.ts";
import { encodeLine, LineDecoder } from "./lines.ts";

/** Options of channels over byte streams (Unix and TCP sockets, pipes, FIFOs). */
export interface StreamChannelOptions extends ChannelOptions {
  /**
   * How messages are delimited on the stream: `"length"` (the default: a 4-byte big-endian length before each
   * message, see `framing.ts`), or `"lines"` (each message is one line ending in `\n`, as newline-delimited JSON;
   * a message may then not contain a newline byte, see `lines.ts`). Both sides must use the same.
   */
  framing?: "length" | "lines";
  /**
   * How long `close()` waits, in milliseconds, for a peer that takes none of the messages still queued for it (it
   * does not read, or is stopped) before it drops the connection; those messages are then lost and their `send()`
   * calls reject with `ClosedError`. The clock restarts whenever the peer takes some. Default 30 000.
   */
  closeTimeout?: number;
}

const NO_BYTES = new Uint8Array(0);

/** How long a closing side waits for the peer's end before it drops the connection, in milliseconds. */
const LINGER_MS = 2000;
/** The default of {@linkcode StreamChannelOptions.closeTimeout}. */
const CLOSE_TIMEOUT_MS = 30_000;

interface PendingSend {
  frame: Uint8Array;
  /** Set once it was written, or given up (aborted, or the stream failed): the queue then skips it. */
  done: boolean;
  resolve(): void;
  reject(e: unknown): void;
  /** Stops listening to the send's abort signal. */
  unlisten: (() => void) | undefined;
}

/**
 * Checks `options.framing` before a transport opens anything.
 *
 * @throws {RangeError} when it is neither `"length"` nor `"lines"`, or `closeTimeout` is not a number >= 0.
 */
export function checkFraming(options: StreamChannelOptions | undefined, what: string): void {
  const framing = options?.framing;
  if (framing !== undefined && framing !== "length" && framing !== "lines") {
    throw new RangeError(`Cannot open ${what} with framing ${String(framing)}: use "length" or "lines"`);
  }
  const closeTimeout = options?.closeTimeout;
  if (closeTimeout !== undefined && !(typeof closeTimeout === "number" && closeTimeout >= 0)) {
    throw new RangeError(`Cannot open ${what} with closeTimeout ${String(closeTimeout)}: it must be >= 0 milliseconds`);
  }
}

/** A framed Channel over a {@linkcode ByteStream}. */
export class StreamChannel extends BaseChannel {
  readonly capabilities: Capabilities;
  readonly #stream: ByteStream;
  readonly #decoder: FrameDecoder | LineDecoder;
  readonly #lines: boolean;
  /** Set while the stream asks writers to wait; sends queue behind it in order. */
  #blocked: Promise<void> | undefined;
  /** Sends waiting behind `#blocked`. */
  #pending = new Fifo<PendingSend>();
  #writeError: Error | undefined;
  #streamEnded = false;
  #writeSideEnded = false;
  #linger: ReturnType<typeof setTimeout> | undefined;
  readonly #closeTimeout: number;

  constructor(
    stream: ByteStream,
    description: string,
    capabilities: Capabilities,
    options: StreamChannelOptions = {},
  ) {
    checkFraming(options, description);
    super(description, options, capabilities.maxMessage);
    this.capabilities = capabilities;
    this.#stream = stream;
    this.#lines = options.framing === "lines";
    this.#closeTimeout = options.closeTimeout ?? CLOSE_TIMEOUT_MS;
    this.#decoder = this.#lines
      ? new LineDecoder(this.maxMessage, (m) => this.deliver(m))
      : new FrameDecoder(this.maxMessage, (m) => this.deliver(m));
    const owns = stream.ownsChunks;
    stream.start({
      data: (chunk) => {
        if (this.ended) return;
        try {
          this.#decoder.push(chunk, owns);
        } catch (e) {
          this.#fail(e as Error);
        }
      },
      end: (e) => this.#onStreamEnd(e),
    });
  }

  protected override _pause(): void {
    this.#stream.pause();
  }

  protected override _resume(): void {
    this.#stream.resume();
  }

  protected _send(message: Uint8Array, signal?: AbortSignal): Promise<void> | undefined {
    const frame = this.#lines ? encodeLine(message, this.description) : encodeFrame(message);
    if (this.#blocked === undefined) return this.#write(frame);
    return new Promise<void>((resolve, reject) => {
      const p: PendingSend = { frame, done: false, resolve, reject, unlisten: undefined };
      if (signal) {
        p.unlisten = onAbort(signal, () => {
          if (p.done) return;
          p.done = true;
          p.frame = NO_BYTES; // it stays queued until skipped: keep its slot, not its bytes
          reject(abortError(signal));
        });
      }
      this.#pending.push(p);
    });
  }

  #write(frame: Uint8Array): Promise<void> | undefined {
    if (this.#writeError) return Promise.reject(this.#writeError);
    let wait: Promise<void> | undefined;
    try {
      wait = this.#stream.write(frame);
    } catch (e) {
      return Promise.reject(this.#writeFailed(e));
    }
    if (wait === undefined) return undefined;
    const blocked: Promise<void> = wait.then(
      () => {
        if (this.#blocked === blocked) this.#blocked = undefined;
        this.#flushPending();
      },
      (e) => {
        const err = this.#writeFailed(e);
        if (this.#blocked === blocked) this.#blocked = undefined;
        this.#flushPending();
        throw err;
      },
    );
    this.#blocked = blocked;
    return blocked;
  }

  #writeFailed(e: unknown): Error {
    return (this.#writeError ??= e instanceof ClosedError
      ? e
      : new ClosedError(`Cannot send on ${this.description}: the connection failed`, { cause: e }));
  }

  #flushPending(): void {
    while (this.#blocked === undefined && this.#pending.length > 0) {
      const p = this.#pending.shift()!;
      if (p.done) continue;
      p.done = true;
      p.unlisten?.();
      const r = this.#write(p.frame);
      if (r === undefined) p.resolve();
      else r.then(p.resolve, p.reject);
    }
  }

  /**
   * Resolves when every queued frame was handed to the stream, or when the peer took nothing for `closeTimeout` ms
   * (a peer that never reads must not hold a closing channel, and its memory, forever): then the connection is
   * dropped and what was still queued rejects with `ClosedError`.
   */
  async #drained(): Promise<void> {
    while (this.#blocked !== undefined || this.#pending.length > 0) {
      const blocked = this.#blocked;
      if (blocked !== undefined) {
        const stuck = !(await within(blocked, this.#closeTimeout));
        if (stuck && this.#blocked === blocked) {
          this.#writeError ??= new ClosedError(
            `Cannot send on ${this.description}: the peer read nothing for ${this.#closeTimeout} ms while the channel closed`,
          );
          this.#blocked = undefined;
          this.#release();
        }
      }
      if (this.#writeError) {
        for (const p of this.#pending.clear()) {
          if (p.done) continue;
          p.done = true;
          p.unlisten?.();
          p.reject(this.#writeError);
        }
      }
    }
  }

  #fail(e: Error): void {
    this.end(e);
    this.#stream.close();
    this.#release();
  }

  #onStreamEnd(error?: Error): void {
    this.#streamEnded = true;
    if (!this.ended) {
      if (error instanceof ClosedError) {
        this.end(error); // ipckit's own reason (a listener's idleTimeout), already saying what happened
      } else if (error !== undefined) {
        this.end(new ClosedError(`Cannot receive on ${this.description}: the connection failed`, { cause: error }));
      } else {
        try {
          this.#decoder.finish();
          this.end();
        } catch (e) {
          this.end(e as ProtocolError);
        }
      }
    }
    // The peer closed (or the stream failed): close our direction too, after what was already written.
    if (!this.#writeSideEnded) void this.#endWriteSide().then(() => this.#release());
    else this.#release();
  }

  async #endWriteSide(): Promise<void> {
    this.#writeSideEnded = true;
    await this.#drained();
    try {
      await this.#stream.end();
    } catch { /* the connection is gone already */ }
  }

  #release(): void {
    if (this.#linger !== undefined) clearTimeout(this.#linger);
    this.#linger = undefined;
    this.#stream.close();
  }

  protected async _close(): Promise<void> {
    if (this.#writeSideEnded) return;
    await this.#endWriteSide();
    if (this.#streamEnded) return this.#release();
    // Keep reading (and discarding) until the peer's end so that no unread data resets the connection.
    this.#linger = setTimeout(() => this.#release(), LINGER_MS);
  }
}
