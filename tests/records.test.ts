import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MessageTooLargeError, ProtocolError } from "../mod.ts";
import { DATA, helloPid, helloRecord, MORE, pieces, Reassembler } from "../transports/records.ts";

test("pieces() and Reassembler round-trip any message through records of any size (property)", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), fc.integer({ min: 2, max: 700 }), (message, recordSize) => {
      const records = [...pieces(message, recordSize)];
      assert.ok(records.every((r) => r.byteLength <= recordSize));
      assert.ok(records.slice(0, -1).every((r) => r[0] === MORE));
      assert.equal(records.at(-1)![0], DATA);
      const r = new Reassembler(message.byteLength, "test");
      const out = records.map((rec) => r.take(rec));
      assert.ok(out.slice(0, -1).every((x) => x === undefined));
      assert.deepEqual([...out.at(-1)!], [...message]);
    }),
    { numRuns: 100 },
  );
});

test("Reassembler rejects pieces adding up to more than maxMessage with MessageTooLargeError", () => {
  const r = new Reassembler(10, "test channel");
  assert.equal(r.take(new Uint8Array([MORE, 1, 2, 3, 4, 5, 6])), undefined);
  assert.throws(() => r.take(new Uint8Array([DATA, 1, 2, 3, 4, 5])), MessageTooLargeError);
});

test("helloRecord() carries a pid; helloPid() refuses anything else with ProtocolError", () => {
  assert.equal(helloPid(helloRecord(123456), "x"), 123456);
  assert.throws(() => helloPid(new Uint8Array([DATA, 1]), "x"), ProtocolError);
});
