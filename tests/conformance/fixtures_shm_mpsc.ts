/**
 * The conformance fixture of the many-producer channel (`shm.collector` / `shm.producer`): a duplex test adapter of
 * two collectors, one per direction. Each side receives on its own collector and sends with a producer into the
 * other's. The child peer loads it through `peer.ts shm_mpsc <parent's collector>,<child's collector> [flags]`.
 *
 * A collector has no end of stream: it waits for producers as long as it lives, whoever left. The adapter makes one
 * from the table of producers (`collector.producers()`), as a caller that knows its one peer would: when a receive
 * finds nothing, the channel has ended once the peer's producer closed with every message it sent taken, or is gone
 * from the table (the collector frees the slot of a dead producer, and of a closed one once its messages were
 * taken). It looks every {@linkcode LOOK_MS} ms of waiting. The adapter also lets `close()` deliver the sends still
 * waiting for room (a producer's close rejects them). Everything else (limits, order, abort, timeout, `ClosedError`
 * after the peer's close) is the library's own.
 */
import { ClosedError, TimeoutError } from "../../errors.ts";
import type { Collector } from "../../shm/mpsc.ts";
import type { Producer } from "../../shm/mpsc_producer.ts";
import { SharedMemory } from "../../shm/segment.ts";
import { collector, producer } from "../../transports/shm_mpsc.ts";
import type { ChannelOptions, ReceiveOptions, SendOptions } from "../../transports/channel.ts";
import type { ChannelCases } from "./channel.ts";
import { DUPLEX_CAPACITY, duplexCapabilities, DuplexShmChannel, segmentNameIn } from "./duplex_shm.ts";
import { CONNECT_TIMEOUT, createWithPeer, type Fixture, remoteOf } from "./fixtures.ts";

/** How often a waiting receive looks whether the peer's producer left. */
const LOOK_MS = 50;

/** Every collector name the fixture handed out (each collector removes its own on close). */
export const mpscNames: Set<string> = new Set();

function collectorName(): string {
  return segmentNameIn(mpscNames, "mp");
}

const limit = (options: ChannelOptions) => options.maxMessage === undefined ? {} : { maxMessage: options.maxMessage };

/** One side: receives on `col` from the peer's producer in slot `peer`, sends with `out` into the peer's collector. */
class MpscChannel extends DuplexShmChannel {
  readonly #col: Collector;
  readonly #out: Producer;
  readonly #peer: number;
  /** The last send: close() lets it settle first (sends settle in order). */
  #last: Promise<void> = Promise.resolve();

  constructor(col: Collector, out: Producer, peer: number) {
    super();
    this.#col = col;
    this.#out = out;
    this.#peer = peer;
  }

  send(message: Uint8Array, options?: SendOptions): Promise<void> {
    // Between close() and the producer's close (which waits for the sends before it), refuse as the producer will.
    if (this.closedHere) return Promise.reject(new ClosedError("Cannot send on the many-producer pair: it is closed"));
    const sent = this.#out.send(message, options);
    this.#last = sent.catch(() => {});
    return sent;
  }

  /** Whether the peer's producer left with nothing of it still to take. */
  #peerGone(): boolean {
    const p = this.#col.producers().find((p) => p.slot === this.#peer);
    return p === undefined || (p.state === "closed" && p.sent === p.received);
  }

  async receive(options: ReceiveOptions = {}): Promise<Uint8Array> {
    const { signal, timeout } = options;
    if (this.ended && !this.closedHere) {
      throw new ClosedError("Cannot receive on the many-producer pair: the peer left");
    }
    if (timeout !== undefined && !(timeout >= 0)) return (await this.#col.receive(options)).data; // its RangeError
    const deadline = timeout === undefined ? Infinity : performance.now() + timeout;
    for (;;) {
      const left = Math.max(0, Math.min(LOOK_MS, deadline - performance.now()));
      try {
        return (await this.#col.receive(signal === undefined ? { timeout: left } : { signal, timeout: left })).data;
      } catch (e) {
        if (!(e instanceof TimeoutError)) throw e;
        if (this.#peerGone()) {
          this.ended = true;
          throw new ClosedError("Cannot receive on the many-producer pair: the peer's producer closed or died");
        }
        if (performance.now() >= deadline) throw e;
      }
    }
  }

  /** Lets the sends before it settle, then closes the producer (the peer takes the rest) and the collector. */
  protected async closeSides(): Promise<void> {
    await this.#last;
    await this.#out.close();
    await this.#col.close();
  }
}

/** The slot of the first producer of `col`, once there is one: the peer's. */
async function peerSlot(col: Collector, what: string, signal?: AbortSignal): Promise<number> {
  const deadline = Date.now() + CONNECT_TIMEOUT;
  for (;;) {
    const first = col.producers()[0];
    if (first !== undefined) return first.slot;
    signal?.throwIfAborted();
    if (Date.now() > deadline) throw new Error(`${what}: no producer after ${CONNECT_TIMEOUT} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const removeName = (name: string) => SharedMemory.unlink(name).catch(() => {});

export const fixture: Fixture & ChannelCases = {
  name: "shm_mpsc",
  capabilities: duplexCapabilities,
  async pair(options = {}) {
    // One thread holds both sides: spinning cannot see the other side move, so do not spin.
    const o = { ...limit(options), capacity: DUPLEX_CAPACITY, spin: 0 };
    const [ab, ba] = [collectorName(), collectorName()];
    const made: { close(): Promise<void> }[] = [];
    try {
      const colA = await collector(ab, o);
      made.push(colA);
      const colB = await collector(ba, o);
      made.push(colB);
      const intoB = await producer(ba, { spin: 0 });
      made.push(intoB);
      const intoA = await producer(ab, { spin: 0 });
      const a = new MpscChannel(colA, intoB, intoA.slot);
      const b = new MpscChannel(colB, intoA, intoB.slot);
      return {
        a,
        b,
        async cleanup() {
          await Promise.all([a.close(), b.close()]);
        },
      };
    } catch (e) {
      for (const m of made.reverse()) await m.close().catch(() => {});
      throw e;
    }
  },
  async remote(rtName, flags, options = {}) {
    const [mine, theirs] = [collectorName(), collectorName()];
    const col = await collector(mine, { ...limit(options), capacity: DUPLEX_CAPACITY });
    // The child makes its collector, then its producer into `mine`; a producer into `theirs` finds the child's slot.
    const { channel, child } = await createWithPeer(
      async (signal) => {
        const out = await producer(theirs, { wait: CONNECT_TIMEOUT, signal });
        const slot = await peerSlot(col, `shm_mpsc "${mine}"`, signal).catch(async (e) => {
          await out.close();
          throw e;
        });
        return new MpscChannel(col, out, slot);
      },
      rtName,
      ["shm_mpsc", `${mine},${theirs}`, ...flags],
      async () => {
        await col.close();
        await removeName(theirs);
      },
    );
    return remoteOf(channel, child, () => removeName(theirs)); // left by a child that was killed
  },
  async childSide(address, options) {
    const [theirs, mine] = address.split(",") as [string, string];
    const col = await collector(mine, { ...limit(options), capacity: DUPLEX_CAPACITY });
    try {
      const out = await producer(theirs, { wait: CONNECT_TIMEOUT });
      const slot = await peerSlot(col, `shm_mpsc child "${mine}"`).catch(async (e) => {
        await out.close();
        throw e;
      });
      return new MpscChannel(col, out, slot);
    } catch (e) {
      await col.close();
      throw e;
    }
  },
  raw: "a many-producer ring has no byte stream; tests/shm_mpsc.test.ts writes torn, bogus and impossible records " +
    "instead",
  noReceiveLimit: "a collector's maxMessage is in its segment, and its producers reject a larger message at send(): " +
    "a receiver is never sent one",
};
