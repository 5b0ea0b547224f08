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

/** Two connected channels. */
export function memoryPair(options: ChannelOptions = {}): [BaseChannel, BaseChannel] {
  const a = new MemoryChannel(options), b = new MemoryChannel(options);
  a.other = b;
  b.other = a;
  return [a, b];
}
