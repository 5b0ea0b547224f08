import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, nats, NotFoundError, PermissionError, ProtocolError, TimeoutError } from "../mod.ts";
import { conformance } from "./conformance/registry.ts";
import { subject, useServer } from "./conformance/fixtures_nats.ts";
import { natsServerForFile, startNatsServer } from "./helpers/nats_server.ts";

const server = natsServerForFile(useServer);

await conformance("nats");

const LONG = { timeout: 120_000 };
const text = new TextEncoder();
const untext = new TextDecoder();

test("nats.connect() rejects with NotFoundError when nothing listens on the subject", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  await assert.rejects(nats.connect(subject(), { link }), NotFoundError);
  assert.equal(link.closed, false); // a shared link stays usable
});

test("nats.open() rejects with NotFoundError when no server answers", LONG, async () => {
  await assert.rejects(nats.open({ servers: "127.0.0.1:1", timeout: 5000 }), NotFoundError);
});

test("nats: bad subjects and options throw TypeError or RangeError before any traffic", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  for (const bad of ["", "a..b", "with space", "wild.*", "tail.>", 7]) {
    await assert.rejects(nats.listen(bad as string, { link }), TypeError, String(bad));
    await assert.rejects(nats.connect(bad as string, { link }), TypeError, String(bad));
  }
  await assert.rejects(nats.listen("ok", { link, queue: "bad queue" }), TypeError);
  await assert.rejects(nats.connect("ok", { link, window: 10 }), RangeError);
  await assert.rejects(nats.connect("ok", { link, heartbeat: 0 }), RangeError);
  await assert.rejects(nats.connect("ok", { link, timeout: -1 }), RangeError);
  await assert.rejects(nats.open({ servers: 42 as unknown as string }), TypeError);
});

test(
  "nats: listeners in one queue group share the connections; each connection goes to one of them",
  LONG,
  async () => {
    await using link = await nats.open({ servers: server.url });
    const s = subject();
    await using one = await nats.listen(s, { link, queue: "workers" });
    await using two = await nats.listen(s, { link, queue: "workers" });
    const counts = [0, 0];
    const serve = async (l: nats.NatsListener, i: number) => {
      for await (const ch of l) {
        counts[i]!++;
        void (async () => {
          for await (const m of ch) await ch.send(m);
          await ch.close();
        })();
      }
    };
    const serving = [serve(one, 0), serve(two, 1)];
    const n = 40;
    for (let i = 0; i < n; i++) {
      await using ch = await nats.connect(s, { link });
      await ch.send(text.encode(`m${i}`));
      assert.equal(untext.decode(await ch.receive()), `m${i}`);
    }
    assert.equal(counts[0]! + counts[1]!, n);
    assert.ok(counts[0]! > 0 && counts[1]! > 0, `both listeners got connections: ${counts}`); // 2^-39 to fail
    await one.close();
    await two.close();
    await Promise.all(serving);
  },
);

test("nats: the wire format, spoken by a raw NATS client (HELLO, WELCOME, DATA, CREDIT, END)", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const c = link.connection;
  const s = subject();
  await using listener = await nats.listen(s, { link, window: 1024, heartbeat: 60_000 });
  const got: Uint8Array[] = [];
  let wake: () => void = () => {};
  const mine = `_INBOX.raw${Math.random().toString(36).slice(2)}`;
  let theirs = "";
  const sub = c.subscribe(mine, {
    callback: (_e, m) => {
      if (m.reply) theirs = m.reply;
      if (m.data[0] !== 4) got.push(m.data.slice()); // PINGs aside
      wake();
    },
  });
  const next = async () => {
    while (got.length === 0) await new Promise<void>((r) => (wake = r));
    return got.shift()!;
  };
  try {
    // HELLO: type 5, version 1, window 4096, beat 60 000 ms (big-endian u32s).
    c.publish(s, new Uint8Array([5, 1, 0, 0, 0x10, 0, 0, 0, 0xea, 0x60]), { reply: mine });
    const welcome = await next();
    assert.deepEqual([...welcome], [6, 1, 0, 0, 4, 0, 0, 0, 0xea, 0x60]); // window 1024, beat 60 000
    assert.match(theirs, /^_INBOX\./);
    const ch = await listener.accept();
    c.publish(theirs, new Uint8Array([1, ...text.encode("hi")])); // DATA
    assert.equal(untext.decode(await ch.receive()), "hi");
    c.publish(theirs, new Uint8Array([8, ...text.encode("pie")])); // MORE: a first piece
    c.publish(theirs, new Uint8Array([1, ...text.encode("ces")])); // DATA: the last piece
    assert.equal(untext.decode(await ch.receive()), "pieces");
    // Each DATA counts its length + 32: once 1024 / 4 bytes were taken, the listener grants CREDIT (u32 bytes).
    c.publish(theirs, new Uint8Array(301).fill(1)); // DATA of 300 bytes
    assert.equal((await ch.receive()).byteLength, 300);
    const credit = await next();
    assert.equal(credit[0], 2);
    assert.ok(new DataView(credit.buffer).getUint32(1) >= 256);
    await ch.send(text.encode("back"));
    assert.deepEqual([...await next()], [1, ...text.encode("back")]);
    await ch.close();
    assert.deepEqual([...await next()], [3]); // END
    // Another version is refused with type 7 and a reason.
    c.publish(s, new Uint8Array([5, 9, 0, 0, 0x10, 0, 0, 0, 0xea, 0x60]), { reply: mine });
    const refused = await next();
    assert.equal(refused[0], 7);
    assert.match(untext.decode(refused.subarray(1)), /version 1 only; got 9/);
  } finally {
    sub.unsubscribe();
  }
});

test("nats: a peer that stops sending heartbeats ends the channel with ClosedError within 3 beats", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const c = link.connection;
  const s = subject();
  await using listener = await nats.listen(s, { link, heartbeat: 100 });
  const mine = `_INBOX.mute${Math.random().toString(36).slice(2)}`;
  const sub = c.subscribe(mine, { callback: () => {} });
  try {
    c.publish(s, new Uint8Array([5, 1, 0, 0, 0x10, 0, 0, 0, 0, 100]), { reply: mine }); // beat 100 ms, then silence
    const ch = await listener.accept();
    await assert.rejects(
      ch.receive({ timeout: 60_000 }),
      (e: Error) => e instanceof ClosedError && /stopped answering/.test(e.message),
    );
    await assert.rejects(ch.send(new Uint8Array(1)), ClosedError);
    await ch.close();
  } finally {
    sub.unsubscribe();
  }
});

test("nats: a malformed message type ends the channel with ProtocolError", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const c = link.connection;
  const s = subject();
  await using listener = await nats.listen(s, { link });
  const mine = `_INBOX.bad${Math.random().toString(36).slice(2)}`;
  let theirs = "";
  const sub = c.subscribe(mine, { callback: (_e, m) => void (m.reply && (theirs = m.reply)) });
  try {
    c.publish(s, new Uint8Array([5, 1, 0, 0, 0x10, 0, 0, 0, 0x03, 0xe8]), { reply: mine });
    const ch = await listener.accept();
    await c.flush();
    c.publish(theirs, new Uint8Array([99]));
    await assert.rejects(ch.receive({ timeout: 60_000 }), ProtocolError);
    await ch.close();
  } finally {
    sub.unsubscribe();
  }
});

test("nats: a stopped server ends every channel on it with ClosedError; nothing hangs", LONG, async () => {
  const own = await startNatsServer();
  try {
    const link = await nats.open({ servers: own.url, options: { reconnect: false } });
    const listener = await nats.listen(subject(), { link });
    const client = await nats.connect(listener.subject, { link });
    const peer = await listener.accept();
    const pending = assert.rejects(client.receive(), ClosedError);
    await own.stop();
    await pending;
    await assert.rejects(peer.receive(), ClosedError);
    await assert.rejects(listener.accept(), ClosedError);
    await Promise.all([client.close(), peer.close(), listener.close(), link.close()]);
  } finally {
    await own.stop();
  }
});

test(
  "nats: user/password and token auth are passed through; refused credentials are PermissionError and never printed",
  LONG,
  async () => {
    const users = await startNatsServer({ config: 'authorization { user: "ipk", password: "pw-s3cret" }' });
    const tokens = await startNatsServer({ config: 'authorization { token: "tok-s3cret" }' });
    try {
      await using a = await nats.open({ servers: users.url, user: "ipk", pass: "pw-s3cret" });
      await using la = await nats.listen(subject(), { link: a });
      await using ca = await nats.connect(la.subject, { link: a });
      await (await la.accept()).send(text.encode("ok"));
      assert.equal(untext.decode(await ca.receive()), "ok");
      await using b = await nats.open({ servers: tokens.url, token: "tok-s3cret" });
      assert.equal(b.closed, false);
      const e1 = await nats.open({ servers: users.url, user: "ipk", pass: "wrong-pw" }).catch((e) => e);
      assert.ok(e1 instanceof PermissionError, String(e1));
      const e2 = await nats.open({ servers: tokens.url, token: "wrong-tok" }).catch((e) => e);
      assert.ok(e2 instanceof PermissionError, String(e2));
      const e3 = await nats.open({ servers: `nats://ipk:wrong-url-pw@127.0.0.1:${users.port}` }).catch((e) => e);
      assert.ok(e3 instanceof PermissionError, String(e3));
      for (const e of [e1, e2, e3]) assert.doesNotMatch(e.message, /wrong|s3cret/);
      assert.match(e3.message, /\*\*\*@127\.0\.0\.1/);
    } finally {
      await users.stop();
      await tokens.stop();
    }
  },
);

test(
  "nats: TLS options are passed through (a server with its own CA; a client without it is refused)",
  LONG,
  async () => {
    const { tlsFiles } = await import("./helpers/nats_tls.ts");
    const files = await tlsFiles();
    const secure = await startNatsServer({
      config: `tls { cert_file: "${files.cert}", key_file: "${files.key}" }`,
    });
    try {
      await using link = await nats.open({ servers: `tls://127.0.0.1:${secure.port}`, tls: { caFile: files.ca } });
      await using l = await nats.listen(subject(), { link });
      await using c = await nats.connect(l.subject, { link });
      await (await l.accept()).send(text.encode("sealed"));
      assert.equal(untext.decode(await c.receive()), "sealed");
      await assert.rejects(nats.open({ servers: `tls://127.0.0.1:${secure.port}`, timeout: 5000 }));
    } finally {
      await secure.stop();
      await files.remove();
    }
  },
);

test("nats: connect() gives up with TimeoutError when the listener never answers", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const s = subject();
  const sub = link.connection.subscribe(s, { callback: () => {} }); // a mute subscriber: no WELCOME comes
  try {
    await assert.rejects(nats.connect(s, { link, timeout: 200 }), TimeoutError);
    await assert.rejects(nats.connect(s, { link, signal: AbortSignal.abort() }), (e: Error) => e.name === "AbortError");
  } finally {
    sub.unsubscribe();
  }
});
