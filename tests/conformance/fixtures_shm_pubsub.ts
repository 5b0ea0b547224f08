/**
 * The conformance fixture of publish-subscribe over shared memory (`shm.publisher` / `shm.subscriber`): a duplex
 * test adapter of two segments, one per direction. Each side publishes on its own segment (policy `block`: nothing
 * is lost) and is the one subscriber of the other's. The child peer loads it through
 * `peer.ts shm_pubsub <parent's segment>,<child's segment> [flags]`.
 *
 * What the adapter adds to the two sides, and why (the library's own behaviour is what the suite checks):
 * - sends are queued one after another: two `publish()` calls waiting for room could otherwise pass each other;
 * - a send with an already aborted signal rejects before publishing (`publish()` looks at its signal only when it
 *   has to wait);
 * - the `maxMessage` option limits sends (a ring's own limit is `capacity - 16`, a power of two minus 16);
 * - the end is learnt when `receive()` rejects with `ClosedError` (the peer's publisher closed or died), and
 *   `send()` then rejects with `ClosedError` too.
 */
import { abortError, ClosedError, MessageTooLargeError } from "../../errors.ts";
import { type Publisher, publisher, type Subscriber, subscriber } from "../../shm/pubsub.ts";
import { SharedMemory } from "../../shm/segment.ts";
import type { ChannelOptions, ReceiveOptions, SendOptions } from "../../transports/channel.ts";
import type { ChannelCases } from "./channel.ts";
import { DUPLEX_CAPACITY, duplexCapabilities, DuplexShmChannel, segmentNameIn } from "./duplex_shm.ts";
import { CONNECT_TIMEOUT, createWithPeer, type Fixture, remoteOf } from "./fixtures.ts";

/** Every segment name the fixture handed out (each side's publisher removes its own; cleanup the rest). */
export const pubsubNames: Set<string> = new Set();

function segmentName(): string {
  return segmentNameIn(pubsubNames, "ps");
}

/** One side: publishes on `pub`, receives from `sub` (the peer's publisher). */
class PubSubChannel extends DuplexShmChannel {
  readonly #pub: Publisher;
  readonly #sub: Subscriber;
  readonly #max: number;
  /** The last queued send: the next one starts after it settles. */
  #tail: Promise<unknown> = Promise.resolve();
  #waiting = 0;

  constructor(pub: Publisher, sub: Subscriber, options: ChannelOptions) {
    super();
    this.#pub = pub;
    this.#sub = sub;
    this.#max = Math.min(options.maxMessage ?? pub.maxMessage, pub.maxMessage);
  }

  send(message: Uint8Array, options?: SendOptions): Promise<void> {
    if (this.closedHere) return Promise.reject(new ClosedError("Cannot send on the pub-sub pair: it is closed"));
    if (this.ended) return Promise.reject(new ClosedError("Cannot send on the pub-sub pair: the peer closed it"));
    if (message instanceof Uint8Array && message.byteLength > this.#max) {
      return Promise.reject(
        new MessageTooLargeError(
          `Cannot send ${message.byteLength} bytes: over maxMessage`,
          message.byteLength,
          this.#max,
        ),
      );
    }
    const signal = options?.signal;
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.#waiting === 0) {
      try {
        if (this.#pub.tryPublish(message)) return Promise.resolve();
      } catch (e) {
        return Promise.reject(e);
      }
    }
    this.#waiting++;
    const sent = this.#tail.then(() => this.#pub.publish(message, signal === undefined ? {} : { signal }))
      .finally(() => this.#waiting--);
    this.#tail = sent.catch(() => {});
    return sent;
  }

  async receive(options?: ReceiveOptions): Promise<Uint8Array> {
    try {
      return await this.#sub.receive(options);
    } catch (e) {
      if (e instanceof ClosedError && !this.closedHere) this.ended = true;
      throw e;
    }
  }

  /** Delivers the sends queued before it, then ends this side's publishing and leaves the peer's. */
  protected async closeSides(): Promise<void> {
    await this.#tail;
    await this.#pub.close();
    await this.#sub.close();
  }
}

/** Waits until `pub` has a subscriber: a message published before the peer joined would not reach it. */
async function peerJoined(pub: Publisher, what: string): Promise<void> {
  const deadline = Date.now() + CONNECT_TIMEOUT;
  while (pub.subscriberCount === 0) {
    if (Date.now() > deadline) throw new Error(`${what}: no subscriber after ${CONNECT_TIMEOUT} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const removeName = (name: string) => SharedMemory.unlink(name).catch(() => {});

export const fixture: Fixture & ChannelCases = {
  name: "shm_pubsub",
  capabilities: duplexCapabilities,
  async pair(options = {}) {
    const [ab, ba] = [segmentName(), segmentName()];
    // One thread holds both sides: spinning cannot see the other side move, so do not spin.
    const pubA = await publisher(ab, { capacity: DUPLEX_CAPACITY, spin: 0 });
    const made: { close(): Promise<void> }[] = [pubA];
    try {
      const pubB = await publisher(ba, { capacity: DUPLEX_CAPACITY, spin: 0 });
      made.push(pubB);
      const subOfA = await subscriber(ab, { spin: 0 });
      made.push(subOfA);
      const subOfB = await subscriber(ba, { spin: 0 });
      const a = new PubSubChannel(pubA, subOfB, options);
      const b = new PubSubChannel(pubB, subOfA, options);
      return {
        a,
        b,
        async cleanup() {
          await Promise.all([a.close(), b.close()]);
        },
      };
    } catch (e) {
      for (const m of made) await m.close().catch(() => {});
      throw e;
    }
  },
  async remote(rtName, flags, options = {}) {
    const [mine, theirs] = [segmentName(), segmentName()];
    const pub = await publisher(mine, { capacity: DUPLEX_CAPACITY });
    // The child subscribes to `mine` before it creates `theirs`, and publishes once this side subscribed.
    const { channel, child } = await createWithPeer(
      async (signal) => new PubSubChannel(pub, await subscriber(theirs, { wait: CONNECT_TIMEOUT, signal }), options),
      rtName,
      ["shm_pubsub", `${mine},${theirs}`, ...flags],
      async () => {
        await pub.close();
        await removeName(theirs);
      },
    );
    return remoteOf(channel, child, () => removeName(theirs)); // left by a child that was killed
  },
  async childSide(address, options) {
    const [theirs, mine] = address.split(",") as [string, string];
    const sub = await subscriber(theirs, { wait: CONNECT_TIMEOUT });
    try {
      const pub = await publisher(mine, { capacity: DUPLEX_CAPACITY });
      await peerJoined(pub, `shm_pubsub child "${mine}"`).catch(async (e) => {
        await pub.close();
        throw e;
      });
      return new PubSubChannel(pub, sub, options);
    } catch (e) {
      await sub.close();
      throw e;
    }
  },
  raw: "publish-subscribe has no byte stream; tests/shm_pubsub.test.ts writes hand-made corrupt segments instead",
  noReceiveLimit: "a subscriber has no receive-side limit: it takes every record up to the ring's maxMessage " +
    "(capacity - 16), which the publisher already enforces",
};
