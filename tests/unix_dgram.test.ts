import { test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, ClosedError, MessageTooLargeError, NotFoundError, unixDgram } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { datagramConformance } from "./conformance/datagram.ts";
import { fixture } from "./conformance/fixtures_unix_dgram.ts";
import { removeDir, stopChild, tempDir } from "./conformance/fixtures.ts";

datagramConformance(fixture);

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
