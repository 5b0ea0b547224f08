/**
 * Fuzz target: the line framing of stream channels (`transports/lines.ts` `LineDecoder`), fed what a hostile peer
 * can write on a socket: well-formed NDJSON-like streams, the same with bytes flipped or set (newlines and CRs
 * appearing or vanishing), cut short or extended, long lines with no newline at all, and noise; cut into chunks
 * anywhere (many of one byte included), owned or not.
 *
 * For each input the decoder only returns or throws `MessageTooLargeError`. It never hands out a line over
 * maxMessage, one holding a newline, or more bytes than the stream held; the memory it holds for an unfinished line
 * never exceeds maxMessage + 1 bytes nor twice the bytes received plus 1 KiB, however the stream is cut. A stream
 * left intact decodes to exactly its non-empty lines.
 *
 * @module
 */
import fc from "fast-check";
import { MessageTooLargeError } from "../../errors.ts";
import { LineDecoder } from "../../transports/lines.ts";
import { concat, expectOnly, type FuzzTarget, mutateBytes } from "./target.ts";

const LF = 0x0a;
const CR = 0x0d;
const MiB = 1024 * 1024;

/** A line's bytes: anything but LF and CR (so an intact stream decodes exactly), sometimes long. */
const lineBytes = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.uint8Array({ maxLength: 24 }).map((b) => b.map((x) => (x === LF || x === CR ? 0x20 : x))),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.nat(3000), fc.constantFrom(0x61, 0x7b, 0x00, 0xff)).map(([n, b]) =>
      new Uint8Array(n).fill(b)
    ),
  },
);

const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.constantFrom(LF, CR, 0x00, 0x61) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), tail: fc.uint8Array({ minLength: 1, maxLength: 12 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

interface Input {
  maxMessage: number;
  lines: Uint8Array[];
  crlf: boolean;
  mutations: Mutation[];
  noise: Uint8Array | null;
  cuts: number[];
  /** Feed the stream's first 512 bytes one byte at a time (a trickling peer), the rest at once, instead of at `cuts`. */
  trickle: boolean;
  owned: boolean;
}

const inputs: fc.Arbitrary<Input> = fc.record({
  maxMessage: fc.oneof(fc.constantFrom(0, 1, 24, 4096), { weight: 3, arbitrary: fc.constant(64 * MiB) }),
  lines: fc.array(lineBytes, { maxLength: 20 }),
  crlf: fc.boolean(),
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant<Mutation[]>([]) }, fc.array(mutation, { maxLength: 4 })),
  noise: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, fc.uint8Array({ maxLength: 64 })),
  cuts: fc.array(fc.nat(), { maxLength: 40 }),
  trickle: fc.oneof({ weight: 3, arbitrary: fc.constant(false) }, fc.constant(true)),
  owned: fc.boolean(),
});

function chunks(stream: Uint8Array, input: Input): Uint8Array[] {
  if (input.trickle) {
    const head = Array.from(stream.subarray(0, 512), (b) => new Uint8Array([b]));
    return stream.byteLength > 512 ? [...head, stream.slice(512)] : head;
  }
  const points = [...input.cuts.map((c) => c % (stream.byteLength + 1)), stream.byteLength].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const to of points) {
    out.push(stream.slice(from, to));
    from = to;
  }
  return out;
}

function run(input: Input): void {
  const end = input.crlf ? [CR, LF] : [LF];
  let stream = input.noise ?? concat(input.lines.flatMap((l) => [l, new Uint8Array(end)]));
  for (const m of input.mutations) stream = mutateBytes(stream.slice(), m);
  const intact = input.noise === null && input.mutations.length === 0 &&
    input.lines.every((l) => l.byteLength <= input.maxMessage);
  const got: Uint8Array[] = [];
  let gotBytes = 0;
  const decoder = new LineDecoder(input.maxMessage, (line) => {
    if (line.byteLength > input.maxMessage) throw new Error(`a line of ${line.byteLength} bytes passed maxMessage`);
    if (line.includes(LF)) throw new Error("a line holds a newline");
    got.push(input.owned ? line : line.slice());
    gotBytes += line.byteLength;
  });
  let received = 0;
  expectOnly([MessageTooLargeError], () => {
    for (const chunk of chunks(stream, input)) {
      decoder.push(chunk, input.owned);
      received += chunk.byteLength;
      if (decoder.held > input.maxMessage + 1 || decoder.held > 2 * received + 1024) {
        throw new Error(`the decoder holds ${decoder.held} bytes after receiving ${received}`);
      }
    }
    decoder.finish();
  });
  if (gotBytes > stream.byteLength) throw new Error(`${gotBytes} line bytes out of a ${stream.byteLength}-byte stream`);
  if (intact) {
    const expected = input.lines.filter((l) => l.byteLength > 0);
    if (got.length !== expected.length) throw new Error(`${got.length} lines, expected ${expected.length}`);
    for (const [i, l] of expected.entries()) {
      const g = got[i]!;
      if (g.byteLength !== l.byteLength || g.some((b, j) => b !== l[j])) throw new Error(`line ${i} differs`);
    }
  }
}

/** The line framing's decoder. */
export const target: FuzzTarget<Input> = { name: "lines", inputs, run };
