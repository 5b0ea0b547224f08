/**
 * The ipckit RPC server against hostile or careless peers (issue 16, findings 3 and 10): raw sockets and bare
 * channels carrying hand-made protocol messages, never an RpcPeer on the attacking side. What must hold: bounded
 * memory (reading stops while replies back up; calls in flight are capped), every call answered, clear
 * `ProtocolError`s for broken messages, no stack traces unless the server asks for them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type CallContext,
  cbor,
  type Channel,
  MessageTooLargeError,
  ProtocolError,
  QueueFullError,
  RemoteError,
  rpc,
  shm,
  unix,
} from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { END, RawSocket } from "./helpers/raw_socket.ts";

const LONG = { timeout: 300_000 };
const HELLO = [0, "ipckit-rpc", 1, 0];
const CALL = 1, NOTIFY = 2, RESULT = 3, ERROR = 4, CANCEL = 5, STREAM = 6, ITEM = 7, CREDIT = 9;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A Unix listener in a fresh directory, removed afterwards (also when the test fails). */
async function withUnix(
  fn: (path: string) => Promise<void>,
): Promise<void> {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-rpc-hostile-");
  try {
    await fn(`${dir}/rpc.sock`);
  } finally {
    await rt.removeDir(dir);
  }
}

/** A server on a Unix socket and a bare channel to it (the attacker sends hand-made messages on it). */
async function bareSession(
  handlers: object,
  options: rpc.ServeOptions,
  fn: (raw: Channel, server: rpc.RpcServer) => Promise<void>,
): Promise<void> {
  await withUnix(async (path) => {
    const server = rpc.serve(await unix.listen(path), handlers, options);
    const raw = await unix.connect(path);
    try {
      await fn(raw, server);
    } finally {
      await raw.close();
      await server.close();
    }
  });
}

const send = (ch: Channel, m: unknown[]) => ch.send(cbor.encode(m));
const receive = async (ch: Channel) => cbor.decode(await ch.receive({ timeout: 60_000 })) as unknown[];

/** Receives until a message of `kind` (the server's HELLO and others are skipped). */
async function receiveKind(ch: Channel, kind: number): Promise<unknown[]> {
  for (;;) {
    const m = await receive(ch);
    if (m[0] === kind) return m;
  }
}

test(
  "rpc hostile: a server stops reading calls while its replies go unread (60 000 calls, bounded), then answers all",
  LONG,
  async () => {
    const CALLS = 60_000;
    const payload = new Uint8Array(1024).fill(7);
    let handled = 0;
    const handlers = {
      blob: () => {
        handled++;
        return payload;
      },
    };
    await withUnix(async (path) => {
      // A small read queue on the server's channel: what it holds while the RPC loop does not read stays small too.
      const server = rpc.serve(await unix.listen(path, { highWaterMark: 64 * 1024 }), handlers);
      const raw = await RawSocket.connect(path);
      try {
        const calls = [cbor.encode(HELLO)];
        for (let id = 1; id <= CALLS; id++) calls.push(cbor.encode([CALL, id, "blob", [], null, 16]));
        raw.writeAll(calls); // and read nothing
        // Wait until the server stops taking calls (or took them all, as it did before the fix).
        let last = -1, stable = 0;
        for (let i = 0; i < 600 && stable < 8 && handled < CALLS; i++) {
          await sleep(250);
          stable = handled === last ? stable + 1 : 0;
          last = handled;
        }
        // 1 MiB of unsent replies (the default replyHighWaterMark) is ~870 replies of 1 KiB, plus what the kernel
        // buffers hold: far below 10 000, whatever the machine's speed.
        assert.ok(handled <= 10_000, `the server handled ${handled} of ${CALLS} calls while nobody read a reply`);
        assert.ok(raw.socket.writableLength > 0, "the client could not hand all its calls to the kernel");
        console.log(`rpc hostile: ${handled} of ${CALLS} calls handled while the replies went unread`);
        // Now read: every call gets its answer, nothing was lost.
        const seen = new Uint8Array(CALLS + 1);
        let results = 0;
        while (results < CALLS) {
          const f = await raw.next();
          if (f === END) throw new Error(`the connection ended after ${results} results`);
          const m = cbor.decode(f) as unknown[];
          if (m[0] !== RESULT) continue;
          const id = m[1] as number;
          assert.equal(seen[id], 0, `id ${id} answered twice`);
          seen[id] = 1;
          assert.equal((m[2] as Uint8Array).byteLength, 1024);
          results++;
        }
        assert.equal(handled, CALLS);
      } finally {
        await raw.destroy();
        await server.close();
      }
    });
  },
);

test(
  "rpc hostile: 100 000 never-settling calls: the first maxInFlight run, the rest get QueueFullError, the connection lives",
  LONG,
  async () => {
    const CALLS = 100_000;
    let started = 0;
    const handlers = {
      hang(this: CallContext) {
        started++;
        return new Promise((_, reject) => this.signal.addEventListener("abort", () => reject(this.signal.reason)));
      },
      add: (a: number, b: number) => a + b,
    };
    await bareSession(handlers, {}, async (raw) => {
      await send(raw, HELLO);
      const refused = new Set<number>();
      const reading = (async () => {
        while (refused.size < CALLS - 1024) {
          const m = await receive(raw);
          if (m[0] !== ERROR) continue;
          const e = m[2] as { name: string; message: string };
          assert.equal(e.name, "QueueFullError");
          assert.match(e.message, /1024 calls and notifications are in flight on this connection \(maxInFlight\)/);
          refused.add(m[1] as number);
        }
      })();
      for (let id = 1; id <= CALLS; id++) await send(raw, [CALL, id, "hang", [], null, 16]);
      await reading;
      assert.equal(started, 1024, "only maxInFlight calls reached the handler");
      assert.equal(Math.min(...refused), 1025);
      // The connection lives: cancel ten calls, and a new call runs.
      for (let id = 1; id <= 10; id++) await send(raw, [CANCEL, id]);
      await send(raw, [CALL, CALLS + 1, "add", [2, 3], null, 16]);
      const reply = await receiveKind(raw, RESULT);
      assert.deepEqual(reply, [RESULT, CALLS + 1, 5]);
    });
  },
);

test(
  "rpc hostile: maxInFlight is an option, checked; a client sees QueueFullError as a RemoteError",
  LONG,
  async () => {
    assert.throws(() => rpc.serve({ send() {}, receive() {} } as never, {}, { maxInFlight: 0 }), RangeError);
    assert.throws(() => rpc.serve({ send() {}, receive() {} } as never, {}, { maxInFlight: 1.5 }), RangeError);
    assert.throws(() => rpc.serve({ send() {}, receive() {} } as never, {}, { replyHighWaterMark: -1 }), RangeError);
    assert.throws(
      () => rpc.serve({ send() {}, receive() {} } as never, {}, { exposeStack: "yes" as never }),
      TypeError,
    );
    await withUnix(async (path) => {
      const listener = await unix.listen(path);
      assert.throws(() => rpc.serve(listener, {}, { maxInFlight: -1 }), RangeError);
      const release: (() => void)[] = [];
      const server = rpc.serve(listener, { wait: () => new Promise<void>((r) => release.push(r)) }, { maxInFlight: 2 });
      const client = rpc.connect(await unix.connect(path));
      try {
        const a = client.call("wait"), b = client.call("wait");
        const c = client.call("wait");
        await assert.rejects(c, (e: RemoteError) => e instanceof RemoteError && e.remoteName === "QueueFullError");
        for (const r of release.splice(0)) r();
        await Promise.all([a, b]);
      } finally {
        await client.close();
        await server.close();
      }
    });
  },
);

test("rpc hostile: a notification flood is bounded by maxInFlight too; dropped ones reach onError", LONG, async () => {
  let started = 0;
  const dropped: unknown[] = [];
  const handlers = {
    note: () => {
      started++;
      return new Promise(() => {}); // never settles
    },
    add: (a: number, b: number) => a + b,
  };
  await bareSession(handlers, { maxInFlight: 100, onError: (e) => dropped.push(e) }, async (raw) => {
    await send(raw, HELLO);
    for (let i = 0; i < 5000; i++) await send(raw, [NOTIFY, "note", [i]]);
    // A call after the flood is read after it: its answer says the flood was all taken in.
    await send(raw, [CALL, 1, "add", [1, 2], null, 16]);
    const reply = await receiveKind(raw, ERROR);
    assert.equal((reply[2] as { name: string }).name, "QueueFullError");
    assert.equal(started, 100);
    assert.equal(dropped.length, 4900);
    assert.ok(dropped.every((e) => e instanceof QueueFullError));
  });
});

test(
  "rpc hostile: a bad stream credit or window, or a reused call id, ends the connection with ProtocolError",
  LONG,
  async () => {
    const handlers = {
      async *ticks() {
        for (let i = 0;; i++) yield i;
      },
      hang: () => new Promise(() => {}),
    };
    const cases: [string, unknown[][]][] = [
      ["a negative credit", [[CALL, 1, "ticks", [], null, 1], [CREDIT, 1, -5]]],
      ["a fractional credit", [[CALL, 1, "ticks", [], null, 1], [CREDIT, 1, 1.5]]],
      ["a huge credit", [[CALL, 1, "ticks", [], null, 1], [CREDIT, 1, 2 ** 53]]],
      ["a credit that is not a number", [[CALL, 1, "ticks", [], null, 1], [CREDIT, 1, "10"]]],
      ["credit that overflows", [[CALL, 1, "ticks", [], null, 1], [CREDIT, 1, 2 ** 20], [CREDIT, 1, 2 ** 20]]],
      ["a negative credit for no stream", [[CREDIT, 77, -1]]],
      ["a negative window", [[CALL, 1, "ticks", [], null, -1]]],
      ["a huge window", [[CALL, 1, "ticks", [], null, 2 ** 40]]],
      ["a call id already in flight", [[CALL, 1, "hang", [], null, 16], [CALL, 1, "hang", [], null, 16]]],
    ];
    for (const [what, messages] of cases) {
      await bareSession(handlers, {}, async (raw, server) => {
        await send(raw, HELLO);
        for (const m of messages) await send(raw, m);
        const error = await receiveKind(raw, ERROR);
        assert.equal(error[1], null, `${what}: a connection error (id null)`);
        const wire = error[2] as { name: string; message: string; stack?: string };
        assert.equal(wire.name, "ProtocolError", what);
        assert.match(wire.message, /out of range|already in flight/, what);
        assert.equal(wire.stack, undefined, `${what}: no stack`);
        // And the server hangs up.
        await assert.rejects(
          async () => {
            for (;;) await raw.receive({ timeout: 60_000 });
          },
          (e: Error) => e.name === "ClosedError",
          what,
        );
        const [peer] = [...server.peers];
        if (peer) await peer.done;
      });
    }
  },
);

test(
  "rpc hostile: handler errors travel without a stack by default, with it when exposeStack is set",
  LONG,
  async () => {
    const handlers = {
      fail() {
        const e = new RangeError("it failed") as RangeError & { data: unknown; code: string };
        e.data = { why: 1 };
        e.code = "E_TEST";
        throw e;
      },
    };
    for (const exposeStack of [undefined, false, true]) {
      await bareSession(handlers, exposeStack === undefined ? {} : { exposeStack }, async (raw) => {
        await send(raw, HELLO);
        await send(raw, [CALL, 1, "fail", [], null, 16]);
        const [, id, wire] = await receiveKind(raw, ERROR) as [number, number, Record<string, unknown>];
        assert.equal(id, 1);
        assert.equal(wire.name, "RangeError");
        assert.equal(wire.message, "it failed");
        assert.deepEqual(wire.data, { why: 1 });
        assert.equal(wire.code, "E_TEST");
        if (exposeStack) assert.match(String(wire.stack), /it failed/);
        else assert.equal(Object.hasOwn(wire, "stack"), false, "no stack key at all");
        // A connection error (a peer that speaks nonsense) carries none either.
        await raw.send(new Uint8Array([0xff, 0xfe]));
        const [, nullId, connection] = await receiveKind(raw, ERROR) as [number, null, Record<string, unknown>];
        assert.equal(nullId, null);
        assert.equal(connection.name, "ProtocolError");
        assert.equal(Object.hasOwn(connection, "stack"), exposeStack === true);
      });
    }
    // Through a real client: remoteStack is empty by default.
    await withUnix(async (path) => {
      const server = rpc.serve(await unix.listen(path), handlers);
      const client = rpc.connect(await unix.connect(path));
      try {
        await assert.rejects(client.call("fail"), (e: RemoteError) => e.remoteStack === "" && e.code === "E_TEST");
      } finally {
        await client.close();
        await server.close();
      }
    });
  },
);

const OVERSIZE = { big: () => new Uint8Array(256 * 1024), small: () => 1 };

/**
 * A raw peer calls `big` (a result over the 64 KiB maxMessage of the channel) on a server of OVERSIZE: the answer is
 * an ERROR naming MessageTooLargeError, and the next call is answered.
 */
async function oversizeResult(server: { close(): Promise<void> }, raw: Channel): Promise<void> {
  try {
    await send(raw, HELLO);
    await send(raw, [CALL, 1, "big", [], null, 16]);
    const [, id, wire] = await receiveKind(raw, ERROR) as [number, number, { name: string; message: string }];
    assert.equal(id, 1);
    assert.equal(wire.name, "MessageTooLargeError");
    assert.match(wire.message, /exceeds maxMessage/);
    await send(raw, [CALL, 2, "small", [], null, 16]);
    assert.deepEqual(await receiveKind(raw, RESULT), [RESULT, 2, 1]);
  } finally {
    await raw.close();
    await server.close();
  }
}

test("rpc hostile: a result over the channel's maxMessage is answered with an error, not dropped", LONG, async () => {
  await withUnix(async (path) => {
    const server = rpc.serve(await unix.listen(path, { maxMessage: 64 * 1024 }), OVERSIZE);
    await oversizeResult(server, await unix.connect(path, { maxMessage: 64 * 1024 }));
  });
});

test(
  "rpc hostile: a server that streams more items than the credit allows ends the client with ProtocolError",
  LONG,
  async () => {
    await withUnix(async (path) => {
      const listener = await unix.listen(path);
      const client = rpc.connect(await unix.connect(path), { window: 4 });
      const raw = await listener.accept(); // the hostile server, speaking by hand
      try {
        await send(raw, HELLO);
        const stream = client.call("items");
        const [, id] = await receiveKind(raw, CALL) as [number, number];
        await send(raw, [STREAM, id]);
        const items = await stream as AsyncIterable<unknown>;
        // The caller reads nothing yet: without the credit check it would buffer all 1000.
        for (let i = 0; i < 1000; i++) await send(raw, [ITEM, id, i]).catch(() => {});
        await client.done;
        const got: unknown[] = [];
        await assert.rejects(async () => {
          for await (const item of items) got.push(item);
        }, ProtocolError);
        assert.deepEqual(got, [0, 1, 2, 3], "the window's worth of items, then the error");
        await assert.rejects(client.call("more"), ProtocolError);
        const error = await receiveKind(raw, ERROR);
        assert.equal(error[1], null);
        assert.match((error[2] as { message: string }).message, /more items than the credit allowed/);
      } finally {
        await client.close();
        await raw.close();
        await listener.close();
      }
    });
  },
);

// Over shared memory the server answers with the ring's trySend when it has room (no promise per reply), and with
// send() when it has none: the same guarantees must hold on both paths, against a raw peer.

test(
  "rpc hostile (shm): replies that fill the ring wait their turn: all answered, in order, none lost",
  LONG,
  async () => {
    const CALLS = 300;
    const handlers = { blob: (i: number) => new Uint8Array(1024).fill(i & 0xff) };
    const [serverEnd, handle] = shm.pair({ capacity: 16 * 1024, spin: 0 });
    const server = rpc.serve(serverEnd, handlers);
    const raw = shm.fromHandle(handle);
    try {
      await send(raw, HELLO);
      // Every call goes before any reply is read: the 16 KiB reply ring fills after ~15 replies, the rest wait.
      for (let id = 1; id <= CALLS; id++) await send(raw, [CALL, id, "blob", [id], null, 16]);
      await sleep(50);
      let next = 1;
      while (next <= CALLS) {
        const m = await receive(raw);
        if (m[0] !== RESULT) continue;
        assert.equal(m[1], next, "replies arrive in the order of the calls");
        assert.deepEqual(m[2], new Uint8Array(1024).fill(next & 0xff));
        next++;
      }
    } finally {
      await raw.close();
      await server.close();
    }
  },
);

test(
  "rpc hostile (shm): a result over maxMessage is answered with an error; a call over it rejects, the channel lives",
  LONG,
  async () => {
    // The serving side: the reply goes with trySend, which throws MessageTooLargeError at once.
    const [serverEnd, handle] = shm.pair({ maxMessage: 64 * 1024, spin: 0 });
    await oversizeResult(rpc.serve(serverEnd, OVERSIZE), shm.fromHandle(handle, 64 * 1024));
    // The calling side: a call too large for the ring is refused at once, and the next one goes through.
    const [a, h] = shm.pair({ maxMessage: 64 * 1024, spin: 0 });
    const echo = rpc.serve(a, { echo: (x: unknown) => x });
    const client = rpc.connect<{ echo(x: unknown): unknown }>(shm.fromHandle(h, 64 * 1024));
    try {
      await assert.rejects(client.api.echo(new Uint8Array(128 * 1024)), MessageTooLargeError);
      assert.equal(await client.api.echo("still here"), "still here");
    } finally {
      await client.close();
      await echo.close();
    }
  },
);

test(
  "rpc hostile (shm): results waiting together settle at once; a message behind them runs after their callers resume",
  LONG,
  async () => {
    const order: string[] = [];
    const [clientEnd, handle] = shm.pair({ spin: 0 });
    const client = rpc.connect(clientEnd, { handlers: { seen: (tag: string) => void order.push(`handler ${tag}`) } });
    const raw = shm.fromHandle(handle); // the server, by hand
    try {
      await send(raw, HELLO);
      const CALLS = 1000; // more than one turn's worth of results
      const calls = Array.from(
        { length: CALLS },
        (_, i) => client.call("add", i, 1).then((v) => order.push(`result ${v}`)),
      );
      const ids: number[] = [];
      while (ids.length < CALLS) {
        const m = await receive(raw);
        if (m[0] === CALL) {
          ids.push(m[1] as number);
        }
      }
      // Every result, then a call of the server's, then a result for no call and a notification, all before the
      // client reads any of them.
      const frames = ids.map((id, i) => cbor.encode([RESULT, id, i + 1]));
      frames.push(cbor.encode([CALL, 1, "seen", ["call"], null, 16]));
      frames.push(cbor.encode([RESULT, 999_999, "nobody asked"]));
      frames.push(cbor.encode([NOTIFY, "seen", ["notification"]]));
      let sent = 0;
      while (sent < frames.length) sent += raw.trySendMany(frames, sent) || (await sleep(1), 0);
      await Promise.all(calls);
      assert.equal((await receiveKind(raw, RESULT))[1], 1, "the server's call is answered");
      while (order.length < CALLS + 2) await sleep(1);
      assert.deepEqual(order.slice(0, CALLS), Array.from({ length: CALLS }, (_, i) => `result ${i + 1}`));
      assert.deepEqual(order.slice(CALLS), ["handler call", "handler notification"]);
    } finally {
      await raw.close();
      await client.close();
    }
  },
);

test(
  "rpc hostile (shm): a broken message among waiting results ends the connection with ProtocolError",
  LONG,
  async () => {
    const [clientEnd, handle] = shm.pair({ spin: 0 });
    const client = rpc.connect(clientEnd);
    const raw = shm.fromHandle(handle);
    try {
      await send(raw, HELLO);
      const first = client.call("add", 1, 1), second = client.call("add", 2, 2);
      const ids: number[] = [];
      while (ids.length < 2) {
        const m = await receive(raw);
        if (m[0] === CALL) ids.push(m[1] as number);
      }
      // The first result, then bytes that are no RPC message, in one batch: the first call settles, the second
      // rejects with the connection's end.
      raw.trySendMany([cbor.encode([RESULT, ids[0], 2]), new Uint8Array([0xff, 0x00, 0x13])]);
      assert.equal(await first, 2);
      await assert.rejects(second, ProtocolError);
      await client.done;
    } finally {
      await raw.close();
      await client.close();
    }
  },
);
