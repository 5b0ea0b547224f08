import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Decoder, Encoder } from "cbor-x";
import { cbor, ProtocolError } from "../mod.ts";

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

test("cbor: values beyond plain data go through cbor-x whole, nested anywhere", () => {
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
