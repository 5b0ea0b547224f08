/**
 * The parts of an RPC peer's round trip that stand in for general ones, each held against what it replaces:
 * rpc/wire_cbor.ts against the `cbor` codec (the same bytes out for CALL and RESULT, the same values or the same error
 * back from any bytes, including hostile ones made by mutating real messages), and rpc/pending.ts against a Map.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import { cbor } from "../mod.ts";
import { decodeMessage, decodeMessageAt, encodeCall, encodeResult } from "../rpc/wire_cbor.ts";
import { PendingCalls } from "../rpc/pending.ts";

const SEED = Date.now() ^ 0x3d1e;

const plainData = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    fc.constantFrom(null, undefined, true, false, 0, -0, NaN, Infinity, 2 ** 32, 2 ** 53 - 1, -(2 ** 31)),
    fc.integer(),
    fc.double(),
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.uint8Array({ maxLength: 64 }),
    fc.int32Array({ maxLength: 4 }),
    fc.float64Array({ maxLength: 3, noDefaultInfinity: true, noNaN: true }),
    fc.array(tie("value"), { maxLength: 5 }),
    fc.dictionary(fc.string(), tie("value"), { maxKeys: 4, noNullPrototype: true }),
  ),
})).value;

/**
 * Ids on every head size, past 2^32 (written as floats there, as the codec does), and the ones a hostile peer sends
 * and a server answers with: 0, -0, negative.
 */
const ids = fc.oneof(
  fc.integer({ min: 1, max: 23 }),
  fc.constantFrom(0, -0, -1, -24, -(2 ** 32), 2 ** 32 - 1, 2 ** 32),
  fc.integer({ min: -(2 ** 40), max: -1 }),
  fc.integer({ min: 24, max: 0xffff }),
  fc.integer({ min: 0x10000, max: 2 ** 32 - 1 }),
  fc.integer({ min: 2 ** 32, max: Number.MAX_SAFE_INTEGER }),
);
const timeouts = fc.oneof(fc.constant(null), fc.nat(), fc.double({ min: 0, noNaN: true }));

/** What decoding `bytes` gives: the value, or the error's class and message. */
function outcome(decode: (bytes: Uint8Array) => unknown, bytes: Uint8Array): unknown {
  try {
    return { value: decode(bytes) };
  } catch (e) {
    return { error: (e as Error).name, message: (e as Error).message };
  }
}

test("rpc wire: CALL and RESULT are written byte for byte as the codec writes them (property)", () => {
  fc.assert(
    fc.property(
      ids,
      fc.string({ maxLength: 40 }),
      fc.array(plainData, { maxLength: 4 }),
      timeouts,
      fc.integer({ min: 1, max: 2 ** 20 }),
      plainData,
      (id, method, params, timeout, window, value) => {
        assert.deepStrictEqual(
          encodeCall(id, method, params, timeout, window),
          cbor.encode([1, id, method, params, timeout, window]),
        );
        assert.deepStrictEqual(encodeResult(id, value), cbor.encode([3, id, value]));
      },
    ),
    { numRuns: 300, seed: SEED, verbose: true },
  );
});

test("rpc wire: any message decodes to what the codec decodes, and a broken one fails as it does (property)", () => {
  const message = fc.oneof(
    fc.tuple(ids, fc.string({ maxLength: 20 }), fc.array(plainData, { maxLength: 3 }), timeouts).map(
      ([id, m, p, t]) => cbor.encode([1, id, m, p, t, 16]),
    ),
    fc.tuple(ids, plainData).map(([id, v]) => cbor.encode([3, id, v])),
    fc.tuple(ids, plainData).map(([id, v]) => cbor.encode([4, id, v])),
  );
  // Mutations a hostile peer makes: a byte changed, the message cut short or made longer, garbage after it.
  const mutated = fc.tuple(message, fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 2, 3)).map(
    ([bytes, at, byte, how]) => {
      const i = bytes.length === 0 ? 0 : at % bytes.length;
      if (how === 0) return bytes;
      if (how === 1) {
        const copy = bytes.slice();
        copy[i] = byte;
        return copy;
      }
      if (how === 2) return bytes.slice(0, i);
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      longer[bytes.length] = byte;
      return longer;
    },
  );
  fc.assert(
    fc.property(fc.oneof(mutated, fc.uint8Array({ maxLength: 24 })), fc.nat(16), fc.nat(16), (bytes, before, after) => {
      const expected = outcome(cbor.decode, bytes);
      assert.deepStrictEqual(outcome(decodeMessage, bytes), expected);
      // Where it lies in a larger area (a ring's), with other bytes around it: the same, and nothing in the value
      // is a view of the area (the ring's space goes back to its producer).
      const area = new Uint8Array(before + bytes.length + after).fill(0xa5);
      area.set(bytes, before);
      const atArea = outcome((b) => decodeMessageAt(b, before, bytes.length), area);
      assert.deepStrictEqual(atArea, expected);
      const views: ArrayBufferView[] = [];
      const walk = (v: unknown): void => {
        if (ArrayBuffer.isView(v)) views.push(v);
        else if (Array.isArray(v)) v.forEach(walk);
        else if (v !== null && typeof v === "object") Object.values(v).forEach(walk);
      };
      walk((atArea as { value?: unknown }).value);
      for (const v of views) assert.notEqual(v.buffer, area.buffer, "a byte string is a copy, not a view of the area");
    }),
    { numRuns: 2000, seed: SEED, verbose: true },
  );
});

test("rpc wire: hand-made heads: every id size, a truncated id, an id too large for the fast path", () => {
  const cases: number[][] = [
    [0x83, 0x03, 0x17, 0x01], // id 23
    [0x83, 0x03, 0x18, 0xff, 0xf6], // id 255
    [0x83, 0x03, 0x18, 0x05, 0xf6], // id 5, not in its shortest form: the codec reads it too
    [0x83, 0x03, 0x19, 0x01, 0x00, 0x01], // id 256
    [0x83, 0x03, 0x1a, 0xff, 0xff, 0xff, 0xff, 0x02], // id 2^32 - 1
    [0x83, 0x03, 0x1b, 0, 0, 0, 1, 0, 0, 0, 0, 0x02], // a 64-bit id: a BigInt, as the codec reads it
    [0x83, 0x03, 0x19, 0x01], // cut inside the id
    [0x83, 0x03, 0x1a, 0x01, 0x00, 0x01], // cut inside the id
    [0x83, 0x03, 0x01], // no value
    [0x83, 0x03, 0x01, 0x01, 0x01], // a byte after the message
    [0x83, 0x03, 0x01, 0x9f, 0x01], // an indefinite array never closed
    [0x86, 0x01, 0x01, 0x63, 0x61, 0x64, 0x64, 0x80, 0xf6], // a CALL short of its window
    [0x86, 0x01, 0x01, 0x63, 0x61, 0x64, 0x64, 0x80, 0xf6, 0x10], // a whole CALL
    [0x86, 0x01, 0x01, 0x63, 0x61, 0x64, 0x64, 0x85, 0xf6, 0x10], // params that claim 5 items
    [0x83, 0x03, 0x21, 0x01], // a negative id: the codec's, and RPC's ProtocolError later
  ];
  for (const c of cases) {
    const bytes = new Uint8Array(c);
    assert.deepStrictEqual(outcome(decodeMessage, bytes), outcome(cbor.decode, bytes), `bytes ${c}`);
  }
  assert.deepStrictEqual(decodeMessage(new Uint8Array(cases[4]!)), [3, 2 ** 32 - 1, 2]);
  assert.deepStrictEqual(decodeMessage(new Uint8Array(cases[12]!)), [1, 1, "add", [], null, 16]);
  // A Node Buffer in (what a socket reads): byte strings come out as plain Uint8Arrays, as from the codec.
  const fromSocket = Buffer.from(cbor.encode([3, 300, new Uint8Array([1, 2])]));
  const decoded = decodeMessage(fromSocket) as unknown[];
  assert.equal((decoded[2] as Uint8Array).constructor, Uint8Array);
  assert.deepStrictEqual(decoded, cbor.decode(fromSocket));
});

test("rpc wire: a value the codec refuses is refused with the codec's words, and the next message is whole", () => {
  const refusal = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return `${(e as Error).name}: ${(e as Error).message}`;
    }
    return "no error";
  };
  const fn = () => {};
  assert.equal(
    refusal(() => encodeCall(1, "m", [fn], null, 16)),
    refusal(() => cbor.encode([1, 1, "m", [fn], null, 16])),
  );
  assert.equal(refusal(() => encodeResult(1, Symbol("s"))), refusal(() => cbor.encode([3, 1, Symbol("s")])));
  assert.match(refusal(() => encodeResult(1, fn)), /^TypeError: Cannot encode a function/);
  // The encoder's state was reset by the refusal: the next frame starts from nothing.
  assert.deepStrictEqual(encodeResult(7, "ok"), cbor.encode([3, 7, "ok"]));
  // A value whose getter encodes (re-entry) still comes out whole.
  const sneaky = {
    get inner() {
      return cbor.encode([1, 2, 3]);
    },
  };
  assert.deepStrictEqual(encodeResult(9, sneaky), cbor.encode([3, 9, sneaky]));
  assert.deepStrictEqual(decodeMessage(encodeResult(9, sneaky)), [3, 9, { inner: cbor.encode([1, 2, 3]) }]);
});

test("rpc pending calls: the slots and their overflow behave as a Map of the same calls (model, property)", () => {
  // Ids handed out in order, some calls outliving the next 1023 (the overflow), settled in any order.
  const op = fc.oneof(
    fc.record({ kind: fc.constant("call" as const), skip: fc.constantFrom(0, 0, 0, 1023, 1024, 2047, 5000) }),
    fc.record({ kind: fc.constant("settle" as const), pick: fc.nat() }),
    fc.record({ kind: fc.constant("look" as const), pick: fc.nat() }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 400 }), (ops) => {
      const model = new Map<number, { id: number }>();
      const real = new PendingCalls<{ id: number }>();
      let next = 1;
      for (const o of ops) {
        if (o.kind === "call") {
          next += o.skip;
          const v = { id: next };
          model.set(next, v);
          real.set(next, v);
          next++;
        } else {
          const ids = [...model.keys()];
          // A pending id, or one never made / already settled.
          const id = ids.length > 0 && o.pick % 4 !== 0 ? ids[o.pick % ids.length]! : o.pick % (next + 2048);
          if (o.kind === "settle") assert.equal(real.delete(id), model.delete(id));
          else {
            assert.equal(real.get(id), model.get(id));
            assert.equal(real.has(id), model.has(id));
          }
        }
        assert.equal(real.size, model.size);
      }
      assert.deepStrictEqual(real.ids(), [...model.keys()].sort((a, b) => a - b));
    }),
    { numRuns: 300, seed: SEED, verbose: true },
  );
});
