/**
 * A raw peer for the hostile RPC tests: a plain `node:net` socket that writes hand-made frames (ipckit's 4-byte
 * big-endian length framing, or newline-delimited lines) and reads frames only when told to. No ipckit code runs on
 * its side, so it can do what a well-behaved client never would: never read, flood, send garbage.
 */
import type { Socket } from "node:net";

/** The end of the stream, as `next()` reports it. */
export const END = Symbol("end");

/** A connected raw socket. */
export class RawSocket {
  readonly socket: Socket;
  readonly #lines: boolean;
  #buffered: Uint8Array = new Uint8Array(0);
  #frames: Uint8Array[] = [];
  #waiters: ((f: Uint8Array | typeof END) => void)[] = [];
  #ended = false;
  #reading = false;
  readonly closed: Promise<void>;

  private constructor(socket: Socket, lines: boolean) {
    this.socket = socket;
    this.#lines = lines;
    this.closed = new Promise((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => {}); // a reset is an end like any other here
    socket.on("close", () => {
      this.#ended = true;
      for (const w of this.#waiters.splice(0)) w(END);
    });
  }

  /** Connects to a Unix socket path or a TCP port on 127.0.0.1, paused (nothing is read until `read()`). */
  static async connect(to: string | number, options: { lines?: boolean } = {}): Promise<RawSocket> {
    const net = await import("node:net");
    const socket = typeof to === "number" ? net.connect({ port: to, host: "127.0.0.1" }) : net.connect(to);
    socket.pause();
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawSocket(socket, options.lines ?? false);
  }

  /** Writes one message, framed; returns what `socket.write` returned (false: the kernel took no more for now). */
  write(message: Uint8Array): boolean {
    return this.socket.write(frame(message, this.#lines));
  }

  /** Writes many messages in one write. */
  writeAll(messages: Uint8Array[]): boolean {
    const frames = messages.map((m) => frame(m, this.#lines));
    const out = new Uint8Array(frames.reduce((n, f) => n + f.byteLength, 0));
    let at = 0;
    for (const f of frames) {
      out.set(f, at);
      at += f.byteLength;
    }
    return this.socket.write(out);
  }

  /** Starts reading: frames are parsed as they arrive, and `next()` hands them out. */
  read(): void {
    if (this.#reading) return;
    this.#reading = true;
    this.socket.on("data", (chunk: Uint8Array) => this.#push(chunk));
    this.socket.resume();
  }

  /** The next frame (or END), within `timeout` ms. */
  next(timeout = 60_000): Promise<Uint8Array | typeof END> {
    this.read();
    const f = this.#frames.shift();
    if (f !== undefined) return Promise.resolve(f);
    if (this.#ended) return Promise.resolve(END);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(new Error(`no frame within ${timeout} ms`));
      }, timeout);
      const waiter = (x: Uint8Array | typeof END) => {
        clearTimeout(timer);
        resolve(x);
      };
      this.#waiters.push(waiter);
    });
  }

  /** Closes the socket at once (no handshake) and waits for it to be closed. */
  async destroy(): Promise<void> {
    this.socket.destroy();
    await this.closed;
  }

  #push(chunk: Uint8Array): void {
    const all = new Uint8Array(this.#buffered.byteLength + chunk.byteLength);
    all.set(this.#buffered);
    all.set(chunk, this.#buffered.byteLength);
    let at = 0;
    for (;;) {
      let f: Uint8Array | undefined;
      if (this.#lines) {
        const nl = all.indexOf(0x0a, at);
        if (nl < 0) break;
        f = all.subarray(at, nl);
        at = nl + 1;
        if (f.byteLength === 0) continue;
      } else {
        if (all.byteLength - at < 4) break;
        const n = new DataView(all.buffer, all.byteOffset + at).getUint32(0);
        if (all.byteLength - at - 4 < n) break;
        f = all.slice(at + 4, at + 4 + n);
        at += 4 + n;
      }
      const w = this.#waiters.shift();
      if (w) w(f);
      else this.#frames.push(f);
    }
    this.#buffered = all.slice(at);
  }
}

function frame(message: Uint8Array, lines: boolean): Uint8Array {
  if (lines) {
    const out = new Uint8Array(message.byteLength + 1);
    out.set(message);
    out[message.byteLength] = 0x0a;
    return out;
  }
  const out = new Uint8Array(message.byteLength + 4);
  new DataView(out.buffer).setUint32(0, message.byteLength);
  out.set(message, 4);
  return out;
}
