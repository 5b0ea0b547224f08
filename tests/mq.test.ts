import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  ClosedError,
  IpcError,
  MessageQueue,
  MessageTooLargeError,
  mq,
  NotFoundError,
} from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { conformance } from "./conformance/registry.ts";
import { mqNames } from "./conformance/fixtures_mq.ts";

await conformance("mq");

const LONG = { timeout: 120_000 };
const text = new TextEncoder();
const name = () => `/ipckit-test-mq-${Math.random().toString(36).slice(2, 12)}`;
const bytes = (...xs: number[]) => new Uint8Array(xs);

/** Runs `fn` with a fresh queue, which is closed and unlinked afterwards whatever happens. */
async function withQueue(
  fn: (q: MessageQueue, n: string) => Promise<void>,
  sizes = { maxMessages: 4, messageSize: 64 },
): Promise<void> {
  const n = name();
  const q = await MessageQueue.create(n, sizes);
  try {
    await fn(q, n);
  } finally {
    q.close();
    await MessageQueue.unlink(n).catch(() => {});
  }
}

/** Opens `n`, waiting for a creator that is about to make it. */
async function openSoon(n: string): Promise<MessageQueue> {
  for (let i = 0;; i++) {
    try {
      return await MessageQueue.open(n);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 1000) throw e;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function exists(n: string): Promise<boolean> {
  try {
    (await MessageQueue.open(n)).close();
    return true;
  } catch (e) {
    if (e instanceof NotFoundError) return false;
    throw e;
  }
}

test("MessageQueue.receive() returns the highest priority first, FIFO within a priority", () =>
  withQueue(async (q) => {
    const sent: [number, number][] = [[1, 0], [2, 5], [3, 0], [4, 31], [5, 5], [6, 1]];
    for (const [b, priority] of sent) await q.send(bytes(b), { priority });
    const got = [];
    for (let i = 0; i < sent.length; i++) {
      const m = await q.receive();
      got.push([m.data[0], m.priority]);
    }
    assert.deepEqual(got, [[4, 31], [2, 5], [5, 5], [6, 1], [1, 0], [3, 0]]);
  }, { maxMessages: 8, messageSize: 16 }));

test("MessageQueue attributes, trySend() on a full queue and tryReceive() on an empty one", () =>
  withQueue(async (q) => {
    assert.deepEqual(q.attributes, { maxMessages: 4, messageSize: 64, currentMessages: 0 });
    assert.equal(q.tryReceive(), undefined);
    for (let i = 0; i < 4; i++) assert.equal(q.trySend(bytes(i)), true);
    assert.equal(q.trySend(bytes(9)), false);
    assert.equal(q.attributes.currentMessages, 4);
    assert.deepEqual([...q.tryReceive()!.data], [0]);
    assert.equal(q.attributes.currentMessages, 3);
    await q.send(bytes(4), { timeout: 0 }); // room again: a zero timeout still sends
    assert.equal(q.attributes.currentMessages, 4);
  }));

// close, remove, timeouts, full queues, abort and cross-runtime senders: tests/conformance/queue_objects.ts.

test(
  "MessageQueue: attributes reject with ClosedError after close(); after unlink() an open handle keeps working",
  LONG,
  async () => {
    const n = name();
    const q = await MessageQueue.create(n, { maxMessages: 2, messageSize: 8 });
    const other = await MessageQueue.open(n);
    try {
      q.close();
      assert.throws(() => q.attributes, ClosedError);
      other.unlink();
      assert.equal(await exists(n), false);
      assert.throws(() => other.unlink(), NotFoundError);
      await assert.rejects(MessageQueue.unlink(n), NotFoundError);
      assert.equal(other.trySend(bytes(5)), true);
      assert.deepEqual([...other.tryReceive()!.data], [5]);
    } finally {
      q.close();
      other.close();
      await MessageQueue.unlink(n).catch(() => {});
    }
  },
);

test("MessageQueue.open() / create() / openOrCreate() report missing and existing names", async () => {
  const n = name();
  await assert.rejects(MessageQueue.open(n), (e: Error) => e instanceof NotFoundError && e.message.includes(n));
  const a = await MessageQueue.openOrCreate(n, { maxMessages: 3, messageSize: 16 });
  try {
    await assert.rejects(MessageQueue.create(n, { maxMessages: 3, messageSize: 16 }), AlreadyExistsError);
    using b = await MessageQueue.openOrCreate(n, { maxMessages: 5, messageSize: 99 });
    assert.equal(b.messageSize, 16); // the existing queue's
    b.trySend(bytes(1), { priority: 2 });
    assert.deepEqual(a.tryReceive(), { data: bytes(1), priority: 2 });
    using ro = await MessageQueue.open(n, { mode: "read" });
    await assert.rejects(ro.send(bytes(1)), TypeError);
    using wo = await MessageQueue.open(n, { mode: "write" });
    await assert.rejects(wo.receive(), TypeError);
  } finally {
    a.close();
    a.unlink();
  }
});

test("bad names, sizes and priorities are refused with TypeError / RangeError", async () => {
  const sizes = { maxMessages: 2, messageSize: 8 };
  for (const bad of ["no-slash", "/a/b", "/", "/" + "x".repeat(255), "/nul\0"]) {
    await assert.rejects(MessageQueue.create(bad, sizes), TypeError, bad);
    await assert.rejects(MessageQueue.open(bad), TypeError, bad);
  }
  await assert.rejects(mq.channel("/" + "x".repeat(253)), TypeError);
  for (const bad of [0, -1, 1.5, NaN, "8"]) {
    await assert.rejects(MessageQueue.create(name(), { maxMessages: 2, messageSize: bad as number }), RangeError);
    await assert.rejects(MessageQueue.create(name(), { maxMessages: bad as number, messageSize: 8 }), RangeError);
  }
  await withQueue(async (q) => {
    for (const priority of [-1, 32, 1.5]) await assert.rejects(q.send(bytes(1), { priority }), RangeError);
    assert.throws(() => q.trySend(bytes(1), { priority: 32 }), RangeError);
  });
});

test("a message larger than messageSize is rejected with MessageTooLargeError and nothing is sent", () =>
  withQueue(async (q) => {
    const e = await q.send(new Uint8Array(65)).then(() => undefined, (e) => e);
    assert.ok(e instanceof MessageTooLargeError, `got ${e}`);
    assert.equal(e.size, 65);
    assert.equal(e.limit, 64);
    assert.throws(() => q.trySend(new Uint8Array(65)), MessageTooLargeError);
    assert.equal(q.attributes.currentMessages, 0);
    await q.send(new Uint8Array(64));
    assert.equal((await q.receive()).data.byteLength, 64);
  }));

test("sizes over a kernel limit fail with a message naming the limit", async () => {
  const n = name();
  const e = await MessageQueue.create(n, { maxMessages: 2, messageSize: 64 * 1024 * 1024 }).then(
    () => undefined,
    (e) => e,
  );
  assert.ok(e instanceof IpcError, `got ${e}`);
  assert.match(e.message, /^Cannot create message queue "\/ipckit-test-mq-\w+": messageSize 67108864 exceeds/);
  assert.match(e.message, /HARD_MSGSIZEMAX|msgsize_max/);
  const e2 = await MessageQueue.create(n, { maxMessages: 1_000_000, messageSize: 8 }).then(() => undefined, (e) => e);
  assert.ok(e2 instanceof IpcError, `got ${e2}`);
  assert.match(e2.message, /maxMessages 1000000 exceeds .*(HARD_MSGMAX|msg_max)/);
  assert.equal(await exists(n), false);
});

/** Runs a Python snippet with the ctypes mq bindings in scope; resolves with its exit code. */
async function python(code: string, ...args: string[]): Promise<number | null> {
  const prelude = `
import ctypes, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.mq_open.restype = ctypes.c_int
libc.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
libc.mq_send.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint]
libc.mq_receive.restype = ctypes.c_ssize_t
libc.mq_receive.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint)]
def check(r):
    if r < 0: raise OSError(ctypes.get_errno(), "mq call failed")
    return r
`;
  const rt = await runtime();
  const child = rt.spawn(["python3", "-c", prelude + code, ...args], { stdio: "null", stderr: "inherit" });
  return (await child.exited).code;
}

test("Python (ctypes) receives what TypeScript sent, by priority", LONG, () =>
  withQueue(async (q, n) => {
    await q.send(text.encode("low"), { priority: 1 });
    await q.send(text.encode("high"), { priority: 7 });
    await q.send(new Uint8Array(0), { priority: 0 });
    const code = await python(
      `
fd = check(libc.mq_open(sys.argv[1].encode(), 0, 0, None))
buf = ctypes.create_string_buffer(64)
prio = ctypes.c_uint()
got = []
for _ in range(3):
    n = check(libc.mq_receive(fd, buf, 64, ctypes.byref(prio)))
    got.append((buf.raw[:n], prio.value))
sys.exit(0 if got == [(b"high", 7), (b"low", 1), (b"", 0)] else 10)
`,
      n,
    );
    assert.equal(code, 0);
  }));

test("TypeScript receives what Python (ctypes) sent, by priority", LONG, () =>
  withQueue(async (q, n) => {
    const code = await python(
      `
fd = check(libc.mq_open(sys.argv[1].encode(), 1, 0, None))
for data, prio in [(b"one", 2), (b"two", 2), (b"\\x00\\xffbin", 9)]:
    check(libc.mq_send(fd, data, len(data), prio))
`,
      n,
    );
    assert.equal(code, 0);
    const got = [];
    for (let i = 0; i < 3; i++) {
      const m = await q.receive({ timeout: 60_000 });
      got.push([[...m.data], m.priority]);
    }
    assert.deepEqual(got, [[[0, 255, 98, 105, 110], 9], [[...text.encode("one")], 2], [[...text.encode("two")], 2]]);
  }));

test("mq.channel() speaks the documented wire format (HELLO, DATA, MORE, END) to a raw queue peer", LONG, async () => {
  const n = name();
  const pending = mq.channel(n, { create: true, messageSize: 16, maxMessages: 4 });
  let toPeer: MessageQueue | undefined;
  let fromPeer: MessageQueue | undefined;
  try {
    toPeer = await openSoon(`${n}-0`);
    fromPeer = await MessageQueue.open(`${n}-1`);
    const hello = await toPeer.receive({ timeout: 60_000 });
    assert.equal(hello.data[0], 3);
    assert.equal(new DataView(hello.data.buffer).getUint32(1, true), (await runtime()).pid);
    const pid = new Uint8Array(5);
    pid[0] = 3;
    new DataView(pid.buffer).setUint32(1, (await runtime()).pid, true);
    await fromPeer.send(pid);
    const ch = await pending;
    // Names are gone once the peer attached.
    assert.equal(await exists(`${n}-0`), false);
    assert.equal(await exists(`${n}-1`), false);
    await fromPeer.send(bytes(0, 1, 2)); // DATA [1, 2]
    await fromPeer.send(bytes(0)); // DATA [] (an empty message)
    await fromPeer.send(bytes(1, ...new Array(15).fill(7))); // MORE 15 x 7
    await fromPeer.send(bytes(0, 8)); // DATA [8]: completes the 16-byte message
    await fromPeer.send(bytes(2)); // END
    assert.deepEqual([...await ch.receive({ timeout: 60_000 })], [1, 2]);
    assert.deepEqual([...await ch.receive({ timeout: 60_000 })], []);
    assert.deepEqual([...await ch.receive({ timeout: 60_000 })], [...new Array(15).fill(7), 8]);
    await assert.rejects(ch.receive({ timeout: 60_000 }), ClosedError);
    await assert.rejects(ch.send(bytes(1)), ClosedError);
    await ch.close();
  } finally {
    toPeer?.close();
    fromPeer?.close();
    for (const s of ["-0", "-1"]) await MessageQueue.unlink(`${n}${s}`).catch(() => {});
  }
});

test("mq.channel() sends large messages in pieces of messageSize - 1 bytes, ended by END on close", LONG, async () => {
  const n = name();
  const pending = mq.channel(n, { create: true, messageSize: 16, maxMessages: 10 });
  let toPeer: MessageQueue | undefined;
  let fromPeer: MessageQueue | undefined;
  try {
    toPeer = await openSoon(`${n}-0`);
    fromPeer = await MessageQueue.open(`${n}-1`);
    await toPeer.receive({ timeout: 60_000 }); // HELLO
    await fromPeer.send(bytes(3, 1, 0, 0, 0)); // HELLO from pid 1 (alive: init)
    const ch = await pending;
    const big = new Uint8Array(40).map((_, i) => i);
    await ch.send(big);
    const pieces = [];
    for (let i = 0; i < 3; i++) pieces.push([...(await toPeer.receive({ timeout: 60_000 })).data]);
    assert.deepEqual(pieces, [[1, ...big.slice(0, 15)], [1, ...big.slice(15, 30)], [0, ...big.slice(30)]]);
    await ch.close();
    assert.deepEqual([...(await toPeer.receive({ timeout: 60_000 })).data], [2]);
  } finally {
    toPeer?.close();
    fromPeer?.close();
    for (const s of ["-0", "-1"]) await MessageQueue.unlink(`${n}${s}`).catch(() => {});
  }
});

test("mq.channel() waiting for a peer can be aborted, and leaves no queue behind", LONG, async () => {
  const n = name();
  const ac = new AbortController();
  const pending = mq.channel(n, { create: true, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(pending, (e: Error) => e.name === "AbortError");
  assert.equal(await exists(`${n}-0`), false);
  assert.equal(await exists(`${n}-1`), false);
  await assert.rejects(mq.channel(name()), NotFoundError);
});

test("no mq channel queue is left behind by the conformance suite, also after SIGKILLed peers", async () => {
  assert.ok(mqNames.size > 0);
  const left = [];
  for (const n of mqNames) {
    for (const s of ["-0", "-1"]) if (await exists(`${n}${s}`)) left.push(`${n}${s}`);
  }
  assert.deepEqual(left, []);
});
