import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { cbor, json, ProtocolError, typed, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";

async function withUnixPair(fn: (a: import("../mod.ts").Channel, b: import("../mod.ts").Channel) => Promise<void>) {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  const l = await unix.listen(`${dir}/s.sock`);
  const [a, b] = await Promise.all([unix.connect(`${dir}/s.sock`), l.accept()]);
  try {
    await fn(a, b);
  } finally {
    await Promise.all([a.close(), b.close()]);
    await l.close();
    await rt.removeDir(dir);
  }
}

test("cbor round-trips JSON-like values and byte arrays (property)", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.uint8Array({ maxLength: 64 }), (v, bytes) => {
      const back = cbor.decode(cbor.encode({ v, bytes })) as { v: unknown; bytes: Uint8Array };
      assert.deepEqual(JSON.parse(JSON.stringify(back.v)), JSON.parse(JSON.stringify(v)));
      assert.deepEqual([...back.bytes], [...bytes]);
    }),
    { numRuns: 100 },
  );
});

test("cbor.encode() returns a fresh buffer each time (a later encode does not overwrite an earlier message)", () => {
  const a = cbor.encode({ n: 1 });
  const copy = a.slice();
  cbor.encode({ n: 2, other: "x".repeat(100) });
  assert.deepEqual([...a], [...copy]);
});

test("json round-trips values as UTF-8 JSON", () => {
  const bytes = json.encode({ a: [1, "é", null] });
  assert.equal(new TextDecoder().decode(bytes), '{"a":[1,"é",null]}');
  assert.deepEqual(json.decode(bytes), { a: [1, "é", null] });
  assert.throws(() => json.encode(undefined), TypeError);
});

test("decoding garbage rejects with ProtocolError for both codecs", () => {
  assert.throws(() => json.decode(new Uint8Array([0xff, 0xfe])), ProtocolError);
  assert.throws(() => json.decode(new TextEncoder().encode("{")), ProtocolError);
  assert.throws(() => cbor.decode(new Uint8Array([0x5f])), ProtocolError);
});

test("typed() carries values over a channel with cbor by default and json on request", async () => {
  await withUnixPair(async (a, b) => {
    const ta = typed<{ op: string; data: Uint8Array }>(a);
    const tb = typed<{ op: string; data: Uint8Array }>(b);
    await ta.send({ op: "put", data: new Uint8Array([1, 2, 3]) });
    const got = await tb.receive();
    assert.equal(got.op, "put");
    assert.deepEqual([...got.data], [1, 2, 3]);
    const ja = typed<number[]>(a, json);
    const jb = typed<number[]>(b, json);
    await ja.send([1, 2]);
    assert.deepEqual(await jb.receive(), [1, 2]);
  });
});

test("typed(): a message that does not decode rejects that receive() and the channel stays usable", async () => {
  await withUnixPair(async (a, b) => {
    const tb = typed(b, json);
    await a.send(new TextEncoder().encode("not json"));
    await a.send(json.encode({ ok: true }));
    await assert.rejects(tb.receive(), ProtocolError);
    assert.deepEqual(await tb.receive(), { ok: true });
  });
});

test("typed(): async iteration yields values until the peer closes", async () => {
  await withUnixPair(async (a, b) => {
    const ta = typed<number>(a);
    for (const n of [1, 2, 3]) await ta.send(n);
    await ta.close();
    const got: number[] = [];
    for await (const n of typed<number>(b)) got.push(n);
    assert.deepEqual(got, [1, 2, 3]);
    assert.equal(ta.closed, true);
  });
});

test("typed(): a value the codec cannot encode rejects send() and sends nothing", async () => {
  await withUnixPair(async (a, b) => {
    const ja = typed<unknown>(a, json);
    await assert.rejects(ja.send(undefined), TypeError);
    await ja.send(1);
    assert.deepEqual(json.decode(await b.receive()), 1);
  });
});
