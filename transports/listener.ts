/**
 * A {@linkcode Listener} over a runtime server: connections queue until `accept()` takes them.
 *
 * @module
 */
import { abortError, ClosedError } from "../errors.ts";
import type { ByteStream, Server } from "../runtimes/runtime.ts";
import type { Channel, Listener } from "./channel.ts";

/** The server half a StreamListener wraps, plus what to do once it stopped. */
export interface ListenerParts {
  description: string;
  wrap(stream: ByteStream): Channel;
  afterClose?: () => Promise<void>;
}

/** Queues accepted connections as Channels. */
export class StreamListener implements Listener {
  #server: Server | undefined;
  #parts: ListenerParts;
  #ready: Channel[] = [];
  #waiters: Array<{ resolve(c: Channel): void; reject(e: unknown): void }> = [];
  #closing: Promise<void> | undefined;

  constructor(parts: ListenerParts) {
    this.#parts = parts;
  }

  /** Binds the runtime server; called once by the transport. */
  attach(server: Server): void {
    this.#server = server;
  }

  /** The runtime hands over a new connection. */
  readonly onConnection = (stream: ByteStream): void => {
    if (this.#closing) return stream.close();
    const channel = this.#parts.wrap(stream);
    const w = this.#waiters.shift();
    if (w) w.resolve(channel);
    else this.#ready.push(channel);
  };

  /** The bound port (TCP) or 0. */
  get port(): number {
    return this.#server?.port ?? 0;
  }

  accept(options: { signal?: AbortSignal } = {}): Promise<Channel> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#closing) {
      return Promise.reject(new ClosedError(`Cannot accept on ${this.#parts.description}: it is closed`));
    }
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.#waiters.indexOf(w);
        if (i >= 0) this.#waiters.splice(i, 1);
        reject(abortError(signal!));
      };
      const w = {
        resolve(c: Channel) {
          signal?.removeEventListener("abort", onAbort);
          resolve(c);
        },
        reject(e: unknown) {
          signal?.removeEventListener("abort", onAbort);
          reject(e);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#waiters.push(w);
    });
  }

  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const e = new ClosedError(`Cannot accept on ${this.#parts.description}: it is closed`);
      for (const w of this.#waiters.splice(0)) w.reject(e);
      // Connections nobody accepted are closed; accepted ones belong to their users.
      await Promise.all(this.#ready.splice(0).map((c) => c.close()));
      await this.#server?.close();
      await this.#parts.afterClose?.();
    })());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Channel> {
    for (;;) {
      try {
        yield await this.accept();
      } catch (e) {
        if (e instanceof ClosedError) return;
        throw e;
      }
    }
  }
}
