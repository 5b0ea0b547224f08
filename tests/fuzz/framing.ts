/**
 * Fuzz target: the length framing of stream channels (`transports/framing.ts` `FrameDecoder`), fed what a hostile
 * peer can write on a socket: well-formed frame streams, the same with bytes flipped or set and hostile lengths
 * written over their headers (0, maxMessage, maxMessage + 1, 64 MiB - 1, 2^32 - 1), cut short or extended, and
 * noise; cut into chunks anywhere (empty chunks included), owned or not.
 *
 * For each input the decoder only returns or throws `ProtocolError` (`MessageTooLargeError` included, only for a
 * length over maxMessage). It never hands out more payload bytes than the stream held, nor a payload over
 * maxMessage, and the memory it holds for an unfinished frame never exceeds twice the bytes received plus 64 KiB,
 * whatever length the frame announced. A stream left intact decodes to exactly the messages it was made of.
 *
 * @module
 */
import fc from "fast-check";
import { MessageTooLargeError, ProtocolError } from "../../errors.ts";
import { encodeFrame, FrameDecoder } from "../../transports/framing.ts";
import { concat, expectOnly, type FuzzTarget, mutateBytes } from "./target.ts";

const MiB = 1024 * 1024;

const message = fc.oneof(
  { weight: 2, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 24 }) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(5000), fc.nat(255)).map(([n, b]) => new Uint8Array(n).fill(b)) },
);

/** A change a hostile peer makes to the stream; `at` is taken modulo the stream length. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({
    kind: fc.constant("length" as const),
    at: fc.nat(),
    length: fc.oneof(fc.constantFrom(0, 1, 0x03ff_ffff, 0x0400_0000, 0xffff_ffff, -1, -2), fc.nat()),
  }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), tail: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

interface Input {
  maxMessage: number;
  messages: Uint8Array[];
  mutations: Mutation[];
  noise: Uint8Array | null;
  cuts: number[];
  owned: boolean;
}

const inputs: fc.Arbitrary<Input> = fc.record({
  maxMessage: fc.oneof(fc.constantFrom(0, 1, 24, 4096), { weight: 3, arbitrary: fc.constant(64 * MiB) }),
  messages: fc.array(message, { maxLength: 30 }),
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant<Mutation[]>([]) }, fc.array(mutation, { maxLength: 4 })),
  noise: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, fc.uint8Array({ maxLength: 64 })),
  cuts: fc.array(fc.nat(), { maxLength: 40 }),
  owned: fc.boolean(),
});

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  if (m.kind !== "length") return mutateBytes(bytes, m);
  // A hostile length written over 4 bytes anywhere (over a header when `at` falls on one).
  const at = bytes.length === 0 ? 0 : m.at % bytes.length;
  const n = m.length >>> 0;
  const quad = [n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
  for (let i = 0; i < 4 && at + i < bytes.length; i++) bytes[at + i] = quad[i]!;
  return bytes;
}

function split(stream: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const points = [...cuts.map((c) => c % (stream.byteLength + 1)), stream.byteLength].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const to of points) {
    chunks.push(stream.slice(from, to));
    from = to;
  }
  return chunks;
}

function run(input: Input): void {
  let stream = input.noise ?? concat(input.messages.map(encodeFrame));
  for (const m of input.mutations) stream = mutate(stream.slice(), m);
  const intact = input.noise === null && input.mutations.length === 0 &&
    input.messages.every((m) => m.byteLength <= input.maxMessage);
  const got: Uint8Array[] = [];
  let gotBytes = 0;
  const decoder = new FrameDecoder(input.maxMessage, (p) => {
    if (p.byteLength > input.maxMessage) throw new Error(`a payload of ${p.byteLength} bytes passed maxMessage`);
    got.push(input.owned ? p : p.slice());
    gotBytes += p.byteLength;
  });
  let received = 0;
  let error: unknown;
  expectOnly([ProtocolError], () => {
    for (const chunk of split(stream, input.cuts)) {
      try {
        decoder.push(chunk, input.owned);
      } catch (e) {
        throw (error = e);
      }
      received += chunk.byteLength;
      if (decoder.held > 2 * received + 64 * 1024) {
        throw new Error(`the decoder holds ${decoder.held} bytes after receiving ${received}`);
      }
    }
    decoder.finish();
  });
  if (error instanceof MessageTooLargeError && !(error.size > input.maxMessage && error.limit === input.maxMessage)) {
    throw new Error(`MessageTooLargeError for ${error.size} bytes with maxMessage ${input.maxMessage}`);
  }
  if (gotBytes > stream.byteLength) {
    throw new Error(`${gotBytes} payload bytes out of a ${stream.byteLength}-byte stream`);
  }
  if (intact) {
    if (got.length !== input.messages.length) {
      throw new Error(`${got.length} messages, expected ${input.messages.length}`);
    }
    for (const [i, m] of input.messages.entries()) {
      const g = got[i]!;
      if (g.byteLength !== m.byteLength || g.some((b, j) => b !== m[j])) throw new Error(`message ${i} differs`);
    }
  }
}

/** The length framing's decoder. */
export const target: FuzzTarget<Input> = { name: "framing", inputs, run };
