/**
 * Listeners whose connections queue until `accept()` takes them: the queue and its waiters once
 * ({@linkcode QueuedListener}), and the one over a runtime server ({@linkcode StreamListener}).
 *
 * @module
 */
import { abortError, ClosedError } from "../errors.ts";
import type { ByteStream, Server } from "../runtimes/runtime.ts";
import type { Channel, Listener } from "./channel.ts";

/** The accept queue every listener shares: channels wait for `accept()`, or `accept()` waits for a channel. */
export abstract class QueuedListener implements Listener {
  #ready: Channel[] = [];
  #waiters: Array<{ resolve(c: Channel): void; reject(e: unknown): void }> = [];
  #ended: Error | undefined;

  /** Hands a new connection to a waiting `accept()`, or queues it. */
  protected offer(channel: Channel): void {
    const w = this.#waiters.shift();
    if (w) w.resolve(channel);
    else this.#ready.push(channel);
  }

  /** True once `stopAccepting` ran. */
  protected get stopped(): boolean {
    return this.#ended !== undefined;
  }

  /** Ends accepting: waiting and later `accept()` calls reject with `error`. Returns the channels nobody took. */
  protected stopAccepting(error: Error): Channel[] {
    this.#ended ??= error;
    for (const w of this.#waiters.splice(0)) w.reject(this.#ended);
    return this.#ready.splice(0);
  }

  accept(options: { signal?: AbortSignal } = {}): Promise<Channel> {
    const ready = this.#ready.shift();
    if (ready) return Promise.resolve(ready);
    if (this.#ended) return Promise.reject(this.#ended);
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

  abstract close(): Promise<void>;

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

/** The server half a StreamListener wraps, plus what to do once it stopped. */
export interface ListenerParts {
  description: string;
  wrap(stream: ByteStream): Channel;
  afterClose?: () => Promise<void>;
}

/** Queues the connections of a runtime server as Channels. */
export class StreamListener extends QueuedListener {
  #server: Server | undefined;
  #parts: ListenerParts;
  #closing: Promise<void> | undefined;

  constructor(parts: ListenerParts) {
    super();
    this.#parts = parts;
  }

  /** Binds the runtime server; called once by the transport. */
  attach(server: Server): void {
    this.#server = server;
  }

  /** The runtime hands over a new connection. */
  readonly onConnection = (stream: ByteStream): void => {
    if (this.#closing) return stream.close();
    this.offer(this.#parts.wrap(stream));
  };

  /** The bound port (TCP) or 0. */
  get port(): number {
    return this.#server?.port ?? 0;
  }

  close(): Promise<void> {
    return (this.#closing ??= (async () => {
      const left = this.stopAccepting(new ClosedError(`Cannot accept on ${this.#parts.description}: it is closed`));
      // Connections nobody accepted are closed; accepted ones belong to their users.
      await Promise.all(left.map((c) => c.close()));
      await this.#server?.close();
      await this.#parts.afterClose?.();
    })());
  }
}
