/**
 * Fuzz target: the `cbor` codec's decoder (`transports/cbor_decode.ts`), fed what a hostile peer could send: valid
 * encodings of plain data, Date, Map, Set, BigInt and typed arrays, mutated (bytes flipped, replaced, inserted,
 * dropped, heads spliced in, truncated), hostile heads (huge declared lengths, deep nesting, refused tags) and noise.
 *
 * For each input the decoder returns or throws `ProtocolError`, nothing else. What it returns ipckit can send on:
 * encoding it succeeds, and decoding that gives the same bytes again when encoded (a value that survives one trip
 * survives every trip).
 *
 * @module
 */
import fc from "fast-check";
import { cbor, ProtocolError } from "../../mod.ts";
import { expectOnly, type FuzzTarget, mutateBytes } from "./target.ts";

/** Values ipckit sends: plain data and the tagged types, small. */
const values = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.constantFrom(null, undefined, true, false, 0, -0, NaN, Infinity, 2 ** 32, -(2 ** 53)),
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 40 }),
    fc.uint8Array({ maxLength: 40 }),
    fc.date(),
    fc.bigInt({ min: -(2n ** 200n), max: 2n ** 200n }),
    fc.float64Array({ maxLength: 4 }),
    fc.int16Array({ maxLength: 4 }),
    fc.bigUint64Array({ maxLength: 2 }),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 10 }), tie("value"), { maxKeys: 5 }),
    fc.array(fc.tuple(tie("value"), tie("value")), { maxLength: 3 }).map((e) => new Map(e)),
    fc.array(tie("value"), { maxLength: 3 }).map((e) => new Set(e)),
  ),
})).value;

/** A head a hostile peer likes: a big or 64-bit length, an indefinite length, a refused or checked tag, a break. */
const hostileHead = fc.oneof(
  fc.constantFrom(
    [0x9a, 0xff, 0xff, 0xff, 0xff], // array of 4 G items
    [0xba, 0x00, 0x0f, 0x42, 0x40], // map of 1 M entries
    [0x5b, 0, 0, 0, 1, 0, 0, 0, 0], // 4 GiB byte string, 64-bit head
    [0xc2, 0x5a, 0x00, 0x03, 0x00, 0x00], // 192 KiB bignum
    [0x9f],
    [0xbf],
    [0x5f],
    [0x7f],
    [0xff],
    [0xd8, 0x1b], // tag 27
    [0xd8, 0x1c], // tag 28
    [0xd8, 0x1d], // tag 29
    [0xd8, 0x23], // tag 35
    [0xd9, 0x01, 0x02], // Set
    [0xd9, 0x01, 0x03], // Map
    [0xd8, 0x46], // Uint32Array
    [0xc1], // date
    [0xf8, 0x20], // simple value
  ),
  fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 1, maxLength: 9 }),
);

/** One mutation of `bytes`. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("drop" as const), at: fc.nat(), n: fc.nat(8) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), head: hostileHead }),
  fc.record({ kind: fc.constant("nest" as const), head: fc.constantFrom(0x81, 0x9f, 0xc1, 0xa1), n: fc.nat(3000) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  if (m.kind === "flip" || m.kind === "set" || m.kind === "cut") return mutateBytes(bytes, m);
  const at = bytes.length === 0 || m.kind === "nest" ? 0 : m.at % bytes.length;
  switch (m.kind) {
    case "drop":
      return new Uint8Array([...bytes.subarray(0, at), ...bytes.subarray(at + m.n)]);
    case "insert":
      return new Uint8Array([...bytes.subarray(0, at), ...m.head, ...bytes.subarray(at)]);
    case "nest": // wrap in n levels of arrays, indefinite arrays, dates or maps
      return new Uint8Array([...new Array(m.n).fill(m.head === 0xa1 ? [0xa1, 0x61, 0x6b] : [m.head]).flat(), ...bytes]);
  }
}

const mutated = fc.tuple(values, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([v, ms]) =>
  ms.reduce<Uint8Array>((b, m) => mutate(b, m), cbor.encode(v).slice())
);

/** The cbor target. */
export const target: FuzzTarget<Uint8Array> = {
  name: "cbor",
  inputs: fc.oneof(
    { arbitrary: mutated, weight: 6 },
    { arbitrary: values.map((v) => cbor.encode(v)), weight: 1 },
    {
      arbitrary: fc.tuple(hostileHead, fc.uint8Array({ maxLength: 64 })).map(([h, t]) => new Uint8Array([...h, ...t])),
      weight: 2,
    },
    { arbitrary: fc.uint8Array({ maxLength: 256 }), weight: 1 },
  ),
  run(input) {
    let decoded: { value: unknown } | undefined;
    expectOnly([ProtocolError], () => (decoded = { value: cbor.decode(input) }));
    if (decoded === undefined) return;
    // What was decoded can be sent on, and one trip is every trip.
    const once = cbor.encode(decoded.value);
    const twice = cbor.encode(cbor.decode(once));
    if (once.length !== twice.length || once.some((b, i) => b !== twice[i])) {
      throw new Error(`re-encoding changed the bytes of a decoded ${input.length}-byte input`);
    }
  },
};
