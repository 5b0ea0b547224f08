import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  AlreadyExistsError,
  ClosedError,
  MessageTooLargeError,
  NamedSemaphore,
  NotFoundError,
  runtimeArgv,
  TimeoutError,
  unixDgram,
} from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { conformance } from "./conformance/registry.ts";
import { removeDir, stopChild, tempDir } from "./conformance/fixtures.ts";
import { asNobody, names, openTempDir, otherUserSkip, withUmask } from "./helpers/socket_modes.ts";

await conformance("unix_dgram");

const LONG = { timeout: 120_000 };
const text = new TextEncoder();
const untext = new TextDecoder();

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  try {
    await fn(dir);
  } finally {
    await removeDir(dir);
  }
}

// Binds argv[2], says hello to argv[1], answers every datagram with "py:" + it until "bye"; then, unbound, sends
// "anonymous" from a second socket.
const PY_ECHO = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[2])
s.sendto(b"hello", sys.argv[1])
while True:
    data, addr = s.recvfrom(300000)
    if data == b"bye":
        break
    s.sendto(b"py:" + data, addr)
anon = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
anon.sendto(b"anonymous", sys.argv[1])
`;

test(
  "unix_dgram: a Python socket is a peer: hello, echoes up to the size limit, an unbound sender",
  LONG,
  () =>
    inTempDir(async (dir) => {
      const rt = await runtime();
      const socket = await unixDgram.bind(`${dir}/js`);
      const py = rt.spawn(["python3", "-c", PY_ECHO, `${dir}/js`, `${dir}/py`], { stdio: "null" });
      try {
        const hello = await socket.receive({ timeout: 60_000 });
        assert.deepEqual([untext.decode(hello.data), hello.from], ["hello", `${dir}/py`]);
        for (const size of [0, 1, 5000, 200_000]) {
          const m = new Uint8Array(size).fill(size & 255);
          await socket.send(m, hello.from);
          const back = await socket.receive({ timeout: 60_000 });
          assert.equal(untext.decode(back.data.subarray(0, 3)), "py:");
          assert.deepEqual(back.data.subarray(3), m);
        }
        await socket.send(text.encode("bye"), hello.from);
        const anon = await socket.receive({ timeout: 60_000 });
        assert.deepEqual([untext.decode(anon.data), anon.from], ["anonymous", ""]);
        assert.equal((await py.exited).code, 0);
      } finally {
        py.kill("SIGKILL");
        await stopChild(py);
        await socket.close();
      }
    }),
);

test(
  "unix_dgram: bind creates the socket file and close removes it; abstract names leave no file",
  LONG,
  () =>
    inTempDir(async (dir) => {
      const rt = await runtime();
      const path = `${dir}/s`;
      const socket = await unixDgram.bind(path);
      assert.equal(socket.address, path);
      assert.equal(await rt.exists(path), true);
      await assert.rejects(unixDgram.bind(path), AlreadyExistsError);
      await socket.close();
      assert.equal(await rt.exists(path), false);

      const name = `@ipckit-test-${Math.random().toString(36).slice(2)}`;
      await using abstract = await unixDgram.bind(name);
      assert.equal(abstract.address, name);
      await using client = await unixDgram.connect(name);
      assert.match(client.address, /^@/);
      await client.send(text.encode("abstract"));
      const d = await abstract.receive({ timeout: 30_000 });
      assert.deepEqual([untext.decode(d.data), d.from], ["abstract", client.address]);
    }),
);

test(
  "unix_dgram: connect() keeps the peer's queued datagrams and drops the others",
  LONG,
  () =>
    inTempDir(async (dir) => {
      await using server = await unixDgram.bind(`${dir}/server`);
      await using a = await unixDgram.connect(`${dir}/server`);
      await using b = await unixDgram.connect(`${dir}/server`);
      await a.send(text.encode("a1"));
      await b.send(text.encode("b1"));
      await a.send(text.encode("a2"));
      const first = await server.receive({ timeout: 30_000 }); // a1
      // Let b1 and a2 reach the socket's queue before it becomes a channel.
      await new Promise((r) => setTimeout(r, 200));
      await using channel = await server.connect(first.from);
      assert.equal(untext.decode(await channel.receive({ timeout: 30_000 })), "a2");
      await assert.rejects(server.receive(), ClosedError);
      await channel.send(text.encode("back"));
      assert.equal(untext.decode(await a.receive({ timeout: 30_000 })), "back");
    }),
);

test(
  "unix_dgram: sizes: the default limit, sendBuffer raises it, larger sends are rejected whole",
  LONG,
  () =>
    inTempDir(async (dir) => {
      await using server = await unixDgram.bind(`${dir}/server`, { maxMessage: 1_000_000 }).catch((e) => {
        // maxMessage is bounded by this socket's own send buffer limit.
        assert.ok(e instanceof RangeError);
        return unixDgram.bind(`${dir}/server`, { sendBuffer: 1_000_000, maxMessage: 1_000_000 });
      });
      await using small = await unixDgram.connect(`${dir}/server`);
      const limit = small.capabilities.maxMessage;
      assert.equal(limit, unixDgram.capabilities.maxMessage);
      await assert.rejects(small.send(new Uint8Array(limit + 1)), MessageTooLargeError);
      await using big = await unixDgram.connect(`${dir}/server`, { sendBuffer: 1_000_000 });
      assert.ok(big.capabilities.maxMessage > limit, `${big.capabilities.maxMessage} > ${limit}`);
      const m = new Uint8Array(limit + 1000).fill(3);
      await big.send(m);
      assert.deepEqual((await server.receive({ timeout: 30_000 })).data, m);
    }),
);

test(
  "unix_dgram: a receiver with a smaller maxMessage drops larger datagrams and counts them",
  LONG,
  () =>
    inTempDir(async (dir) => {
      await using server = await unixDgram.bind(`${dir}/server`, { maxMessage: 100 });
      await using client = await unixDgram.connect(`${dir}/server`);
      await client.send(new Uint8Array(101));
      await client.send(new Uint8Array(100));
      assert.equal((await server.receive({ timeout: 30_000 })).data.byteLength, 100);
      assert.equal(server.dropped, 1);
    }),
);

test(
  "unix_dgram: a full receiver makes the sender wait; close() releases a waiting send",
  LONG,
  () =>
    inTempDir(async (dir) => {
      const server = await unixDgram.bind(`${dir}/server`, { highWaterMark: 1 });
      const client = await unixDgram.connect(`${dir}/server`);
      try {
        // The server reads one datagram into its queue, then stops; the kernel queue fills; sends then wait.
        let sent = 0;
        const sending = (async () => {
          for (let i = 0; i < 100; i++) {
            await client.send(new Uint8Array(1000));
            sent++;
          }
        })();
        await new Promise((r) => setTimeout(r, 500));
        assert.ok(sent < 100, `all ${sent} sends went through with nobody reading`);
        await client.close();
        await assert.rejects(sending, ClosedError);
        for (let i = 0; i < sent; i++) assert.equal((await server.receive({ timeout: 30_000 })).data.byteLength, 1000);
      } finally {
        await client.close();
        await server.close();
      }
    }),
);

test("unix_dgram: bad input and missing peers get clear errors", LONG, () =>
  inTempDir(async (dir) => {
    await assert.rejects(unixDgram.bind(""), TypeError);
    await assert.rejects(unixDgram.bind("/tmp/a\0b"), TypeError);
    await assert.rejects(unixDgram.bind(`/tmp/${"x".repeat(200)}`), RangeError);
    await assert.rejects(unixDgram.bind(`${dir}/no/such/dir/s`), NotFoundError);
    await assert.rejects(unixDgram.connect(`${dir}/nobody`), NotFoundError);
    await assert.rejects(unixDgram.bind(`${dir}/s`, { sendBuffer: 10 }), RangeError);
    await using s = await unixDgram.bind(`${dir}/s`);
    await assert.rejects(s.send(new Uint8Array(1), `${dir}/nobody`), NotFoundError);
    await assert.rejects(s.send(new Uint8Array(1), 42 as unknown as string), TypeError);
    // A socket file whose owner is gone: connect says nobody is bound there.
    const rt = await runtime();
    const stale = await unixDgram.bind(`${dir}/stale`);
    await stale.close();
    assert.equal(await rt.exists(`${dir}/stale`), false);
  }));

/** How many datagrams a receiver's kernel queue holds before senders wait (net.unix.max_dgram_qlen, plus one). */
const QUEUE = Number(readFileSync("/proc/sys/net/unix/max_dgram_qlen", "utf8")) + 1;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Rejects with a clear message when `p` takes longer than `ms` (instead of the test hanging until its timeout). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

test(
  "unix_dgram: 16 idle sockets and waiting sends hold no pool threads from other native waits; close ends them all",
  LONG,
  () =>
    inTempDir(async (dir) => {
      const rt = await runtime();
      const idle = await Promise.all(range(16).map((i) => unixDgram.bind(`${dir}/idle${i}`)));
      const receives = idle.map((s) => s.receive());
      const ends = receives.map((r) => r.then(() => undefined, (e: unknown) => e));
      // Receivers that read one datagram and then nothing: their senders wait for room, to an address (a bound
      // socket) and on a channel (a connected one).
      const full = await unixDgram.bind(`${dir}/full`, { highWaterMark: 1 });
      const sender = await unixDgram.bind(`${dir}/sender`);
      const channel = await unixDgram.connect(`${dir}/full`);
      const sends = Promise.allSettled(
        range(QUEUE + 20).flatMap(() => [
          sender.send(new Uint8Array(100), full.address),
          channel.send(new Uint8Array(100)),
        ]),
      );
      const sem = await NamedSemaphore.create(`/ipckit-test-sem-${rt.pid}-${Math.random().toString(36).slice(2)}`, {
        value: 0,
      });
      try {
        // sem_timedwait runs on the same pool as the sockets' waits used to: it still gets a thread.
        await within(assert.rejects(sem.acquire({ timeout: 100 }), TimeoutError), 60_000, "a semaphore timeout");
        setTimeout(() => sem.release(), 50);
        (await within(sem.acquire({ timeout: 60_000 }), 60_000, "a semaphore acquire")).release();
        // The idle sockets still receive.
        await idle[0]!.send(text.encode("wake"), idle[3]!.address);
        const woken = await within(receives[3]!, 60_000, "a receive");
        assert.deepEqual([untext.decode(woken.data), woken.from], ["wake", idle[0]!.address]);
      } finally {
        await sem.close();
        await NamedSemaphore.unlink(sem.name);
        // Senders first: their waits end with ClosedError (a closed receiver would fail them differently).
        await within(Promise.all([sender, channel, full, ...idle].map((s) => s.close())), 60_000, "close()");
      }
      const ended = await Promise.all(ends);
      for (const [i, e] of ended.entries()) if (i !== 3) assert.ok(e instanceof ClosedError, `receive ${i}: ${e}`);
      const rejected = (await sends).flatMap((r) => (r.status === "rejected" ? [r.reason] : []));
      assert.ok(rejected.length > 0, "some sends waited for room");
      for (const e of rejected) assert.ok(e instanceof ClosedError, `a waiting send ended with ${e}`);
    }),
);

test(
  "unix_dgram: a send to a full bound receiver waits (no pool thread) and goes through once it reads",
  LONG,
  () =>
    inTempDir(async (dir) => {
      const receiver = await unixDgram.bind(`${dir}/receiver`, { highWaterMark: 1 });
      const sender = await unixDgram.bind(`${dir}/sender`);
      try {
        const count = QUEUE + 30;
        let sent = 0;
        const sending = Promise.all(
          range(count).map((i) => sender.send(new Uint8Array([i & 255]), receiver.address).then(() => void sent++)),
        );
        // The receiver read one datagram into its queue and stopped: more than a kernel queue cannot have gone.
        await new Promise((r) => setTimeout(r, 200));
        assert.ok(sent < count, `all ${sent} sends went through with nobody reading`);
        for (const i of range(count)) {
          const d = await within(receiver.receive(), 60_000, `receive ${i}`);
          assert.deepEqual([d.data[0], d.from], [i & 255, sender.address]);
        }
        await within(sending, 60_000, "the waiting sends");
        assert.equal(sent, count);
      } finally {
        await sender.close();
        await receiver.close();
      }
    }),
);

test(
  "unix_dgram: bind a collector, connect, send, receive, close, 200 times, with idle sockets around",
  LONG,
  () =>
    inTempDir(async (dir) => {
      const collector = await unixDgram.bind(`${dir}/collector`);
      const idle = await Promise.all(range(4).map((i) => unixDgram.bind(`${dir}/idle${i}`)));
      try {
        for (let i = 0; i < 200; i++) {
          const a = await unixDgram.connect(collector.address);
          const b = await unixDgram.connect(collector.address);
          await a.send(text.encode(`a${i}`));
          await b.send(text.encode(`b${i}`));
          const got = [await collector.receive({ timeout: 60_000 }), await collector.receive({ timeout: 60_000 })];
          assert.deepEqual(got.map((d) => untext.decode(d.data)).sort(), [`a${i}`, `b${i}`]);
          await within(Promise.all([a.close(), b.close()]), 60_000, `close() in round ${i}`);
        }
      } finally {
        await within(Promise.all([collector, ...idle].map((s) => s.close())), 60_000, "close()");
      }
    }),
);

for (const child of RUNTIMES) {
  test(
    `unix_dgram: a ${child} process with idle sockets exits on its own after close(), and at once on exit()`,
    LONG,
    async () => {
      const rt = await runtime();
      const script = rt.fromFileUrl(new URL("./helpers/unix_dgram_child.ts", import.meta.url));
      const root = rt.fromFileUrl(new URL("../", import.meta.url));
      for (const mode of ["close", "exit"]) {
        const prefix = `@ipckit-test-${rt.pid}-${Math.random().toString(36).slice(2)}`;
        const p = rt.spawn([...runtimeArgv(child, script), prefix, mode], { cwd: root, stdio: "inherit" });
        try {
          assert.deepEqual(await within(p.exited, 60_000, `the ${child} child (${mode})`), { code: 0, signal: null });
        } finally {
          p.kill("SIGKILL");
          await stopChild(p);
        }
      }
    },
  );
}

test("unixDgram.bind() creates its socket file 0600 even under umask 000, and `mode` sets other bits exactly", async () => {
  const rt = await runtime();
  const dir = await openTempDir();
  try {
    await withUmask(0, async () => {
      await using _a = await unixDgram.bind(`${dir}/a`);
      assert.equal((await rt.fileInfo(`${dir}/a`))?.mode, 0o600);
      await using b = await unixDgram.bind(`${dir}/b`, { mode: 0o660 });
      assert.equal((await rt.fileInfo(`${dir}/b`))?.mode, 0o660);
      await using c = await unixDgram.connect(`${dir}/b`, { bind: `${dir}/c` });
      assert.equal((await rt.fileInfo(`${dir}/c`))?.mode, 0o600);
      await c.send(text.encode("from c"));
      const got = await b.receive({ timeout: 10_000 });
      assert.equal(got.from, `${dir}/c`); // the sender's address is its own path
    });
    await withUmask(0o077, async () => {
      await using _d = await unixDgram.bind(`${dir}/d`, { mode: 0o666 }); // wider than the umask allows
      assert.equal((await rt.fileInfo(`${dir}/d`))?.mode, 0o666);
    });
    assert.deepEqual(names(dir), []);
  } finally {
    await removeDir(dir);
  }
});

test(
  "a datagram socket file 0600 refuses another user's datagram; mode 0o666 takes it (root: Python as nobody)",
  LONG,
  async (t) => {
    const skip = await otherUserSkip();
    if (skip) return t.skip(skip);
    const dir = await openTempDir();
    try {
      await withUmask(0, async () => {
        await using _closed = await unixDgram.bind(`${dir}/private`);
        assert.equal(await asNobody("dgram", `${dir}/private`), "EACCES");
        await using open = await unixDgram.bind(`${dir}/public`, { mode: 0o666 });
        assert.equal(await asNobody("dgram", `${dir}/public`), "ok");
        assert.equal(untext.decode((await open.receive({ timeout: 10_000 })).data), "nobody");
      });
    } finally {
      await removeDir(dir);
    }
  },
);

test("unixDgram.bind() validates mode with RangeError", async () => {
  await assert.rejects(unixDgram.bind("/tmp/ipckit-never.dgram", { mode: 0o1000 }), RangeError);
  await assert.rejects(unixDgram.connect("/tmp/ipckit-never.dgram", { bind: "/tmp/x", mode: -1 }), RangeError);
});
