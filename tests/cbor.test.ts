import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { connect } from "node:net";
import { Decoder, Encoder } from "cbor-x";
import { cbor, cborCodec, ProtocolError, typed, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";

// The reference: cbor-x alone, configured as ipckit configured it before it had its own fast path.
const reference = {
  encoder: new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false }),
  decoder: new Decoder({ useRecords: false, mapsAsObjects: true }),
};
const plain = (bytes: Uint8Array) => new Uint8Array(bytes); // a Node Buffer from cbor-x becomes a plain copy

/** Plain data: what the fast path encodes itself (JSON values, byte strings, undefined, -0, non-JSON numbers). */
const plainData = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(null, undefined, true, false, 0, -0, NaN, Infinity, -Infinity, 2 ** 53 - 1, -(2 ** 53), 2 ** 32),
    fc.integer(),
    fc.double(),
    fc.float(),
    fc.string(),
    fc.string({ unit: "grapheme" }),
    fc.string({ unit: "binary" }),
    fc.string({ minLength: 60, maxLength: 400 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie("value"), { maxLength: 6 }),
    fc.dictionary(fc.string(), tie("value"), { maxKeys: 6, noNullPrototype: true }),
  ),
})).value;

const SEED = Date.now() ^ 0x5eed;

test("cbor: plain data round-trips exactly, including -0, NaN and lone surrogates (property)", () => {
  fc.assert(
    fc.property(plainData, (v) => {
      assert.deepStrictEqual(cbor.decode(cbor.encode(v)), v);
    }),
    { numRuns: 300, seed: SEED, verbose: true },
  );
});

test("cbor: what ipckit writes, cbor-x reads as the same value, and the other way round (property)", () => {
  fc.assert(
    fc.property(plainData, (v) => {
      const ours = cbor.encode(v);
      assert.deepStrictEqual(normalise(reference.decoder.decode(ours), false), normalise(v, false, true));
      assert.deepStrictEqual(cbor.decode(plain(reference.encoder.encode(v))), normalise(v, true));
    }),
    { numRuns: 300, seed: SEED, verbose: true },
  );
});

/**
 * cbor-x reads byte strings as Buffers on Node, writes -0 as the integer 0, and (its guard against prototype
 * pollution) reads a `__proto__` key as `__proto_`: compare modulo those. ipckit keeps `__proto__` as an own
 * property (tested below).
 */
function normalise(v: unknown, zero: boolean, asCborX = false): unknown {
  if (zero && Object.is(v, -0)) return 0;
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map((x) => normalise(x, zero, asCborX));
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [asCborX && k === "__proto__" ? "__proto_" : k, normalise(x, zero, asCborX)]),
    );
  }
  return v;
}

test("cbor: a __proto__ key compares against cbor-x as cbor-x reads it (the property's seed 937690014 case)", () => {
  const v = JSON.parse('{"__proto__": null}');
  assert.deepStrictEqual(normalise(reference.decoder.decode(cbor.encode(v)), false), normalise(v, false, true));
  assert.deepStrictEqual(cbor.decode(plain(reference.encoder.encode(v))), normalise(v, true));
});

test("cbor: the encoding is the standard, shortest one (RFC 8949 examples)", () => {
  const hex = (v: unknown) => [...cbor.encode(v)].map((b) => b.toString(16).padStart(2, "0")).join("");
  assert.equal(hex(0), "00");
  assert.equal(hex(23), "17");
  assert.equal(hex(24), "1818");
  assert.equal(hex(1000), "1903e8");
  assert.equal(hex(1000000), "1a000f4240");
  assert.equal(hex(1000000000000), "fb426d1a94a2000000"); // past 32 bits: a float, as cbor-x writes it
  assert.equal(hex(-1), "20");
  assert.equal(hex(-1000), "3903e7");
  assert.equal(hex(1.5), "fa3fc00000");
  assert.equal(hex(1.1), "fb3ff199999999999a");
  assert.equal(hex(false), "f4");
  assert.equal(hex(null), "f6");
  assert.equal(hex(undefined), "f7");
  assert.equal(hex(""), "60");
  assert.equal(hex("IETF"), "6449455446");
  assert.equal(hex("\u00fc"), "62c3bc");
  assert.equal(hex("\ud800\udd51"), "64f0908591");
  assert.equal(hex(new Uint8Array([1, 2, 3, 4])), "4401020304");
  assert.equal(hex([1, [2, 3], [4, 5]]), "8301820203820405");
  assert.equal(hex({ a: 1, b: [2, 3] }), "a26161016162820203");
  assert.equal(hex("a".repeat(24)), "7818" + "61".repeat(24));
});

test("cbor: reads half-precision floats, 64-bit heads and what it does not write itself", () => {
  const bytes = (h: string) => new Uint8Array(h.match(/../g)!.map((x) => parseInt(x, 16)));
  assert.equal(cbor.decode(bytes("f93c00")), 1);
  assert.equal(cbor.decode(bytes("f97bff")), 65504);
  assert.equal(cbor.decode(bytes("f90001")), 5.960464477539063e-8);
  assert.equal(cbor.decode(bytes("f9fc00")), -Infinity);
  assert.ok(Number.isNaN(cbor.decode(bytes("f97e00"))));
  assert.equal(cbor.decode(bytes("1b000000e8d4a51000")), 1000000000000n); // a 64-bit integer: cbor-x's BigInt
  assert.equal(cbor.decode(bytes("1bffffffffffffffff")), 18446744073709551615n);
  assert.deepEqual(cbor.decode(bytes("9f018202039f0405ffff")), [1, [2, 3], [4, 5]]); // indefinite lengths
  assert.deepEqual(
    cbor.decode(bytes("c074323031332d30332d32315432303a30343a30305a")),
    new Date("2013-03-21T20:04:00Z"),
  );
});

test("cbor: Date, Map, Set, BigInt and typed arrays round-trip, nested anywhere", () => {
  const date = new Date(1700000000000);
  const v = {
    list: [1, new Map<unknown, unknown>([["k", 1], [2, "two"]])],
    when: date,
    big: 2n ** 70n,
    set: new Set([1, 2]),
    floats: new Float64Array([1.5, -2]),
  };
  const back = cbor.decode(cbor.encode(v)) as typeof v;
  assert.equal(back.when.getTime(), date.getTime());
  assert.equal(back.big, 2n ** 70n);
  assert.deepEqual([...back.set], [1, 2]);
  assert.deepEqual([...back.floats], [1.5, -2]);
  assert.deepEqual(back.list[1], new Map<unknown, unknown>([["k", 1], [2, "two"]]));
  assert.deepEqual(cbor.decode(cbor.encode(date)), date);
});

test("cbor: a __proto__ key decodes as an own property, and no prototype is touched", () => {
  const hostile = JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": 1}}}');
  const back = cbor.decode(cbor.encode(hostile)) as Record<string, unknown>;
  assert.equal(Object.getPrototypeOf(back), Object.prototype);
  assert.deepEqual(Object.keys(back), ["__proto__", "constructor"]);
  assert.deepEqual(Object.getOwnPropertyDescriptor(back, "__proto__")?.value, { polluted: "yes" });
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

test("cbor: truncated, trailing and garbage bytes are a ProtocolError, never a wrong value", () => {
  const good = cbor.encode({ a: [1, "two", new Uint8Array(40)], b: 1.1 });
  for (let n = 0; n < good.length; n++) {
    assert.throws(() => cbor.decode(good.subarray(0, n)), ProtocolError, `truncated to ${n} bytes`);
  }
  assert.throws(() => cbor.decode(new Uint8Array([...good, 0])), ProtocolError);
  assert.throws(() => cbor.decode(new Uint8Array([0x5f])), ProtocolError);
  assert.throws(() => cbor.decode(new Uint8Array([0x9a, 0xff, 0xff, 0xff, 0xff])), ProtocolError); // 4 G items
});

test("cbor: each encode returns fresh bytes, also past the reused buffer's size", () => {
  const big = { blob: new Uint8Array(100_000).fill(7), text: "é".repeat(50_000) };
  const a = cbor.encode(big);
  const b = cbor.encode({ n: 1 });
  const back = cbor.decode(a) as typeof big;
  assert.equal(back.blob.length, 100_000);
  assert.equal(back.text, big.text);
  assert.deepEqual(cbor.decode(b), { n: 1 });
});

// ---- Date, Map, Set, BigInt and typed arrays: what ipckit sends beyond plain data ----

/** Plain data plus the values ipckit writes with tags: Date, Map, Set, BigInt and the typed arrays. */
/** What a Map key or a Set item is in the properties below. */
const primitive = fc.oneof(fc.string(), fc.integer(), fc.double(), fc.boolean(), fc.constant(null), fc.bigInt());

const richData = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    plainData,
    fc.date({ noInvalidDate: true }),
    fc.bigInt(),
    fc.bigInt({ min: -(2n ** 300n), max: 2n ** 300n }),
    fc.constantFrom(2n ** 64n - 1n, 2n ** 64n, -(2n ** 64n), -(2n ** 64n) - 1n, 0n, -1n),
    fc.int8Array({ maxLength: 8 }),
    fc.uint8ClampedArray({ maxLength: 8 }),
    fc.int16Array({ maxLength: 8 }),
    fc.uint16Array({ maxLength: 8 }),
    fc.int32Array({ maxLength: 8 }),
    fc.uint32Array({ maxLength: 8 }),
    fc.float32Array({ maxLength: 8, noNaN: true }),
    fc.float64Array({ maxLength: 8, noNaN: true }),
    fc.bigInt64Array({ maxLength: 8 }),
    fc.bigUint64Array({ maxLength: 8 }),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.string(), tie("value"), { maxKeys: 5, noNullPrototype: true }),
    // Keys and items of Maps and Sets are primitives: with object keys, Bun's deepStrictEqual compares them by
    // reference (Node's by value), so the property would test the assertion library rather than the codec.
    fc.array(fc.tuple(primitive, tie("value")), { maxLength: 4 }).map((entries) => new Map(entries)),
    fc.array(primitive, { maxLength: 4 }).map((items) => new Set(items)),
  ),
})).value;

/** A value as cbor-x gives it back, made comparable: Buffers as Uint8Arrays, its `__proto_` key as `__proto__`. */
function comparable(v: unknown): unknown {
  if (v instanceof Uint8Array) return new Uint8Array(v);
  if (Array.isArray(v)) return v.map(comparable);
  if (v instanceof Map) return new Map([...v].map(([k, x]) => [comparable(k), comparable(x)]));
  if (v instanceof Set) return new Set([...v].map(comparable));
  if (v === null || typeof v !== "object" || Object.getPrototypeOf(v) !== Object.prototype) return v;
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k === "__proto_" ? "__proto__" : k, comparable(x)]));
}

test("cbor: plain data plus Date, Map, Set, BigInt and typed arrays round-trips exactly (property)", () => {
  fc.assert(
    fc.property(richData, (v) => {
      assert.deepStrictEqual(cbor.decode(cbor.encode(v)), v);
    }),
    { numRuns: 300, seed: SEED, verbose: true },
  );
});

test("cbor: with cbor-x (older ipckit) both ways, Date, Map, Set, BigInt and typed arrays keep their value (property)", () => {
  fc.assert(
    fc.property(richData, (v) => {
      // What older ipckit (cbor-x) wrote, ipckit now reads as cbor-x read it.
      const theirs = plain(reference.encoder.encode(v));
      assert.deepStrictEqual(comparable(cbor.decode(theirs)), comparable(reference.decoder.decode(theirs)));
      // What ipckit writes, cbor-x reads as the value sent.
      assert.deepStrictEqual(comparable(reference.decoder.decode(cbor.encode(v))), comparable(v));
    }),
    { numRuns: 300, seed: SEED, verbose: true },
  );
});

test("cbor: a far date round-trips to the millisecond where seconds / 1000 alone would be off by one", () => {
  // 4422898687475356 / 1000 * 1000 rounds to ...355: the encoder picks the neighbouring double that reads back.
  for (const ms of [4422898687475356, 4475208676559939, -8.64e15, 8.64e15, -1, 1, 1.7e12 + 123]) {
    const back = cbor.decode(cbor.encode(new Date(ms))) as Date;
    assert.equal(back.getTime(), ms);
    assert.equal((reference.decoder.decode(cbor.encode(new Date(ms))) as Date).getTime(), ms, "cbor-x reads it too");
  }
  assert.ok(Number.isNaN((cbor.decode(cbor.encode(new Date(NaN))) as Date).getTime()));
});

// ---- a hostile peer: hand-made bytes, each refused with a ProtocolError that says what ----

/** Bytes from hex, spaces allowed: the messages below are written by hand, not by an encoder. */
const hex = (h: string) => new Uint8Array((h.replace(/\s+/g, "").match(/../g) ?? []).map((x) => parseInt(x, 16)));
const ascii = (s: string) => [...new TextEncoder().encode(s)].map((b) => b.toString(16).padStart(2, "0")).join("");
/** A head (major type, argument) in its 4-byte-argument form, as a hostile peer writes it. */
const head32 = (major: number, n: number) => [(major << 5) | 26, n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];

/** `open` n times, then `middle`, then `close` n times. */
function repeated(open: Uint8Array, middle: Uint8Array, close: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array((open.length + close.length) * n + middle.length);
  for (let i = 0; i < n; i++) out.set(open, i * open.length);
  out.set(middle, open.length * n);
  for (let i = 0; i < n; i++) out.set(close, open.length * n + middle.length + i * close.length);
  return out;
}

function refused(bytes: Uint8Array, message: RegExp, codec = cbor): void {
  assert.throws(() => codec.decode(bytes), (e: Error) => {
    assert.ok(e instanceof ProtocolError, `${e?.name}: ${e?.message}`);
    assert.match(e.message, /^Cannot decode a CBOR message of \d+ bytes: at byte \d+, /);
    assert.match(e.message, message);
    return true;
  });
  // The decoder keeps nothing of a refused message: the next one decodes.
  assert.deepEqual(codec.decode(hex("a2 6161 01 6162 82 02 03")), { a: 1, b: [2, 3] });
}

test("cbor: the 60-byte RegExp message (/^(a+)+$/, tag 27) is refused, never built", () => {
  // [0, "call", 1, "match", [tag 27 ["RegExp", "^(a+)+$", ""], "aaaaaaaaaaaaaaaaaaaa!"]]: an RPC call's shape.
  const bytes = hex(
    "85 00 64" + ascii("call") + "01 65" + ascii("match") + "82 d8 1b 83 66" + ascii("RegExp") + "67" +
      ascii("^(a+)+$") + "60 78 18" + ascii("a".repeat(23) + "!"),
  );
  assert.equal(bytes.length, 60);
  refused(bytes, /tag 27 \(an object built by a constructor: RegExp, Error or a class instance\) is refused/);
  refused(hex("d8 1b 82 65" + ascii("Error") + "61 78"), /tag 27/);
});

test("cbor: RegExp (tag 35), shared and cyclic references (28, 29) and cbor-x records are refused by name", () => {
  refused(hex("d8 23 67" + ascii("^(a+)+$")), /tag 35 \(a regular expression\) is refused/);
  refused(hex("d8 1c 81 d8 1d 00"), /tag 28 \(a shared or cyclic reference\) is refused/); // [itself]
  refused(hex("82 d8 1c a0 d8 1d 00"), /tag 28/); // one object twice
  refused(hex("d9 df ff 83 19 e0 00 81 61 61 01"), /tag 57343 \(a cbor-x record or structure\) is refused/);
  refused(hex("d8 69 83 19 e0 00 81 61 61 01"), /tag 105 \(a cbor-x record or structure\) is refused/);
  refused(hex("d8 33 84 80 80 80 00"), /tag 51 \(a cbor-x packed value\) is refused/);
  refused(hex("c4 82 21 19 6a b3"), /tag 4 \(a decimal fraction or bigfloat\) is refused/);
  refused(hex("d8 18 41 00"), /tag 24 \(embedded CBOR\) is refused/);
});

test("cbor: unknown tags are refused, whatever the size of their number", () => {
  refused(hex("d8 2a 00"), /tag 42 \(unknown\) is refused: plain data only by default/);
  refused(hex("d9 ff fe 00"), /tag 65534/);
  refused(hex("da 00 01 00 00 00"), /tag 65536 \(unknown\)/);
  refused(hex("db 00 00 00 01 00 00 00 00 00"), /tag 4294967296 \(unknown\)/);
  refused(hex("d8 54 42 00 3c"), /tag 84 \(a float16, float128 or reserved typed array\) is refused/);
  refused(hex("d8 4c 40"), /tag 76/);
});

test("cbor: a bignum past maxBignumBytes is refused from its head, before any of it is read", () => {
  // Tag 2 over 192 KiB: cbor-x built it in quadratic time (over 58 s of a blocked event loop).
  const n = 192 * 1024;
  const bytes = new Uint8Array(6 + n).fill(0xff);
  bytes.set([0xc2, ...head32(2, n)]);
  refused(bytes, /a bignum of 196608 bytes is longer than the limit of 4096 \(maxBignumBytes\)/);
  bytes[0] = 0xc3;
  refused(bytes, /a bignum of 196608 bytes/);
  refused(hex("c2 5a 00 01 00 00"), /a bignum of 65536 bytes/); // the same lie with 5 bytes
  refused(hex("c2 01"), /a bignum \(tag 2 or 3\) must hold a byte string/);
  refused(hex("c2 5f 41 01 ff"), /must hold a byte string/);
  // At the limit: decoded, exactly.
  const atLimit = new Uint8Array(4 + 4096).fill(0xff);
  atLimit.set([0xc2, 0x59, 0x10, 0x00]);
  assert.equal(cbor.decode(atLimit), 2n ** (8n * 4096n) - 1n);
});

test("cbor: a 1 MiB bignum decodes in one linear step when maxBignumBytes allows it", () => {
  const n = 1 << 20;
  const big = cborCodec({ maxBignumBytes: n });
  const bytes = new Uint8Array(6 + n);
  bytes.set([0xc3, ...head32(2, n), 0x01]);
  bytes[bytes.length - 1] = 0x05;
  assert.equal(big.decode(bytes), -1n - ((1n << BigInt(8 * (n - 1))) + 5n));
  const back = big.decode(big.encode(2n ** 8000000n + 3n)) as bigint;
  assert.equal(back, 2n ** 8000000n + 3n);
  assert.throws(() => cbor.encode(2n ** 8000000n), /Cannot encode a BigInt of 1000001 bytes as CBOR: .*maxBignumBytes/);
});

test("cbor: nesting past maxDepth is refused (arrays, maps, tags, indefinite lengths), a million levels deep too", () => {
  const wrappers: [string, string][] = [["81", ""], ["a1 61 61", ""], ["c1", ""], ["9f", "ff"], ["d9 01 02 81", ""]];
  for (const [open, close] of wrappers) {
    refused(repeated(hex(open), hex("00"), hex(close), 1_000_000), /nests deeper than 500/);
  }
  // 500 levels decode; 501 do not; a deeper limit by option.
  assert.deepEqual(cbor.decode(hex("81".repeat(499) + "80")), JSON.parse("[".repeat(500) + "]".repeat(500)));
  refused(hex("81".repeat(500) + "80"), /nests deeper than 500/);
  assert.ok(cborCodec({ maxDepth: 2000 }).decode(hex("81".repeat(1999) + "80")));
  refused(hex("81".repeat(3) + "80"), /nests deeper than 3 levels/, cborCodec({ maxDepth: 3 }));
});

test("cbor: declared lengths past the input are refused before anything is allocated for them", () => {
  refused(hex("ba 00 0f 42 40 61 61 01 61 62 02"), /a map of 1000000 entries cannot fit/); // 1M entries, 11 bytes
  refused(hex("bb 00 00 00 00 00 0f 42 40 00"), /a map of 1000000 entries cannot fit/);
  refused(hex("9a ff ff ff ff 00"), /an array of 4294967295 items cannot fit/);
  refused(hex("9b 00 00 00 01 00 00 00 00 00"), /an array of 4294967296 items cannot fit/);
  refused(hex("5a ff ff ff f0 00"), /it ends inside an item/); // a 4 GiB byte string
  refused(hex("5b 00 00 10 00 00 00 00 00 00"), /it ends inside an item/);
  refused(hex("7a 7f ff ff ff 61"), /it ends inside an item/);
  refused(hex("d9 01 03 ba 00 0f 42 40 00 00"), /a map of 1000000 entries cannot fit/); // as a Map
  refused(hex("d8 46 5a 7f ff ff ff 00"), /it ends inside an item/); // a typed array
  // Nested headers that each claim what is left: together they may not claim more than the message holds.
  const levels = 200;
  const size = 5 * levels + 100_000;
  const nested = new Uint8Array(size);
  for (let i = 0; i < levels; i++) nested.set(head32(4, size - 5 * (i + 1)), 5 * i);
  refused(nested, /at byte 10, an array of \d+ items cannot fit/);
});

test("cbor: indefinite-length arrays and maps decode linearly; indefinite strings and stray breaks are refused", () => {
  assert.deepEqual(cbor.decode(hex("9f 01 9f 02 03 ff 80 ff")), [1, [2, 3], []]);
  assert.deepEqual(cbor.decode(hex("bf 61 61 01 61 62 9f ff ff")), { a: 1, b: [] });
  assert.deepEqual(cbor.decode(hex("d9 01 03 bf 01 02 ff")), new Map([[1, 2]]));
  assert.deepEqual(cbor.decode(hex("d9 01 02 9f 01 01 ff")), new Set([1]));
  const many = new Uint8Array(1_000_002).fill(0xf6);
  many[0] = 0x9f;
  many[many.length - 1] = 0xff;
  assert.equal((cbor.decode(many) as unknown[]).length, 1_000_000);
  refused(hex("5f 41 00 ff"), /an indefinite length where none is allowed/);
  refused(hex("7f 61 61 ff"), /an indefinite length where none is allowed/);
  refused(hex("9f 01 02"), /it ends inside an item/);
  refused(hex("bf 61 61 ff"), /a break \(0xff\) outside an indefinite-length item/);
  refused(hex("ff"), /a break/);
  refused(hex("82 01 ff"), /a break/);
  refused(hex("1f"), /an indefinite length where none is allowed/);
});

test("cbor: simple values, reserved heads and trailing bytes are refused", () => {
  refused(hex("e0"), /the simple value 0 is refused/);
  refused(hex("f8 20"), /the simple value 32 is refused/);
  refused(hex("1c"), /additional information 28 is reserved/);
  refused(hex("7e"), /additional information 30 is reserved/);
  refused(hex("01 02"), /at byte 1, the item ends 1 bytes before the message does/);
  refused(new Uint8Array(0), /it ends inside an item/);
  refused(hex("f8"), /it ends inside an item/);
});

test("cbor: map keys: numbers become strings as cbor-x made them, others only in a Map, __proto__ stays own", () => {
  assert.deepEqual(cbor.decode(hex("a3 01 61 61 f5 02 3b 00 00 00 00 00 00 00 00 03")), { 1: "a", true: 2, "-1": 3 });
  refused(hex("a1 81 01 02"), /a map key that is not a string, number, boolean or null/);
  refused(hex("a1 41 01 02"), /a map key/);
  refused(hex("a1 c1 00 02"), /a map key/);
  refused(hex("a1 c2 49 01 00 00 00 00 00 00 00 00 02"), /a map key/); // a bignum: no decimal string for it
  refused(hex("82 00 a1 d8 2a 00 01"), /at byte 3, tag 42/); // the offset is the tag's own
  const m = cbor.decode(hex("d9 01 03 a2 81 01 02 41 07 03")) as Map<unknown, unknown>;
  assert.deepEqual([...m], [[[1], 2], [new Uint8Array([7]), 3]]);
  // {"__proto__": {"polluted": 1}} by hand, definite and indefinite: an own property, no prototype changed.
  for (
    const h of [
      "a1 69" + ascii("__proto__") + "a1 68" + ascii("polluted") + "01",
      "bf 69" + ascii("__proto__") + "a1 68" + ascii("polluted") + "01 ff",
    ]
  ) {
    const back = cbor.decode(hex(h)) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(back, "__proto__")?.value, { polluted: 1 });
    assert.equal(back.polluted, undefined);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  }
});

test("cbor: tags that carry plain values are checked: dates, typed arrays, Sets and Maps hold what they must", () => {
  assert.deepEqual(cbor.decode(hex("c1 fb 41 d9 54 fc 40 07 df 3b")), new Date(1700000000123));
  assert.deepEqual(cbor.decode(hex("c1 3a 00 01 51 7f")), new Date(-86400000));
  refused(hex("c1 61 31"), /tag 1 \(a date\) must hold a number of seconds/);
  refused(hex("c1 1b 00 00 00 00 00 00 00 01"), /tag 1/); // a BigInt is not a number of seconds
  refused(hex("c0 78 41" + "31".repeat(65)), /tag 0 \(a date\) must hold a date-time string/);
  assert.deepEqual(cbor.decode(hex("d8 45 44 01 00 02 00")), new Uint16Array([1, 2])); // little-endian
  assert.deepEqual(cbor.decode(hex("d8 41 44 00 01 00 02")), new Uint16Array([1, 2])); // big-endian
  assert.deepEqual(cbor.decode(hex("d8 52 48 3f f8 00 00 00 00 00 00")), new Float64Array([1.5]));
  assert.deepEqual(cbor.decode(hex("82 00 d8 56 48 00 00 00 00 00 00 f8 3f")), [0, new Float64Array([1.5])]); // unaligned
  assert.deepEqual(cbor.decode(hex("d8 40 42 01 02")), new Uint8Array([1, 2]));
  refused(hex("d8 46 43 00 00 00"), /tag 70 holds 3 bytes, not a whole number of 4-byte elements/);
  refused(hex("d8 46 80"), /tag 70 \(a typed array\) must hold a byte string/);
  refused(hex("d9 01 02 a0"), /tag 258 \(a Set\) must hold an array/);
  refused(hex("d9 01 03 80"), /tag 259 \(a Map\) must hold a map/);
  assert.deepEqual(cbor.decode(hex("d9 d9 f7 01")), 1); // self-described CBOR: no meaning
});

test("cbor: 64-bit heads read as cbor-x reads them, and a 64-bit length is a length", () => {
  assert.equal(cbor.decode(hex("1b 00 00 00 00 00 00 00 05")), 5n);
  assert.equal(cbor.decode(hex("3b ff ff ff ff ff ff ff ff")), -(2n ** 64n));
  assert.deepEqual(cbor.decode(hex("5b 00 00 00 00 00 00 00 02 aa bb")), new Uint8Array([0xaa, 0xbb]));
  assert.deepEqual(cbor.decode(hex("9b 00 00 00 00 00 00 00 01 01")), [1]);
  assert.equal(cbor.decode(hex("fb 7f f0 00 00 00 00 00 00")), Infinity);
});

test("cbor: the encoder refuses what the decoder refuses, with a TypeError at the sender", () => {
  for (const v of [/^(a+)+$/, new Error("x"), Symbol("s"), () => 1, new WeakMap(), Promise.resolve()]) {
    assert.throws(
      () => cbor.encode({ v }),
      (e: Error) => e instanceof TypeError && /^Cannot encode a /.test(e.message),
    );
  }
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.throws(() => cbor.encode(cyclic), /Cannot encode a value nested deeper than 500 levels as CBOR/);
  const shared = { x: 1 };
  assert.deepEqual(cbor.decode(cbor.encode([shared, shared])), [{ x: 1 }, { x: 1 }]); // twice, not a reference
  // Class instances and iterables: plain data, as cbor-x wrote them.
  class Point {
    constructor(public x: number, public y: number) {}
    get norm() {
      return Math.hypot(this.x, this.y);
    }
  }
  assert.deepEqual(cbor.decode(cbor.encode(new Point(3, 4))), { x: 3, y: 4 });
  assert.deepEqual(cbor.decode(cbor.encode(new Map([[1, 2]]).keys())), [1]);
  assert.deepEqual(cbor.decode(cbor.encode(new Float64Array([1, 2]).buffer)), hex("000000000000f03f 0000000000000040"));
});

test("cborCodec({ extended: true }) carries RegExp and Error between trusted peers, and plain data as before", () => {
  const trusted = cborCodec({ extended: true });
  const back = trusted.decode(trusted.encode({ re: /^a+$/g, e: new RangeError("r"), d: new Date(5) })) as {
    re: RegExp;
    e: Error;
    d: Date;
  };
  assert.equal(String(back.re), "/^a+$/g");
  assert.equal(back.e.message, "r");
  assert.equal(back.d.getTime(), 5);
  assert.equal((trusted.decode(hex("d8 23 63" + ascii("a+b"))) as { tag: number }).tag, 35); // a cbor-x Tag
  assert.deepEqual(trusted.decode(cbor.encode({ a: [1, -0] })), { a: [1, -0] });
  assert.throws(() => trusted.decode(hex("82 01")), ProtocolError);
});

test("cborCodec() checks its options", () => {
  assert.throws(() => cborCodec({ extend: true } as never), /Cannot create a CBOR codec: unknown option "extend"/);
  assert.throws(() => cborCodec({ extended: "yes" } as never), TypeError);
  assert.throws(() => cborCodec({ maxDepth: "9" } as never), TypeError);
  assert.throws(() => cborCodec({ maxDepth: 0 }), RangeError);
  assert.throws(() => cborCodec({ maxDepth: 2001 }), RangeError);
  assert.throws(() => cborCodec({ maxDepth: 1.5 }), RangeError);
  assert.throws(() => cborCodec({ maxBignumBytes: -1 }), RangeError);
  assert.throws(() => cborCodec(null as never), TypeError);
  assert.equal(cborCodec().name, "cbor");
});

test("cbor: a getter that encodes while a value is being encoded gets its own bytes", () => {
  const inner = {
    get x() {
      return cbor.encode({ y: [1, 2] });
    },
  };
  const back = cbor.decode(cbor.encode({ a: "before", inner, b: "after" })) as { inner: { x: Uint8Array } };
  assert.deepEqual(back, { a: "before", inner: { x: cbor.encode({ y: [1, 2] }) }, b: "after" });
  assert.deepEqual(cbor.decode(back.inner.x), { y: [1, 2] });
});

test("typed(): a raw peer's hostile CBOR frames each reject one receive(), and the channel goes on", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  const listener = await unix.listen(`${dir}/s.sock`);
  const raw = connect(`${dir}/s.sock`);
  try {
    const ch = typed(await listener.accept());
    const frame = (payload: Uint8Array) => new Uint8Array([...head32(0, payload.length).slice(1), ...payload]);
    const hostile = [
      hex("d8 1b 83 66" + ascii("RegExp") + "67" + ascii("^(a+)+$") + "60"), // a RegExp
      hex("c2 5a 00 03 00 00"), // a 192 KiB bignum, declared
      hex("ba 00 0f 42 40 00 00 00 00 00"), // a million map entries in 10 bytes
      hex("81".repeat(10_000) + "00"), // 10 000 levels
      hex("d8 1c 81 d8 1d 00"), // a cycle
    ];
    for (const m of hostile) raw.write(frame(m));
    raw.write(frame(hex("a1 62 6f 6b f5"))); // {ok: true}
    for (let i = 0; i < hostile.length; i++) {
      await assert.rejects(ch.receive({ timeout: 30_000 }), ProtocolError);
    }
    assert.deepEqual(await ch.receive({ timeout: 30_000 }), { ok: true });
    await ch.close();
  } finally {
    raw.destroy();
    await listener.close();
    await rt.removeDir(dir);
  }
});

test("cbor: short ASCII strings read back exact when they share the decoder's cache slots (collisions, 4000 names)", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 16 }),
        {
          minLength: 1,
          maxLength: 4000,
        },
      ),
      (names) => {
        // Encoded as keys and as values, decoded twice in a different order: each comes back as itself.
        const encoded = names.map((n) => cbor.encode([n, { [n]: n }]));
        for (const order of [encoded, [...encoded].reverse()]) {
          const back = order.map((b) => cbor.decode(b) as [string, Record<string, string>]);
          const expected = order === encoded ? names : [...names].reverse();
          back.forEach(([s, o], i) => {
            assert.equal(s, expected[i]);
            assert.deepEqual(Object.entries(o), [[expected[i], expected[i]]]);
          });
        }
      },
    ),
    { numRuns: 20, seed: SEED, verbose: true },
  );
});
