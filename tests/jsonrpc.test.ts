import { test } from "node:test";
import assert from "node:assert/strict";
import { JSONRPCClient } from "json-rpc-2.0";
import { rpc, tcp, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
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

/**
 * The json-rpc-2.0 client over a plain node:net socket speaking newline-delimited JSON: no ipckit code on the client
 * side at all, the way most JSON-RPC clients talk.
 */
async function ndjsonClient(connect: () => import("node:net").Socket) {
  const socket = connect();
  await new Promise<void>((resolve, reject) => {
    socket.once("connect", resolve);
    socket.once("error", reject);
  });
  const client: JSONRPCClient = new JSONRPCClient((request) => {
    socket.write(JSON.stringify(request) + "\n");
  });
  let pending = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      if (line.trim() !== "") client.receive(JSON.parse(line));
    }
  });
  const closed = new Promise((r) => socket.once("close", r));
  return {
    client,
    socket,
    async close() {
      socket.end();
      await closed;
    },
  };
}

async function ndjsonSession(connect: () => import("node:net").Socket) {
  const { client, socket, close } = await ndjsonClient(connect);
  try {
    assert.equal(await client.request("add", [2, 3]), 5);
    assert.equal(await client.request("greet", { name: "lines" }), "hello lines");
    await assert.rejects(
      Promise.resolve(client.request("nope", [])),
      (e: Error & { code: number }) => e.code === -32601,
    );
    await assert.rejects(
      Promise.resolve(client.request("fail", [])),
      (e: Error & { code: number }) => e.code === 42 && e.message === "it failed",
    );
    // Many requests in one write, CRLF line ends and a blank line, as a hand-written client might send them.
    const replies = new Promise<string[]>((resolve) => {
      const got: string[] = [];
      const onData = (chunk: string) => {
        got.push(...chunk.split("\n").filter((l) => l.trim() !== ""));
        if (got.length >= 2) {
          socket.off("data", onData);
          resolve(got);
        }
      };
      socket.on("data", onData);
    });
    socket.write(
      '{"jsonrpc":"2.0","method":"add","params":[10,1],"id":"x"}\r\n\n{"jsonrpc":"2.0","method":"add","params":[20,2],"id":"y"}\n',
    );
    const parsed = (await replies).map((l) => JSON.parse(l)).sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(parsed, [{ jsonrpc: "2.0", result: 11, id: "x" }, { jsonrpc: "2.0", result: 22, id: "y" }]);
  } finally {
    await close();
  }
}

test("jsonrpc: the json-rpc-2.0 client calls ipckit over TCP with newline-delimited JSON", LONG, async () => {
  const net = await import("node:net");
  const listener = await tcp.listen({ port: 0, framing: "lines" });
  const server = rpc.serve(listener, handlers, { protocol: "jsonrpc" });
  try {
    await ndjsonSession(() => net.connect({ port: listener.port, host: "127.0.0.1" }));
  } finally {
    await server.close();
  }
});

test("jsonrpc: the json-rpc-2.0 client calls ipckit over a Unix socket with newline-delimited JSON", LONG, async () => {
  const net = await import("node:net");
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  const listener = await unix.listen(`${dir}/rpc.sock`, { framing: "lines" });
  const server = rpc.serve(listener, handlers, { protocol: "jsonrpc" });
  try {
    await ndjsonSession(() => net.connect(`${dir}/rpc.sock`));
  } finally {
    await server.close();
    await rt.removeDir(dir);
  }
});
