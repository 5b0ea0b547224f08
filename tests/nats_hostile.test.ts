/**
 * NATS channels against a hostile peer: a plain nats.js connection that speaks the wire format by hand and breaks
 * it (sends without credit, floods HELLOs, announces a huge heartbeat and falls silent, sends bad control messages
 * and pieces). The channel must end with a clear error, tell the peer where the wire has a way, keep its memory
 * bounded, and keep the process alive.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, MessageTooLargeError, nats, ProtocolError, QueueFullError } from "../mod.ts";
import { clampBeat, DEFAULT_MAX_HEARTBEAT, MIN_HEARTBEAT } from "../transports/nats_wire.ts";
import { natsServerForFile } from "./helpers/nats_server.ts";
import { frame, greeting, rawConnection, RawEnd, T, word } from "./helpers/nats_raw.ts";

const server = natsServerForFile(() => {}, { monitor: true });

const LONG = { timeout: 180_000 };
const subject = () => `ipckit.hostile.${Math.random().toString(36).slice(2, 10)}`;
const text = new TextDecoder();

/** Receives until the channel ends; returns what came and the error it ended with (or TimeoutError). */
async function drain(ch: { receive(o?: { timeout?: number }): Promise<Uint8Array> }, timeout = 30_000) {
  const got: Uint8Array[] = [];
  for (;;) {
    try {
      got.push(await ch.receive({ timeout }));
    } catch (e) {
      return { got, error: e as Error };
    }
  }
}

test("nats: a peer that sends past the credit it was granted ends the channel with ProtocolError", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const raw = new RawEnd(await rawConnection(server.url));
  await using listener = await nats.listen(subject(), { link, window: 1024, heartbeat: 60_000 });
  try {
    const welcome = await raw.hello(listener.subject, 4096, 60_000);
    assert.equal(welcome[0], T.WELCOME);
    const ch = await listener.accept();
    // 200 DATA of 1000 bytes (each counts 1032 against a window of 1024), none waiting for CREDIT: the first one
    // goes (nothing was outstanding), the second breaks the protocol.
    for (let i = 0; i < 200; i++) raw.send(frame(T.DATA, new Uint8Array(1000).fill(i)));
    await raw.c.flush();
    const { got, error } = await drain(ch);
    assert.ok(error instanceof ProtocolError, `ended with ${error}`);
    assert.match(error.message, /beyond the credit/);
    assert.ok(got.length <= 1, `${got.length} messages were buffered past the window`);
    // The peer is told why, in a REFUSE (type 7, UTF-8 text).
    const told = await raw.next((d) => d[0] === T.REFUSE);
    assert.match(text.decode(told.data.subarray(1)), /beyond the credit/);
    await assert.rejects(ch.send(new Uint8Array(1)), ClosedError);
    await ch.close();
  } finally {
    raw.close();
    await raw.c.close();
  }
});

test(
  "nats: a flood of empty DATA without credit is refused within 1.5 windows (each counts 32 bytes)",
  LONG,
  async () => {
    await using link = await nats.open({ servers: server.url });
    const raw = new RawEnd(await rawConnection(server.url));
    await using listener = await nats.listen(subject(), { link, window: 1024, heartbeat: 60_000 });
    try {
      await raw.hello(listener.subject, 4096, 60_000);
      const ch = await listener.accept();
      for (let i = 0; i < 10_000; i++) raw.send(frame(T.DATA));
      await raw.c.flush();
      // Nobody reads: the listener grants credit until half a window of messages waits unread, then stops; the
      // flood breaks the protocol after at most 1.5 windows (each empty DATA counts 32 bytes).
      const told = await raw.next((d) => d[0] === T.REFUSE);
      assert.match(text.decode(told.data.subarray(1)), /beyond the credit/);
      const { got, error } = await drain(ch);
      assert.ok(error instanceof ProtocolError, `ended with ${error}`);
      assert.ok(got.length <= (1.5 * 1024) / 32, `${got.length} empty messages were buffered`);
      await ch.close();
    } finally {
      raw.close();
      await raw.c.close();
    }
  },
);

test(
  "nats: 20 000 HELLOs queue at most maxPending channels; the rest are refused with 'busy', counted by the server",
  LONG,
  async () => {
    const name = `flooded-${Math.random().toString(36).slice(2, 8)}`;
    await using link = await nats.open({ servers: server.url, name });
    await using listener = await nats.listen(subject(), { link, heartbeat: 60_000 });
    const c = await rawConnection(server.url);
    const prefix = `_INBOX.flood${Math.random().toString(36).slice(2)}`;
    const answers = { welcome: 0, busy: 0, other: 0 };
    let wake = () => {};
    const sub = c.subscribe(`${prefix}.*`, {
      callback: (_e, m) => {
        if (m.data[0] === T.WELCOME) answers.welcome++;
        else if (m.data[0] === T.REFUSE && /^busy:/.test(text.decode(m.data.subarray(1)))) answers.busy++;
        else answers.other++;
        wake();
      },
    });
    const total = 20_000;
    try {
      for (let i = 0; i < total; i++) {
        c.publish(listener.subject, greeting(T.HELLO, 4096, 60_000), { reply: `${prefix}.${i}` });
        if (i % 1000 === 999) await c.flush();
      }
      const deadline = Date.now() + 120_000;
      while (answers.welcome + answers.busy + answers.other < total && Date.now() < deadline) {
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 1000);
        });
      }
      // Every HELLO got an answer; only maxPending (default 64) became channels.
      assert.deepEqual(answers, { welcome: 64, busy: total - 64, other: 0 });
      assert.equal(listener.pending, 64);
      // The server's own count of the listener connection's subscriptions: its subject plus one inbox per channel.
      const connz = await (await fetch(`${server.monitor}/connz?subs=1`)).json() as {
        connections: Array<{ name?: string; subscriptions: number }>;
      };
      const mine = connz.connections.find((x) => x.name === name);
      assert.ok(mine, "the listener's connection is listed");
      assert.ok(mine.subscriptions <= 64 + 1, `${mine.subscriptions} subscriptions`);
      // Accepting one frees a place: the next HELLO is welcomed.
      const ch = await listener.accept();
      assert.equal(listener.pending, 63);
      const end = new RawEnd(c);
      try {
        assert.equal((await end.hello(listener.subject, 4096, 60_000))[0], T.WELCOME);
      } finally {
        end.close();
      }
      await ch.close();
    } finally {
      sub.unsubscribe();
      await c.close();
    }
  },
);

test("nats: connect() to a listener whose accept queue is full rejects with QueueFullError", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  await using listener = await nats.listen(subject(), { link, maxPending: 1 });
  await using first = await nats.connect(listener.subject, { link });
  await assert.rejects(
    nats.connect(listener.subject, { link }),
    (e: Error) => e instanceof QueueFullError && /busy/.test(e.message),
  );
  await (await listener.accept()).close();
  await using second = await nats.connect(listener.subject, { link });
  assert.equal(second.closed, false);
  assert.equal(first.closed, true); // its peer was closed above
  await assert.rejects(nats.listen(subject(), { link, maxPending: 0 }), RangeError);
  await assert.rejects(nats.listen(subject(), { link, maxPending: 1.5 }), RangeError);
});

test(
  "nats: a peer announcing a huge heartbeat then falling silent is declared dead within 3 × maxHeartbeat",
  LONG,
  async () => {
    await using link = await nats.open({ servers: server.url });
    const raw = new RawEnd(await rawConnection(server.url));
    await using listener = await nats.listen(subject(), { link, heartbeat: 100, maxHeartbeat: 300 });
    try {
      await raw.hello(listener.subject, 4096, 0xffffffff); // "I beat every 49 days", then nothing
      const ch = await listener.accept();
      const error = await ch.receive({ timeout: 60_000 }).then(() => undefined, (e) => e as Error);
      assert.ok(error instanceof ClosedError, `ended with ${error}`);
      assert.match(error.message, /stopped answering \(nothing for 3 heartbeats of 300 ms\)/);
      await ch.close();
    } finally {
      raw.close();
      await raw.c.close();
    }
  },
);

test(
  "nats: a listener announcing a huge heartbeat then falling silent ends the connecting side too",
  LONG,
  async () => {
    await using link = await nats.open({ servers: server.url });
    const c = await rawConnection(server.url);
    const s = subject();
    // A raw listener: answers HELLO with a WELCOME of beat 2^32 - 1, then says nothing.
    const sub = c.subscribe(s, {
      callback: (_e, m) => {
        c.publish(m.reply!, greeting(T.WELCOME, 4096, 0xffffffff), { reply: `_INBOX.silent${Date.now()}` });
      },
    });
    try {
      await c.flush();
      await using ch = await nats.connect(s, { link, heartbeat: 100, maxHeartbeat: 200 });
      const error = await ch.receive({ timeout: 60_000 }).then(() => undefined, (e) => e as Error);
      assert.ok(error instanceof ClosedError, `ended with ${error}`);
      assert.match(error.message, /3 heartbeats of 200 ms/);
    } finally {
      sub.unsubscribe();
      await c.close();
    }
  },
);

test("nats: heartbeats are clamped to a documented range; maxHeartbeat is validated", LONG, async () => {
  assert.equal(DEFAULT_MAX_HEARTBEAT, 60_000);
  assert.equal(MIN_HEARTBEAT, 10);
  assert.equal(clampBeat(0xffffffff, DEFAULT_MAX_HEARTBEAT), 60_000);
  assert.equal(clampBeat(0, DEFAULT_MAX_HEARTBEAT), 10);
  assert.equal(clampBeat(1500, DEFAULT_MAX_HEARTBEAT), 1500);
  await using link = await nats.open({ servers: server.url });
  await assert.rejects(nats.listen(subject(), { link, maxHeartbeat: 5 }), RangeError);
  await assert.rejects(nats.listen(subject(), { link, heartbeat: 2000, maxHeartbeat: 1000 }), RangeError);
  // A long own heartbeat raises the default bound (a peer is never held to less than this side's own beat).
  await (await nats.listen(subject(), { link, heartbeat: 120_000 })).close();
});

test("nats: a channel not accepted yet grants no credit; accepting it does", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const raw = new RawEnd(await rawConnection(server.url));
  const other = new RawEnd(raw.c);
  await using listener = await nats.listen(subject(), { link, window: 1024, heartbeat: 60_000 });
  try {
    await raw.hello(listener.subject, 4096, 60_000);
    raw.send(frame(T.DATA, new Uint8Array(900))); // 932 of 1024: far past the quarter that earns CREDIT
    // The listener handles this second HELLO after that DATA, and publishes in order: a CREDIT it granted for the
    // DATA would reach the raw connection before this WELCOME.
    await other.hello(listener.subject, 4096, 60_000);
    assert.deepEqual(raw.got.filter((m) => m.data[0] === T.CREDIT), [], "credit before accept()");
    const ch = await listener.accept();
    assert.equal((await ch.receive()).byteLength, 900);
    const credit = await raw.next((d) => d[0] === T.CREDIT);
    assert.equal(word(credit.data), 932);
    await ch.close();
    await (await listener.accept()).close();
  } finally {
    raw.close();
    other.close();
    await raw.c.close();
  }
});

test("nats: bad control messages and pieces end the channel with ProtocolError; the peer is told", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const raw = new RawEnd(await rawConnection(server.url));
  await using listener = await nats.listen(subject(), { link, window: 4096, heartbeat: 60_000, maxMessage: 2000 });
  const cases: Array<[string, Uint8Array[], RegExp, abstract new (...a: never[]) => Error]> = [
    ["a CREDIT of 3 bytes", [new Uint8Array([T.CREDIT, 0, 1])], /CREDIT of 3 bytes/, ProtocolError],
    ["CREDIT beyond the window", [frame(T.CREDIT, [0, 0, 0x10, 0])], /more credit than/, ProtocolError],
    ["an empty MORE piece", [frame(T.MORE)], /empty MORE/, ProtocolError],
    ["an END with a body", [frame(T.END, [1])], /END of 2 bytes/, ProtocolError],
    ["an empty NATS message", [new Uint8Array(0)], /empty NATS message/, ProtocolError],
    ["a HELLO on an open channel", [greeting(T.HELLO, 4096, 1000)], /HELLO on an open channel/, ProtocolError],
    [
      "pieces past maxMessage",
      [frame(T.MORE, new Uint8Array(1000)), frame(T.MORE, new Uint8Array(1000)), frame(T.DATA, new Uint8Array(10))],
      /exceeds maxMessage/,
      MessageTooLargeError,
    ],
    ["an unknown type", [frame(99)], /unknown message type 99/, ProtocolError],
  ];
  try {
    for (const [what, messages, pattern, kind] of cases) {
      raw.got.length = 0;
      await raw.hello(listener.subject, 4096, 60_000);
      const ch = await listener.accept();
      for (const m of messages) raw.send(m);
      const { error } = await drain(ch);
      assert.ok(error instanceof kind, `${what}: ended with ${error}`);
      assert.match(error.message, pattern, what);
      const told = await raw.next((d) => d[0] === T.REFUSE);
      assert.match(text.decode(told.data.subarray(1)), pattern, what);
      await ch.close();
    }
  } finally {
    raw.close();
    await raw.c.close();
  }
});

test("nats: a REFUSE from the peer on an open channel ends it with ClosedError carrying the reason", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const raw = new RawEnd(await rawConnection(server.url));
  await using listener = await nats.listen(subject(), { link, heartbeat: 60_000 });
  try {
    await raw.hello(listener.subject, 4096, 60_000);
    const ch = await listener.accept();
    raw.send(frame(T.REFUSE, new TextEncoder().encode("you sent garbage\u0000\u001b[2J")));
    const error = await ch.receive({ timeout: 30_000 }).then(() => undefined, (e) => e as Error);
    assert.ok(error instanceof ClosedError, `ended with ${error}`);
    assert.match(error.message, /the peer ended it: you sent garbage/);
    await assert.rejects(ch.send(new Uint8Array(1)), ClosedError);
    assert.ok(!error.message.includes("\u001b"), "control characters of a peer never reach a terminal");
    await ch.close();
  } finally {
    raw.close();
    await raw.c.close();
  }
});

test("nats: HELLOs and WELCOMEs out of range are refused (window below 1024, short, other version)", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const raw = new RawEnd(await rawConnection(server.url));
  await using listener = await nats.listen(subject(), { link });
  const c = raw.c;
  try {
    const small = await raw.hello(listener.subject, 0, 1000);
    assert.equal(small[0], T.REFUSE);
    assert.match(text.decode(small.subarray(1)), /window of 0 bytes/);
    c.publish(listener.subject, new Uint8Array([T.HELLO, 1, 0]), { reply: raw.inbox });
    const short = await raw.next((d) => d[0] === T.REFUSE);
    assert.match(text.decode(short.data.subarray(1)), /malformed HELLO/);
    assert.equal(listener.pending, 0);
    // The connecting side checks the WELCOME the same way: a window of 0 would let it send without limit.
    const s = subject();
    const sub = c.subscribe(s, {
      callback: (_e, m) => c.publish(m.reply!, greeting(T.WELCOME, 0, 1000), { reply: "_INBOX.zero" }),
    });
    try {
      await c.flush();
      await assert.rejects(
        nats.connect(s, { link }),
        (e: Error) => e instanceof ProtocolError && /window of 0 bytes/.test(e.message),
      );
    } finally {
      sub.unsubscribe();
    }
  } finally {
    raw.close();
    await c.close();
  }
});
