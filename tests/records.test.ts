import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { MessageTooLargeError, ProtocolError } from "../mod.ts";
import { DATA, HELLO, helloIdentity, helloRecord, MORE, pieces, Reassembler } from "../transports/records.ts";
import { native } from "../ffi/native.ts";
import { self } from "../os/liveness.ts";

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

test("helloRecord() carries this process's pid and start-time tag; helloIdentity() reads both", async () => {
  const me = self(await native());
  assert.deepEqual(helloIdentity(helloRecord(me.id), "x"), me);
  assert.notEqual(me.tag, 0); // Linux has /proc
});

test("helloIdentity() takes a 5-byte HELLO (pid only, tag 0) and refuses anything else with ProtocolError", () => {
  assert.deepEqual(helloIdentity(new Uint8Array([HELLO, 0x40, 0xe2, 0x01, 0x00]), "x"), { id: 123456, tag: 0 });
  for (
    const bad of [
      [DATA, 1],
      [HELLO, 1, 0, 0],
      [HELLO, 1, 0, 0, 0, 0, 0],
      [HELLO, 0, 0, 0, 0], // pid 0 would make kill() address a process group
      [HELLO, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0], // no such pid can exist
      [DATA, 1, 0, 0, 0, 1, 0, 0, 0],
    ]
  ) {
    assert.throws(() => helloIdentity(new Uint8Array(bad), "x"), ProtocolError, `${bad}`);
  }
});
