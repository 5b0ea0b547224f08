/**
 * Fuzz target: the NATS channel wire decoder (`transports/nats_wire.ts` `readFrame`) and the channel end that acts
 * on what it decodes (`transports/nats_channel.ts`), fed what a hostile peer could publish to a channel's inbox:
 * valid DATA, MORE, CREDIT, END, PING, WELCOME, REFUSE and HELLO messages, mutated (bytes flipped or set, cut,
 * extended), and noise, after a greeting that may announce any window and heartbeat.
 *
 * For each message `readFrame` returns or throws `ProtocolError`, nothing else. The channel never throws out of its
 * message handler (that would reach nats.js), ends only with `ClosedError` (the peer's END or REFUSE) or
 * `ProtocolError` (`MessageTooLargeError` included), delivers no more bytes than the peer sent and no more than
 * its window plus the credit it granted, grants no more credit than the peer used, and publishes nothing but
 * CREDIT, PING, REFUSE and END.
 *
 * No NATS server is needed: the channel runs on a stand-in connection that records what it publishes.
 *
 * @module
 */
import fc from "fast-check";
import { ClosedError, ProtocolError } from "../../mod.ts";
import type { NatsConnectionLike } from "../../runtimes/nats.ts";
import { NatsLink } from "../../transports/nats_link.ts";
import { NatsChannel } from "../../transports/nats_channel.ts";
import { OVERHEAD, readFrame } from "../../transports/nats_wire.ts";
import { expectOnly, type FuzzTarget, mutateBytes } from "./target.ts";

const DATA = 1, CREDIT = 2, END = 3, PING = 4, HELLO = 5, WELCOME = 6, REFUSE = 7, MORE = 8;

function u32(type: number, n: number): Uint8Array {
  const out = new Uint8Array(5);
  out[0] = type;
  new DataView(out.buffer).setUint32(1, n >>> 0);
  return out;
}

function greet(type: number, version: number, window: number, beat: number): Uint8Array {
  const out = new Uint8Array(10);
  const view = new DataView(out.buffer);
  out[0] = type;
  out[1] = version;
  view.setUint32(2, window >>> 0);
  view.setUint32(6, beat >>> 0);
  return out;
}

const withType = (type: number) => (body: Uint8Array) => {
  const out = new Uint8Array(body.byteLength + 1);
  out[0] = type;
  out.set(body, 1);
  return out;
};

const window = fc.oneof(fc.constantFrom(0, 1023, 1024, 4096, 0xffffffff), fc.nat());
const beat = fc.oneof(fc.constantFrom(0, 1, 10, 60_000, 0xffffffff), fc.nat());

/** A body: a few random bytes, or up to 1200 of one value (long ones are what fills a window). */
const body = fc.oneof(
  fc.uint8Array({ maxLength: 16 }),
  fc.tuple(fc.nat(1200), fc.nat(255)).map(([n, b]) => new Uint8Array(n).fill(b)),
);

/** A well-formed message of the format. */
const valid = fc.oneof(
  { weight: 4, arbitrary: body.map(withType(DATA)) },
  { weight: 3, arbitrary: body.map(withType(MORE)) },
  { weight: 2, arbitrary: fc.oneof(fc.nat(2000), fc.nat()).map((n) => u32(CREDIT, n)) },
  fc.constant(new Uint8Array([END])),
  fc.constant(new Uint8Array([PING])),
  fc.tuple(fc.constantFrom(1, 2), window, beat).map(([v, w, b]) => greet(WELCOME, v, w, b)),
  fc.tuple(fc.constantFrom(1, 2), window, beat).map(([v, w, b]) => greet(HELLO, v, w, b)),
  fc.string({ maxLength: 300 }).map((s) => withType(REFUSE)(new TextEncoder().encode(s))),
);

/** One change a hostile peer makes to a well-formed message. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), tail: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

const message = fc.oneof(
  { weight: 6, arbitrary: valid },
  { weight: 3, arbitrary: fc.tuple(valid, mutation).map(([b, m]) => mutateBytes(b.slice(), m)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 16 }) },
);

/** The peer's greeting, this side's settings, and what the peer publishes to this side's inbox. */
const inputs = fc.record({
  peerWindow: fc.oneof(fc.constantFrom(1024, 4096), fc.integer({ min: 1024, max: 0xffffffff })),
  peerBeat: beat,
  window: fc.constantFrom(1024, 4096, 65536),
  maxMessage: fc.oneof(fc.constantFrom(0, 100, 3000), { weight: 3, arbitrary: fc.constant(64 * 1024 * 1024) }),
  waiting: fc.boolean(),
  /** Whether the application reads while messages come (otherwise only afterwards: credit must stop). */
  reading: fc.boolean(),
  messages: fc.oneof(
    fc.array(message, { maxLength: 40 }),
    // A flood: pieces and messages, hardly broken, that only credit holds back.
    fc.array(fc.oneof({ weight: 9, arbitrary: valid.filter((m) => m[0] === DATA || m[0] === MORE) }, message), {
      maxLength: 60,
    }),
  ),
});
type Input = typeof inputs extends fc.Arbitrary<infer I> ? I : never;

/** A stand-in nats.js connection: records what is published, subscriptions do nothing. */
function standIn(): { connection: NatsConnectionLike; sent: Uint8Array[]; close(): void } {
  let closed = false;
  let release = () => {};
  const done = new Promise<void>((r) => (release = r));
  const sent: Uint8Array[] = [];
  const connection: NatsConnectionLike = {
    publish: (_subject, payload) => void sent.push(payload ?? new Uint8Array(0)),
    subscribe: () => ({ unsubscribe() {} }),
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(release()),
    closed: () => done,
    isClosed: () => closed,
    status: () => ({
      // A status stream that ends with the connection and reports nothing before.
      [Symbol.asyncIterator]: () => ({
        next: () => done.then(() => ({ done: true as const, value: undefined })),
      }),
    }),
    info: { max_payload: 1024 * 1024 },
    getServer: () => "stand-in",
  };
  return {
    connection,
    sent,
    close() {
      closed = true;
      release();
    },
  };
}

/** The credit granted in what the channel published. */
function granted(sent: Uint8Array[]): number {
  let n = 0;
  for (const out of sent) {
    if (out[0] === CREDIT && out.byteLength === 5) n += new DataView(out.buffer, out.byteOffset).getUint32(1);
  }
  return n;
}

let shared: ReturnType<typeof standIn> | undefined;
let link: NatsLink | undefined;

async function run(input: Input): Promise<void> {
  // The decoder alone: a frame or ProtocolError.
  for (const m of input.messages) expectOnly([ProtocolError], () => readFrame(m));
  // The channel acting on it.
  shared ??= standIn();
  link ??= NatsLink.wrap(shared.connection);
  shared.sent.length = 0;
  const channel = new NatsChannel(
    link,
    undefined,
    "fuzzed NATS channel",
    "_INBOX.peer",
    { version: 1, window: input.peerWindow, heartbeat: input.peerBeat },
    {
      window: input.window,
      heartbeat: 60_000,
      maxHeartbeat: 60_000,
      inboxPrefix: "_INBOX",
      channel: { maxMessage: input.maxMessage },
    },
    input.waiting,
  );
  const got: Uint8Array[] = [];
  let startReading = () => {};
  const reading = new Promise<void>((r) => (startReading = r));
  if (input.reading) startReading();
  const drained = (async () => {
    await reading;
    for (;;) {
      try {
        got.push(await channel.receive());
      } catch (e) {
        return e;
      }
    }
  })();
  let fed = 0;
  let largest = 0;
  for (const [i, m] of input.messages.entries()) {
    if (m[0] === DATA || m[0] === MORE) {
      fed += m.byteLength - 1 + OVERHEAD;
      largest = Math.max(largest, m.byteLength - 1 + OVERHEAD);
    }
    try {
      channel.onMessage({ subject: "_INBOX.fuzz", data: m });
    } catch (e) {
      throw new Error(`the channel's message handler threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
    }
    if (input.waiting && i === 3) channel.accepted(); // taken from the accept queue mid-way
    await null; // lets the reader take what came, so credit flows as it would
  }
  const ended = channel.closed;
  const creditWhileFed = granted(shared.sent);
  // What is still queued is taken before the close (which would discard it): a few idle microtask turns.
  startReading();
  for (let idle = 0, before = -1; idle < 8; before = got.length) {
    await null;
    idle = got.length === before ? idle + 1 : 0;
  }
  await channel.close();
  const error = await drained;
  if (!(error instanceof ClosedError || error instanceof ProtocolError)) {
    throw new Error(`the channel ended with ${(error as Error)?.name}: ${(error as Error)?.message}`);
  }
  if (!ended && !(error instanceof ClosedError)) throw new Error(`an open channel ended with ${error}`);
  const delivered = got.reduce((n, m) => n + m.byteLength, 0);
  if (delivered > fed) throw new Error(`delivered ${delivered} bytes of ${fed} the peer sent`);
  for (const out of shared.sent) {
    if (out[0] !== CREDIT && out[0] !== PING && out[0] !== REFUSE && out[0] !== END) {
      throw new Error(`published type ${out[0]}`);
    }
  }
  const credit = granted(shared.sent);
  if (credit > fed) throw new Error(`granted ${credit} bytes of credit for ${fed} received`);
  // Credit is enforced: what was taken in fits the window plus what was granted while the peer sent (plus the one
  // piece a sender may send when nothing is outstanding).
  const taken = got.reduce((n, m) => n + m.byteLength + OVERHEAD, 0);
  if (taken > input.window + creditWhileFed + largest) {
    throw new Error(`took ${taken} bytes in with a window of ${input.window} and ${creditWhileFed} granted`);
  }
}

export const target: FuzzTarget<Input> = {
  name: "nats",
  inputs,
  run,
  async close() {
    shared?.close();
    await link?.close();
    shared = undefined;
    link = undefined;
  },
};
