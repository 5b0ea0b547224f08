/**
 * Two Channels joined in memory (the BaseChannel contract, no OS object): for fuzz targets that run thousands of
 * short RPC sessions, where a socket or a segment per case would cost more than the case. Messages are copied, so a
 * sender may reuse its buffer.
 */
import { BaseChannel, type Capabilities, type ChannelOptions } from "../../transports/channel.ts";

const CAPABILITIES: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: 64 * 1024 * 1024,
  crossHost: false,
  datagram: false,
};

class MemoryChannel extends BaseChannel {
  readonly capabilities = CAPABILITIES;
  other: MemoryChannel | undefined;

  constructor(options: ChannelOptions) {
    super("a memory channel", options);
  }

  protected _send(message: Uint8Array): undefined {
    this.other?.take(message.slice());
    return undefined;
  }

  protected _close(): Promise<void> {
    this.other?.finish();
    return Promise.resolve();
  }

  take(message: Uint8Array): void {
    this.deliver(message);
  }

  finish(): void {
    this.end();
  }
}

/**
 * A memory channel that also lends its messages as the shm channel does (`receiveWith`): `read` sees the message at an
 * offset inside a larger area that is overwritten (0xee) the moment `read` returns, so a reader that keeps a view of
 * it (a decoder returning byte strings as views) sees its values change, as it would when a ring's producer reused the
 * space. `tryReceiveWith` never has a message ready (it may say so).
 */
class LendingChannel extends MemoryChannel {
  receiveWith<T>(read: (data: Uint8Array, offset: number, length: number) => T, options?: { timeout?: number }) {
    return this.receive(options).then((m) => lend(m, read));
  }

  tryReceiveWith<T>(_read: (data: Uint8Array, offset: number, length: number) => T): T | undefined {
    return undefined;
  }
}

function lend<T>(m: Uint8Array, read: (data: Uint8Array, offset: number, length: number) => T): T {
  const area = new Uint8Array(m.byteLength + 16).fill(0xa5);
  area.set(m, 7);
  try {
    const value = read(area, 7, m.byteLength);
    if (value === undefined) throw new TypeError("Cannot receive with a read function that returned undefined");
    return value;
  } finally {
    area.fill(0xee);
  }
}

/** Two connected channels (`lend`: they offer `receiveWith`, see LendingChannel). */
export function memoryPair(options: ChannelOptions & { lend?: boolean } = {}): [BaseChannel, BaseChannel] {
  const Class = options.lend ? LendingChannel : MemoryChannel;
  const a = new Class(options), b = new Class(options);
  a.other = b;
  b.other = a;
  return [a, b];
}
