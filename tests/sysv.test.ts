import { test } from "node:test";
import assert from "node:assert/strict";
import {
  AlreadyExistsError,
  ClosedError,
  MessageTooLargeError,
  NotFoundError,
  PermissionError,
  sysv,
  SysvQueue,
  TimeoutError,
} from "../mod.ts";
import type { Channel } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { conformance } from "./conformance/registry.ts";
import { randomKey, sysvKeys } from "./conformance/fixtures_sysv.ts";

const fixture = await conformance("sysv");

const LONG = { timeout: 120_000 };
const text = new TextEncoder();
const untext = new TextDecoder();
const bytes = (...xs: number[]) => new Uint8Array(xs);
const ids = new Set<number>();

/** Runs `fn` with a fresh keyed queue, removed afterwards whatever happens. */
async function withQueue(fn: (q: SysvQueue, k: number) => Promise<void>): Promise<void> {
  let q: SysvQueue | undefined;
  let k = 0;
  for (let i = 0; !q; i++) {
    k = randomKey();
    try {
      q = await SysvQueue.create(k);
    } catch (e) {
      if (!(e instanceof AlreadyExistsError) || i > 10) throw e;
    }
  }
  ids.add(q.id);
  try {
    await fn(q, k);
  } finally {
    try {
      (await SysvQueue.fromId(q.id)).remove();
    } catch { /* removed by the test */ }
  }
}

test("SysvQueue.receive() selects by type: any, exact, and the lowest type <= |n|; FIFO within a type", () =>
  withQueue(async (q) => {
    for (const [type, b] of [[3, 1], [1, 2], [2, 3], [1, 4], [3, 5], [2, 6]] as const) await q.send(type, bytes(b));
    const first = await q.receive({ type: 2 });
    assert.deepEqual([first.type, ...first.data], [2, 3]);
    const low = await q.receive({ type: -3 });
    assert.deepEqual([low.type, ...low.data], [1, 2]);
    const low2 = q.tryReceive({ type: -3 })!;
    assert.deepEqual([low2.type, ...low2.data], [1, 4]);
    assert.equal(q.tryReceive({ type: -1 }), undefined);
    assert.equal(q.tryReceive({ type: 9 }), undefined);
    const rest = [];
    for (let m = q.tryReceive(); m; m = q.tryReceive()) rest.push([m.type, ...m.data]);
    assert.deepEqual(rest, [[3, 1], [3, 5], [2, 6]]);
  }));

test("SysvQueue info, trySend() on a full queue and tryReceive() on an empty one", () =>
  withQueue(async (q) => {
    const info = q.info;
    assert.equal(info.messages, 0);
    assert.equal(info.mode, 0o600);
    assert.ok(info.maxBytes >= 1024);
    assert.equal(q.tryReceive(), undefined);
    const big = new Uint8Array(q.maxMessage);
    let n = 0;
    while (q.trySend(1, big)) n++;
    assert.equal(n, Math.floor(info.maxBytes / q.maxMessage));
    assert.equal(q.info.messages, n);
    assert.equal(q.info.bytes, n * q.maxMessage);
    assert.equal((await q.receive()).data.byteLength, q.maxMessage);
    await q.send(1, big, { timeout: 0 }); // room again: a zero timeout still sends
    assert.equal(q.info.messages, n);
  }));

// Timeouts, full queues, abort and cross-runtime senders: tests/conformance/queue_objects.ts.

test(
  "SysvQueue.receive({ type }) waits for a message of its type; a message of another type stays",
  LONG,
  () =>
    withQueue(async (q, k) => {
      await assert.rejects(q.receive({ type: 5, timeout: 0 }), TimeoutError);
      await assert.rejects(q.receive({ type: 5, timeout: -1 }), RangeError);
      const pending = q.receive({ type: 5, timeout: 60_000 });
      using other = await SysvQueue.open(k);
      assert.equal(other.id, q.id);
      await other.send(4, bytes(4));
      await other.send(5, bytes(5));
      assert.deepEqual([...(await pending).data], [5]);
      assert.deepEqual([...(await q.receive({ timeout: 0 })).data], [4]);
    }),
);

test("a message over maxSize is refused with MessageTooLargeError (E2BIG) and stays in the queue", () =>
  withQueue(async (q) => {
    await q.send(3, new Uint8Array(100).fill(9));
    const e = (() => {
      try {
        q.tryReceive({ maxSize: 99 });
      } catch (e) {
        return e;
      }
    })();
    assert.ok(e instanceof MessageTooLargeError, `got ${e}`);
    assert.equal(e.limit, 99);
    await assert.rejects(q.receive({ maxSize: 10 }), MessageTooLargeError);
    assert.equal(q.info.messages, 1);
    const m = await q.receive({ maxSize: 100 });
    assert.equal(m.data.byteLength, 100);
  }));

test("a message over msgmax is refused with MessageTooLargeError naming /proc/sys/kernel/msgmax", () =>
  withQueue(async (q) => {
    const { msgmax } = await sysv.limits();
    assert.equal(q.maxMessage, msgmax);
    const e = await q.send(1, new Uint8Array(msgmax + 1)).then(() => undefined, (e) => e);
    assert.ok(e instanceof MessageTooLargeError, `got ${e}`);
    assert.equal(e.size, msgmax + 1);
    assert.equal(e.limit, msgmax);
    assert.match(e.message, /\/proc\/sys\/kernel\/msgmax/);
    assert.throws(() => q.trySend(1, new Uint8Array(msgmax + 1)), MessageTooLargeError);
    assert.equal(q.info.messages, 0);
    await q.send(1, new Uint8Array(msgmax));
    assert.equal((await q.receive()).data.byteLength, msgmax);
  }));

test("remove() destroys the queue: this handle rejects with ClosedError, others with NotFoundError", async () => {
  await withQueue(async (q, k) => {
    const other = await SysvQueue.open(k);
    await q.send(1, bytes(1));
    q.remove();
    assert.equal(q.closed, true);
    await assert.rejects(q.send(1, bytes(1)), ClosedError);
    await assert.rejects(q.receive(), ClosedError);
    assert.throws(() => q.remove(), ClosedError);
    await assert.rejects(
      other.send(1, bytes(1)),
      (e: Error) => e instanceof NotFoundError && /removed/.test(e.message),
    );
    assert.throws(() => other.tryReceive(), NotFoundError);
    assert.throws(() => other.info, NotFoundError);
    assert.throws(() => other.remove(), NotFoundError);
    await assert.rejects(SysvQueue.open(k), NotFoundError);
    await assert.rejects(SysvQueue.fromId(q.id), NotFoundError);
  });
});

test(
  "a waiting receive() rejects when the queue is removed elsewhere, and close() only forgets the handle",
  LONG,
  () =>
    withQueue(async (q, k) => {
      const other = await SysvQueue.open(k);
      const pending = assert.rejects(other.receive({ timeout: 60_000 }), NotFoundError);
      await new Promise((r) => setTimeout(r, 30));
      q.close();
      q.close();
      assert.equal((await SysvQueue.fromId(q.id)).id, q.id); // still there
      await assert.rejects(q.receive(), ClosedError);
      (await SysvQueue.fromId(q.id)).remove();
      await pending;
    }),
);

test("create() / open() / openOrCreate() / private() report missing and existing queues", async () => {
  const k = randomKey();
  await assert.rejects(
    SysvQueue.open(k),
    (e: Error) => e instanceof NotFoundError && /key 0x[0-9a-f]+/.test(e.message),
  );
  const a = await SysvQueue.openOrCreate(k, { mode: 0o640 });
  ids.add(a.id);
  try {
    assert.equal(a.info.mode, 0o640);
    await assert.rejects(SysvQueue.create(k), AlreadyExistsError);
    const b = await SysvQueue.openOrCreate(k);
    assert.equal(b.id, a.id);
    const p = await SysvQueue.private();
    ids.add(p.id);
    try {
      assert.notEqual(p.id, a.id);
      await p.send(1, bytes(1));
      assert.equal((await SysvQueue.fromId(p.id)).tryReceive()?.data[0], 1);
    } finally {
      p.remove();
    }
  } finally {
    a.remove();
  }
});

test("maxBytes sets the queue's capacity (msg_qbytes)", async () => {
  const k = randomKey();
  const q = await SysvQueue.create(k, { maxBytes: 4096 });
  ids.add(q.id);
  try {
    assert.equal(q.info.maxBytes, 4096);
    const e = await q.send(1, new Uint8Array(5000)).then(() => undefined, (e) => e);
    assert.ok(e instanceof MessageTooLargeError, `got ${e}`);
    assert.match(e.message, /msg_qbytes 4096/);
  } finally {
    q.remove();
  }
});

test("maxBytes above msgmnb needs CAP_SYS_RESOURCE: PermissionError naming msgmnb, and no queue is left", async () => {
  const k = randomKey();
  const want = (await sysv.limits()).msgmnb * 4;
  const q = await SysvQueue.create(k, { maxBytes: want }).catch((e) => e);
  if (q instanceof SysvQueue) {
    ids.add(q.id);
    assert.equal(q.info.maxBytes, want); // privileged: granted
    q.remove();
    return;
  }
  assert.ok(q instanceof PermissionError, `got ${q}`);
  assert.match(q.message, /\/proc\/sys\/kernel\/msgmnb \(\d+\).*CAP_SYS_RESOURCE/);
  await assert.rejects(SysvQueue.open(k), NotFoundError);
});

test("bad types, sizes, keys and paths are refused with TypeError / RangeError / NotFoundError", async () => {
  await assert.rejects(sysv.key("/nonexistent-ipckit/dir"), NotFoundError);
  await assert.rejects(sysv.key("/tmp", 0), RangeError);
  await assert.rejects(sysv.key("/tmp", 256), RangeError);
  await assert.rejects(sysv.key(""), TypeError);
  assert.equal(await sysv.key("/tmp", 9), await sysv.key("/tmp", 9));
  assert.notEqual(await sysv.key("/tmp", 9), await sysv.key("/tmp", 10));
  assert.equal(await sysv.key(0xdeadbeef), 0xdeadbeef | 0);
  for (const bad of [0, 1.5, 2 ** 32, NaN]) await assert.rejects(SysvQueue.open(bad), RangeError, String(bad));
  for (const bad of [-1, 0o1000]) await assert.rejects(SysvQueue.create(randomKey(), { mode: bad }), RangeError);
  for (const bad of [0, -5]) await assert.rejects(SysvQueue.create(randomKey(), { maxBytes: bad }), RangeError);
  await assert.rejects(SysvQueue.fromId(-1), RangeError);
  await withQueue(async (q) => {
    for (const type of [0, -1, 1.5, NaN]) {
      await assert.rejects(q.send(type, bytes(1)), RangeError, String(type));
      assert.throws(() => q.trySend(type, bytes(1)), RangeError);
    }
    await assert.rejects(q.send(1, "x" as unknown as Uint8Array), TypeError);
    await assert.rejects(q.receive({ maxSize: -1 }), RangeError);
    await assert.rejects(q.receive({ type: 0.5 }), RangeError);
    assert.equal(q.info.messages, 0);
  });
});

/** Runs a Python snippet with ctypes msgget/msgsnd/msgrcv in scope; resolves with its exit code. */
async function python(code: string, ...args: string[]): Promise<number | null> {
  const prelude = `
import ctypes, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.msgget.argtypes = [ctypes.c_int, ctypes.c_int]
libc.msgsnd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.msgrcv.restype = ctypes.c_ssize_t
libc.msgrcv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long, ctypes.c_int]
class MsgBuf(ctypes.Structure):
    _fields_ = [("mtype", ctypes.c_long), ("mtext", ctypes.c_char * 8192)]
def check(r):
    if r < 0: raise OSError(ctypes.get_errno(), "msg call failed")
    return r
`;
  const rt = await runtime();
  const child = rt.spawn(["python3", "-c", prelude + code, ...args], { stdio: "null", stderr: "inherit" });
  return (await child.exited).code;
}

test("Python (ctypes msgrcv) receives what TypeScript sent, by type", LONG, () =>
  withQueue(async (q, k) => {
    await q.send(5, text.encode("five"));
    await q.send(2, text.encode("two"));
    await q.send(2, new Uint8Array(0));
    const code = await python(
      `
qid = check(libc.msgget(int(sys.argv[1]), 0))
buf = MsgBuf()
got = []
for t in (2, 2, 0):
    n = check(libc.msgrcv(qid, ctypes.byref(buf), 8192, t, 0o4000))
    got.append((buf.mtype, buf.mtext[:n]))
sys.exit(0 if got == [(2, b"two"), (2, b""), (5, b"five")] else 10)
`,
      String(k),
    );
    assert.equal(code, 0);
    assert.equal(q.info.messages, 0);
  }));

test("TypeScript receives what Python (ctypes msgsnd) sent, by type", LONG, () =>
  withQueue(async (q, k) => {
    const code = await python(
      `
qid = check(libc.msgget(int(sys.argv[1]), 0))
for t, data in [(7, b"seven"), (1, b"\\x00\\xffbin"), (2**40, b"big type")]:
    buf = MsgBuf()
    buf.mtype = t
    ctypes.memmove(ctypes.addressof(buf) + MsgBuf.mtext.offset, data, len(data))
    check(libc.msgsnd(qid, ctypes.byref(buf), len(data), 0))
`,
      String(k),
    );
    assert.equal(code, 0);
    const low = await q.receive({ type: -7, timeout: 60_000 });
    assert.deepEqual([low.type, ...low.data], [1, 0, 255, 98, 105, 110]);
    const seven = await q.receive({ type: 7 });
    assert.deepEqual([seven.type, untext.decode(seven.data)], [7, "seven"]);
    const big = await q.receive();
    assert.deepEqual([big.type, untext.decode(big.data)], [2 ** 40, "big type"]);
  }));

/** Opens the queue `k`, waiting for a creator that is about to make it. */
async function openSoon(k: number): Promise<SysvQueue> {
  for (let i = 0;; i++) {
    try {
      return await SysvQueue.open(k);
    } catch (e) {
      if (!(e instanceof NotFoundError) || i > 1000) throw e;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A HELLO message from `pid`. */
function helloFrom(pid: number): Uint8Array {
  const m = new Uint8Array(5);
  m[0] = 3;
  new DataView(m.buffer).setUint32(1, pid, true);
  return m;
}

test("sysv.channel() speaks the documented wire format (types 1-4; HELLO, DATA, MORE, END)", LONG, async () => {
  const k = randomKey();
  const pid = (await runtime()).pid;
  const pending = sysv.channel(k, { create: true, queueBytes: 16384 });
  let raw: SysvQueue | undefined;
  try {
    raw = await openSoon(k);
    const hello = await raw.receive({ type: 3, timeout: 60_000 });
    assert.deepEqual([...hello.data.subarray(0, 5)], [...helloFrom(pid)]); // then the start-time tag
    assert.equal(hello.data.byteLength, 9);
    await raw.send(4, helloFrom(pid));
    const ch = await pending;
    await raw.send(2, bytes(0, 1, 2)); // DATA [1, 2]
    await raw.send(2, bytes(0)); // DATA []
    await raw.send(2, bytes(1, 7, 7)); // MORE
    await raw.send(2, bytes(0, 8)); // DATA: completes [7, 7, 8]
    await raw.send(2, bytes(2)); // END
    assert.deepEqual([...await ch.receive({ timeout: 60_000 })], [1, 2]);
    assert.deepEqual([...await ch.receive({ timeout: 60_000 })], []);
    assert.deepEqual([...await ch.receive({ timeout: 60_000 })], [7, 7, 8]);
    await assert.rejects(ch.receive({ timeout: 60_000 }), ClosedError);
    await assert.rejects(ch.send(bytes(1)), ClosedError);
    await ch.close(); // the peer closed first: this side removes the queue
    await assert.rejects(SysvQueue.open(k), NotFoundError);
  } finally {
    try {
      (await SysvQueue.open(k)).remove();
    } catch { /* gone */ }
  }
});

test("sysv.channel() sends large messages in pieces of msgmax - 1 bytes, then END on close", LONG, async () => {
  const k = randomKey();
  const pending = sysv.channel(k, { create: true });
  let raw: SysvQueue | undefined;
  try {
    raw = await openSoon(k);
    await raw.receive({ type: 3, timeout: 60_000 });
    await raw.send(4, helloFrom(1)); // the peer is pid 1 (init: alive)
    const ch = await pending;
    const piece = raw.maxMessage - 1;
    const big = new Uint8Array(2 * piece + 10).map((_, i) => i * 7);
    const sending = ch.send(big); // waits while the queue is full: read concurrently
    const got = [];
    for (let i = 0; i < 3; i++) got.push(await raw.receive({ type: 1, timeout: 60_000 }));
    await sending;
    assert.deepEqual(got.map((m) => [m.data[0], m.data.byteLength]), [[1, piece + 1], [1, piece + 1], [0, 11]]);
    assert.deepEqual(Uint8Array.from(got.flatMap((m) => [...m.data.subarray(1)])), big);
    await ch.close(); // the peer has not closed: the queue stays for it
    assert.deepEqual([...(await raw.receive({ type: 1, timeout: 60_000 })).data], [2]);
  } finally {
    try {
      (await SysvQueue.open(k)).remove();
    } catch { /* gone */ }
  }
});

test("sysv.channel() waiting for a peer can be aborted, and leaves no queue behind", LONG, async () => {
  const k = randomKey();
  const ac = new AbortController();
  const pending = sysv.channel(k, { create: true, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(pending, (e: Error) => e.name === "AbortError");
  await assert.rejects(SysvQueue.open(k), NotFoundError);
  await assert.rejects(sysv.channel(randomKey()), NotFoundError);
});

test("a second opener of a channel is refused (the greeting is taken), and the first keeps working", LONG, async () => {
  const { a, b, cleanup } =
    await (fixture.pair as () => Promise<{ a: Channel; b: Channel; cleanup(): Promise<void> }>)();
  try {
    const k = [...sysvKeys].at(-1)!;
    await assert.rejects(sysv.channel(k, { wait: 0 }), AlreadyExistsError);
    await a.send(bytes(1));
    assert.deepEqual([...await b.receive({ timeout: 60_000 })], [1]);
  } finally {
    await cleanup();
  }
});

test("no System V queue is left behind by these tests, also after SIGKILLed peers", async () => {
  assert.ok(sysvKeys.size > 0);
  const left = [];
  for (const k of sysvKeys) {
    try {
      const q = await SysvQueue.open(k);
      left.push(`key ${k} (id ${q.id})`);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }
  for (const id of ids) {
    try {
      await SysvQueue.fromId(id);
      left.push(`id ${id}`);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
    }
  }
  assert.deepEqual(left, []);
});
