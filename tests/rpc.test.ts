import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type CallSink,
  cbor,
  ClosedError,
  json,
  MethodNotFoundError,
  ProtocolError,
  RemoteError,
  rpc,
  shm,
  TimeoutError,
} from "../mod.ts";
import { rpcConformanceFor } from "./conformance/registry.ts";
import { handlers } from "./helpers/rpc_handlers.ts";

await rpcConformanceFor("rpc");

const LONG = { timeout: 120_000 };

test("rpc: both sides serve at once over one channel", LONG, async () => {
  const [a, h] = shm.pair({ spin: 0 });
  const b = shm.fromHandle(h);
  const left = rpc.connect<{ whoami(): string }>(a, { handlers: { whoami: () => "left" } });
  const right = rpc.connect<{ whoami(): string }>(b, { handlers: { whoami: () => "right" } });
  try {
    assert.deepEqual([await left.api.whoami(), await right.api.whoami()], ["right", "left"]);
  } finally {
    await left.close();
    await right.close();
  }
});

test("rpc: JSON codec works the same; a CBOR side and a JSON side fail clearly, not with a hang", LONG, async () => {
  {
    const [a, h] = shm.pair({ spin: 0 });
    const server = rpc.serve(a, handlers, { codec: json });
    const client = rpc.connect<typeof handlers>(shm.fromHandle(h), { codec: json });
    assert.equal(await client.api.concat("a", "b"), "ab");
    await client.close();
    await server.close();
  }
  const [a, h] = shm.pair({ spin: 0 });
  const server = rpc.serve(a, handlers, { codec: cbor });
  const client = rpc.connect<typeof handlers>(shm.fromHandle(h), { codec: json });
  await assert.rejects(client.api.add(1, 2), ProtocolError);
  await client.close();
  await server.close();
});

test("rpc: a peer of another protocol version is refused with a clear message", LONG, async () => {
  const [a, h] = shm.pair({ spin: 0 });
  const b = shm.fromHandle(h);
  const server = rpc.serve(a, handlers);
  try {
    await b.send(cbor.encode([0, "ipckit-rpc", 99, 0])); // a HELLO from the future
    const reply = cbor.decode(await b.receive({ timeout: 30_000 })) as unknown[];
    assert.equal(reply[0], 0, "the server's own HELLO comes first");
    const error = cbor.decode(await b.receive({ timeout: 30_000 })) as [number, null, { message: string }];
    assert.equal(error[0], 4);
    assert.equal(error[1], null);
    assert.match(error[2].message, /incompatible protocol versions \(this side 1\.0, the peer 99\.0\)/);
    await server.done;
  } finally {
    await server.close();
    await b.close();
  }
});

test("rpc: bad arguments are TypeErrors", () => {
  assert.throws(() => rpc.serve({} as never, handlers), TypeError);
  assert.throws(() => rpc.serve(null as never, handlers), TypeError);
  assert.throws(() => rpc.connect({} as never), TypeError);
  const [a] = shm.pair();
  assert.throws(() => rpc.serve(a, null as never), TypeError);
  assert.throws(() => rpc.connect(a, { window: 0 }), RangeError);
  assert.throws(() => rpc.connect(a, { window: 2 ** 20 + 1 }), RangeError);
  assert.throws(() => rpc.connect(a, { maxInFlight: 0 }), RangeError);
  assert.throws(() => rpc.connect(a, { replyHighWaterMark: 0.5 }), RangeError);
  assert.throws(() => rpc.connect(a, { exposeStack: 1 as never }), TypeError);
  assert.throws(() => rpc.serve(a, {}, { protocol: "jsonrpc", maxBatch: -1 }), RangeError);
});

test(
  "rpc: callInto hands each answer to its sink once: a result, a remote error, a deadline, the end",
  LONG,
  async () => {
    const [a, h] = shm.pair({ spin: 0 });
    const server = rpc.serve(a, handlers);
    const client = rpc.connect<typeof handlers>(shm.fromHandle(h));
    /** A sink that records what it got, and resolves when it got it. */
    const sink = () => {
      const got: Array<["resolve" | "reject", unknown]> = [];
      let answered!: () => void;
      const done = new Promise<void>((r) => (answered = r));
      const s: CallSink = {
        method: "",
        cleanup: () => {},
        resolve: (v) => (got.push(["resolve", v]), answered()),
        reject: (e) => (got.push(["reject", e]), answered()),
      };
      return { s, got, done };
    };
    try {
      const ok = sink(), failed = sink(), late = sink(), unknown = sink();
      client.callInto("add", [2, 3], {}, ok.s);
      client.callInto("fail", ["no"], {}, failed.s);
      client.callInto("sleep", [60_000], { timeout: 20 }, late.s);
      client.callInto("nope", [], {}, unknown.s);
      await Promise.all([ok.done, failed.done, late.done, unknown.done]);
      assert.deepEqual(ok.got, [["resolve", 5]]);
      assert.equal(ok.s.method, "add", "the peer names the method on the sink");
      assert.equal(failed.got.length, 1);
      assert.ok(failed.got[0]![1] instanceof RemoteError && failed.got[0]![1].remoteName === "RangeError");
      assert.equal(late.got.length, 1);
      assert.ok(late.got[0]![1] instanceof TimeoutError);
      assert.ok(unknown.got[0]![1] instanceof MethodNotFoundError);
      // Refused before anything is sent: a bad method, a bad timeout; and a call pending when the connection ends.
      const bad = sink(), range = sink(), pending = sink();
      client.callInto(42 as never, [], {}, bad.s);
      client.callInto("add", [1, 1], { timeout: -1 }, range.s);
      client.callInto("sleep", [60_000], {}, pending.s);
      await client.close();
      await Promise.all([bad.done, range.done, pending.done]);
      assert.ok(bad.got[0]![1] instanceof TypeError);
      assert.ok(range.got[0]![1] instanceof RangeError);
      assert.ok(pending.got[0]![1] instanceof ClosedError);
      for (const x of [ok, failed, late, unknown, bad, range, pending]) assert.equal(x.got.length, 1, "answered once");
    } finally {
      await client.close();
      await server.close();
    }
  },
);
