/**
 * The JSON-RPC server against hostile or careless clients (issue 16, findings 4 and 10): a raw `node:net` socket
 * speaking newline-delimited JSON over TCP. Every request gets an answer (also when its result cannot be encoded or
 * is too large), batches are bounded, calls in flight are capped, reading stops while replies go unread, and
 * errors carry no stack unless the server asks.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { type CallContext, QueueFullError, rpc, tcp } from "../mod.ts";
import { END, RawSocket } from "./helpers/raw_socket.ts";

const LONG = { timeout: 300_000 };
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Reply {
  jsonrpc: "2.0";
  id: string | number | null;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** A JSON-RPC server on a TCP lines listener and a raw lines client (a plain socket) to it. */
async function session(
  handlers: object,
  options: Omit<rpc.ServeOptions, "protocol">,
  fn: (raw: RawSocket) => Promise<void>,
  listen: { maxMessage?: number; highWaterMark?: number } = {},
): Promise<void> {
  const listener = await tcp.listen({ port: 0, framing: "lines", ...listen });
  const server = rpc.serve(listener, handlers, { ...options, protocol: "jsonrpc" });
  const raw = await RawSocket.connect(listener.port, { lines: true });
  try {
    await fn(raw);
  } finally {
    await raw.destroy();
    await server.close();
  }
}

async function ask(raw: RawSocket, request: string): Promise<Reply | Reply[]> {
  raw.write(utf8.encode(request));
  const f = await raw.next(60_000);
  if (f === END) throw new Error("the server hung up instead of answering");
  return JSON.parse(fromUtf8.decode(f));
}

const call = (method: string, id: number | string, params: unknown = []) =>
  JSON.stringify({ jsonrpc: "2.0", method, params, id });

test("jsonrpc hostile: results JSON cannot encode get -32603 with the request's id, not silence", LONG, async () => {
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  const handlers = {
    big: () => 2n ** 64n,
    cyclic: () => cyclic,
    fn: () => () => 1,
    sym: () => Symbol("x"),
    badData() {
      const e = new Error("with bad data") as Error & { data: unknown };
      e.data = 1n;
      throw e;
    },
    ok: () => "fine",
  };
  await session(handlers, {}, async (raw) => {
    for (const [method, id] of [["big", 1], ["cyclic", 2], ["fn", 3], ["sym", "s"], ["badData", 5]] as const) {
      const reply = await ask(raw, call(method, id)) as Reply;
      assert.equal(reply.id, id, method);
      assert.equal(reply.error?.code, -32603, method);
      assert.match(reply.error!.message, /^Internal error: the (result|error) cannot be encoded as JSON/, method);
    }
    assert.deepEqual(await ask(raw, call("ok", 6)), { jsonrpc: "2.0", result: "fine", id: 6 });
  });
});

test("jsonrpc hostile: a 100 000-deep params echo is refused with -32600 and the request's id", LONG, async () => {
  let ran = 0;
  const handlers = {
    echo: (x: unknown) => {
      ran++;
      return x;
    },
  };
  await session(handlers, {}, async (raw) => {
    const deep = "[".repeat(100_000) + "]".repeat(100_000);
    const reply = await ask(raw, `{"jsonrpc":"2.0","method":"echo","params":[${deep}],"id":9}`) as Reply;
    assert.equal(reply.id, 9);
    assert.equal(reply.error?.code, -32600);
    assert.match(reply.error!.message, /nested deeper than 512 levels/);
    // In a batch only the deep request is refused; brackets inside strings do not count.
    const batch = await ask(
      raw,
      `[${call("echo", 1, ["[[[[" + "[".repeat(1000)])},{"jsonrpc":"2.0","method":"echo","params":[${deep}],"id":2}]`,
    ) as Reply[];
    assert.equal(batch.length, 2);
    const byId = new Map(batch.map((r) => [r.id, r]));
    assert.deepEqual(byId.get(1)?.result, "[[[[" + "[".repeat(1000));
    assert.equal(byId.get(2)?.error?.code, -32600);
    assert.equal(ran, 1);
    // 500 levels of params (within the limit) still run.
    const ok = "[".repeat(500) + "]".repeat(500);
    assert.equal(((await ask(raw, `{"jsonrpc":"2.0","method":"echo","params":${ok},"id":3}`)) as Reply).id, 3);
  });
});

test("jsonrpc hostile: a batch longer than maxBatch gets one -32600 and nothing runs", LONG, async () => {
  let ran = 0;
  const handlers = { count: () => ++ran };
  await session(handlers, {}, async (raw) => {
    const batch = (n: number) => `[${Array.from({ length: n }, (_, i) => call("count", i)).join(",")}]`;
    const refused = await ask(raw, batch(101)) as Reply;
    assert.equal(refused.id, null);
    assert.equal(refused.error?.code, -32600);
    assert.match(refused.error!.message, /a batch of 101 requests exceeds maxBatch \(100\)/);
    assert.equal(ran, 0);
    assert.equal((await ask(raw, batch(100)) as Reply[]).length, 100);
    assert.equal(ran, 100);
  });
  await session(handlers, { maxBatch: 3 }, async (raw) => {
    assert.equal(
      (await ask(raw, `[${call("count", 1)},${call("count", 2)},${call("count", 3)},${call("count", 4)}]`) as Reply)
        .error?.code,
      -32600,
    );
  });
  assert.throws(
    () => rpc.serve({ send() {}, receive() {} } as never, handlers, { protocol: "jsonrpc", maxBatch: 0 }),
    RangeError,
  );
});

test("jsonrpc hostile: replies over the channel's maxMessage become -32603 errors, in a batch too", LONG, async () => {
  const handlers = { text: (n: number) => "x".repeat(n) };
  await session(handlers, {}, async (raw) => {
    const single = await ask(raw, call("text", 1, [100_000])) as Reply;
    assert.equal(single.id, 1);
    assert.equal(single.error?.code, -32603);
    assert.match(single.error!.message, /exceeds the channel's maxMessage \(65536 bytes\)/);
    // Ten results of 10 000 bytes: 100 000 bytes, over the limit; the largest become errors until it fits.
    const batch = await ask(raw, `[${Array.from({ length: 10 }, (_, i) => call("text", i, [10_000])).join(",")}]`);
    assert.ok(Array.isArray(batch));
    assert.deepEqual(batch.map((r) => r.id).sort(), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const errors = batch.filter((r) => r.error?.code === -32603).length;
    assert.ok(errors >= 4 && errors < 10, `${errors} results replaced by errors`);
    assert.equal(batch.filter((r) => r.result === "x".repeat(10_000)).length, 10 - errors);
    // An id nearly as large as the limit: the answer comes without it rather than not at all.
    const hugeId = "i".repeat(65_430);
    const noId = await ask(raw, call("text", hugeId, [1000])) as Reply;
    assert.equal(noId.error?.code, -32603);
    assert.ok(noId.id === null, "answered with id null");
  }, { maxMessage: 65_536 });
});

test("jsonrpc hostile: error data carries no stack by default, data.stack with exposeStack", LONG, async () => {
  const handlers = {
    plain() {
      throw new TypeError("plain");
    },
    withData() {
      throw Object.assign(new Error("with data"), { code: 7, data: { why: "x" } });
    },
  };
  await session(handlers, {}, async (raw) => {
    const plain = await ask(raw, call("plain", 1)) as Reply;
    assert.deepEqual(plain.error, { code: -32000, message: "plain" });
    const withData = await ask(raw, call("withData", 2)) as Reply;
    assert.deepEqual(withData.error, { code: 7, message: "with data", data: { why: "x" } });
  });
  await session(handlers, { exposeStack: true }, async (raw) => {
    const plain = await ask(raw, call("plain", 1)) as Reply;
    assert.match(String((plain.error?.data as { stack: string }).stack), /TypeError: plain/);
    const withData = await ask(raw, call("withData", 2)) as Reply;
    assert.equal((withData.error?.data as { why: string }).why, "x");
    assert.match(String((withData.error?.data as { stack: string }).stack), /with data/);
  });
});

test("jsonrpc hostile: requests past maxInFlight get -32001, notifications past it reach onError", LONG, async () => {
  let started = 0;
  const dropped: unknown[] = [];
  const handlers = {
    hang(this: CallContext) {
      started++;
      return new Promise(() => {});
    },
  };
  await session(handlers, { maxInFlight: 50, onError: (e) => dropped.push(e) }, async (raw) => {
    const requests = Array.from({ length: 2000 }, (_, i) => utf8.encode(call("hang", i)));
    const notes = Array.from({ length: 100 }, () => utf8.encode('{"jsonrpc":"2.0","method":"hang"}'));
    raw.writeAll([...requests, ...notes, utf8.encode(call("hang", "last"))]);
    const busy = new Set<unknown>();
    while (!busy.has("last")) {
      const f = await raw.next(60_000);
      if (f === END) throw new Error("the server hung up");
      const r = JSON.parse(fromUtf8.decode(f)) as Reply;
      assert.equal(r.error?.code, -32001);
      assert.match(r.error!.message, /50 requests are in flight on this connection \(maxInFlight\)/);
      busy.add(r.id);
    }
    assert.equal(busy.size, 2000 - 50 + 1);
    assert.equal(started, 50);
    assert.equal(dropped.length, 100);
    assert.ok(dropped.every((e) => e instanceof QueueFullError));
  });
});

test(
  "jsonrpc hostile: the server stops reading while its replies go unread, then answers every request",
  LONG,
  async () => {
    const REQUESTS = 30_000;
    let handled = 0;
    const kib = "y".repeat(1024);
    const handlers = {
      blob: () => {
        handled++;
        return kib;
      },
    };
    await session(handlers, {}, async (raw) => {
      // Requests of 1 KiB too, so that they overflow the kernel's buffers once the server stops reading.
      raw.writeAll(Array.from({ length: REQUESTS }, (_, i) => utf8.encode(call("blob", i, [kib]))));
      let last = -1, stable = 0;
      for (let i = 0; i < 600 && stable < 8 && handled < REQUESTS; i++) {
        await sleep(250);
        stable = handled === last ? stable + 1 : 0;
        last = handled;
      }
      // 1 MiB of unsent replies (~900) plus the kernel's socket buffers (loopback TCP: a few MiB at most).
      assert.ok(handled <= 15_000, `the server handled ${handled} of ${REQUESTS} requests while nobody read a reply`);
      assert.ok(raw.socket.writableLength > 0, "the client could not hand all its requests to the kernel");
      console.log(`jsonrpc hostile: ${handled} of ${REQUESTS} requests handled while the replies went unread`);
      const seen = new Set<unknown>();
      while (seen.size < REQUESTS) {
        const f = await raw.next(60_000);
        if (f === END) throw new Error(`the server hung up after ${seen.size} replies`);
        const r = JSON.parse(fromUtf8.decode(f)) as Reply;
        assert.equal(r.result, kib);
        seen.add(r.id);
      }
    }, { highWaterMark: 64 * 1024 }); // a small read queue on the server's channel: what it holds stays small too
  },
);
