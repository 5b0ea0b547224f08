import { test } from "node:test";
import assert from "node:assert/strict";
import { JSONRPCClient } from "json-rpc-2.0";
import { rpc, tcp } from "../mod.ts";
import type { Channel } from "../mod.ts";

const LONG = { timeout: 120_000 };
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

const handlers = {
  add: (a: number, b: number) => a + b,
  greet: (who: { name: string }) => `hello ${who.name}`,
  fail() {
    const e = new Error("it failed") as Error & { code: number; data: unknown };
    e.code = 42;
    e.data = { why: "testing" };
    throw e;
  },
  seen: [] as unknown[],
  record(x: unknown) {
    handlers.seen.push(x);
  },
};

/** An independent JSON-RPC 2.0 client (the json-rpc-2.0 package) over an ipckit TCP channel. */
function jsonRpcClient(channel: Channel): JSONRPCClient {
  const client: JSONRPCClient = new JSONRPCClient((request) => channel.send(utf8.encode(JSON.stringify(request))));
  void (async () => {
    for await (const m of channel) client.receive(JSON.parse(fromUtf8.decode(m)));
  })();
  return client;
}

async function raw(channel: Channel, text: string): Promise<unknown> {
  await channel.send(utf8.encode(text));
  return JSON.parse(fromUtf8.decode(await channel.receive({ timeout: 30_000 })));
}

test("jsonrpc: the json-rpc-2.0 client calls ipckit handlers over TCP with ipckit's framing", LONG, async () => {
  const listener = await tcp.listen({ port: 0 });
  const server = rpc.serve(listener, handlers, { protocol: "jsonrpc" });
  const channel = await tcp.connect({ port: listener.port });
  try {
    const client = jsonRpcClient(channel);
    assert.equal(await client.request("add", [2, 3]), 5);
    assert.equal(await client.request("greet", { name: "json" }), "hello json");
    client.notify("record", ["note"]);
    await assert.rejects(
      Promise.resolve(client.request("nope", [])),
      (e: Error & { code: number }) => e.code === -32601,
    );
    await assert.rejects(
      Promise.resolve(client.request("fail", [])),
      (e: Error & { code: number; data: unknown }) => e.code === 42 && e.message === "it failed",
    );
    await assert.rejects(
      Promise.resolve(client.request("constructor", [])),
      (e: Error & { code: number }) => e.code === -32601,
    );
    assert.deepEqual(handlers.seen, ["note"]);
  } finally {
    await channel.close();
    await server.close();
  }
});

test("jsonrpc: parse errors, invalid requests and batches get the standard answers", LONG, async () => {
  const listener = await tcp.listen({ port: 0 });
  const server = rpc.serve(listener, handlers, { protocol: "jsonrpc" });
  const channel = await tcp.connect({ port: listener.port });
  try {
    assert.deepEqual(await raw(channel, "{not json"), {
      jsonrpc: "2.0",
      error: { code: -32700, message: "Parse error" },
      id: null,
    });
    assert.equal(
      ((await raw(channel, '{"jsonrpc":"1.0","method":"add","id":1}')) as { error: { code: number } }).error.code,
      -32600,
    );
    assert.equal(((await raw(channel, "[]")) as { error: { code: number } }).error.code, -32600);
    const batch = await raw(
      channel,
      '[{"jsonrpc":"2.0","method":"add","params":[1,1],"id":"a"},{"jsonrpc":"2.0","method":"record","params":[1]},' +
        '{"jsonrpc":"2.0","method":"add","params":[2,2],"id":"b"}]',
    );
    assert.deepEqual(batch, [{ jsonrpc: "2.0", result: 2, id: "a" }, { jsonrpc: "2.0", result: 4, id: "b" }]);
    const polluting = await raw(
      channel,
      '{"jsonrpc":"2.0","method":"greet","params":{"name":"x","__proto__":{"polluted":1}},"id":7}',
    );
    assert.deepEqual(polluting, { jsonrpc: "2.0", result: "hello x", id: 7 });
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  } finally {
    await channel.close();
    await server.close();
  }
});

test("jsonrpc: an unknown protocol option is a TypeError", () => {
  assert.throws(
    () => rpc.serve({ send() {}, receive() {} } as never, handlers, { protocol: "grpc" as never }),
    TypeError,
  );
});
