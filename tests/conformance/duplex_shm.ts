/**
 * What the two duplex test adapters of one-way shared-memory patterns share (`fixtures_shm_pubsub.ts`,
 * `fixtures_shm_mpsc.ts`): rings sized for the channel suite, their capabilities, and a Channel skeleton whose
 * `close()` runs once, lets the sends before it settle and then ends both directions.
 */
import type { Capabilities, Channel, ReceiveOptions, SendOptions } from "../../transports/channel.ts";
import { messageIterator } from "../../transports/channel.ts";

/** Rings big enough for the suite's largest message (4 MiB) and its floods (3 MiB before reading). */
export const DUPLEX_CAPACITY = 8 * 1024 * 1024;

export const duplexCapabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: DUPLEX_CAPACITY - 16,
  crossHost: false,
  datagram: false,
};

/** A fresh segment name with `prefix`, added to `names` (what a failed test's cleanup removes). */
export function segmentNameIn(names: Set<string>, prefix: string): string {
  const name = `/ipckit-test-${prefix}-${Math.random().toString(36).slice(2, 12)}`;
  names.add(name);
  return name;
}

/** One side of a duplex adapter: a subclass sends and receives, and ends its two directions in `closeSides()`. */
export abstract class DuplexShmChannel implements Channel {
  readonly capabilities = duplexCapabilities;
  /** `close()` was called. */
  protected closedHere = false;
  /** The peer's direction ended (its sender closed or died). */
  protected ended = false;
  #closing: Promise<void> | undefined;

  get closed(): boolean {
    return this.closedHere || this.ended;
  }

  abstract send(message: Uint8Array, options?: SendOptions): Promise<void>;
  abstract receive(options?: ReceiveOptions): Promise<Uint8Array>;

  /** Lets the sends queued before `close()` settle, then ends this side's sending and receiving. */
  protected abstract closeSides(): Promise<void>;

  close(): Promise<void> {
    if (this.#closing) return this.#closing;
    this.closedHere = true;
    return (this.#closing = this.closeSides());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return messageIterator(this);
  }
}
