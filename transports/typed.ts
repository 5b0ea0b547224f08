/**
 * A typed view of any Channel: values in, values out, through a codec.
 *
 * @module
 */
import { type Channel, messageIterator, type ReceiveOptions, type SendOptions } from "./channel.ts";
import { cbor, type Codec } from "./codec.ts";

/** A Channel of values of type T. */
export interface TypedChannel<T> extends AsyncIterable<T>, AsyncDisposable {
  /** Encodes and sends a value. */
  send(value: T, options?: SendOptions): Promise<void>;
  /**
   * Receives and decodes the next value.
   *
   * @throws {ProtocolError} when the message does not decode (the channel stays usable).
   */
  receive(options?: ReceiveOptions): Promise<T>;
  close(): Promise<void>;
  readonly closed: boolean;
  /** The byte channel underneath. */
  readonly channel: Channel;
}

/**
 * Wraps `channel` so it carries values: `cbor` by default, or `json`, or any {@linkcode Codec}. The type
 * parameter is a promise between the two sides, not a check: validate what you receive from untrusted peers.
 *
 * @example
 * ```ts
 * import { runtime, typed, unix } from "ipckit";
 * const path = `/tmp/ipckit-svc-${(await runtime()).pid}.sock`;
 * await using server = await unix.listen(path);
 * const ch = typed<{ op: string; n: number }>(await unix.connect(path)); // CBOR; typed(channel, json) for JSON
 * const peer = typed<{ op: string; n: number }>(await server.accept());
 * await ch.send({ op: "add", n: 2 });
 * console.log(await peer.receive()); // { op: "add", n: 2 }
 * await ch.close();
 * await peer.close();
 * ```
 */
export function typed<T = unknown>(channel: Channel, codec: Codec = cbor): TypedChannel<T> {
  return {
    channel,
    send: (value, options) => {
      let bytes: Uint8Array;
      try {
        bytes = codec.encode(value);
      } catch (e) {
        return Promise.reject(e);
      }
      return channel.send(bytes, options);
    },
    receive: async (options) => codec.decode(await channel.receive(options)) as T,
    close: () => channel.close(),
    get closed() {
      return channel.closed;
    },
    [Symbol.asyncDispose]: () => channel.close(),
    [Symbol.asyncIterator]: () => messageIterator({ receive: async () => codec.decode(await channel.receive()) as T }),
  };
}
