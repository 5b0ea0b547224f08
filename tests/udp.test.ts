import { test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, ClosedError, MessageTooLargeError, udp } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { conformance } from "./conformance/registry.ts";
import { stopChild } from "./conformance/fixtures.ts";

await conformance("udp");

const LONG = { timeout: 120_000 };
const text = new TextEncoder();
const untext = new TextDecoder();

// Says hello from its own socket, then answers every datagram with "py:" + it, until "bye".
const PY_ECHO = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.sendto(b"hello", ("127.0.0.1", int(sys.argv[1])))
while True:
    data, addr = s.recvfrom(70000)
    if data == b"bye":
        break
    s.sendto(b"py:" + data, addr)
`;

test("udp: a Python socket is a peer: hello, echoes of every size, bye", LONG, async () => {
  const rt = await runtime();
  const socket = await udp.bind();
  const py = rt.spawn(["python3", "-c", PY_ECHO, String(socket.address.port)], { stdio: "null" });
  try {
    const hello = await socket.receive({ timeout: 60_000 });
    assert.equal(untext.decode(hello.data), "hello");
    assert.equal(hello.from.host, "127.0.0.1");
    await using channel = await socket.connect(hello.from);
    assert.equal(socket.closed, true);
    for (const size of [0, 1, 1000, 60_000]) {
      const m = new Uint8Array(size).fill(7);
      // Loopback does not lose a datagram while the receiver keeps up; a lost one would time out, not pass.
      await channel.send(m);
      const back = await channel.receive({ timeout: 60_000 });
      assert.equal(untext.decode(back.subarray(0, 3)), "py:");
      assert.deepEqual(back.subarray(3), m);
    }
    await channel.send(text.encode("bye"));
    assert.equal((await py.exited).code, 0);
  } finally {
    py.kill("SIGKILL");
    await stopChild(py);
    await socket.close();
  }
});

test("udp: a bound socket talks to several peers and tells them apart", LONG, async () => {
  await using server = await udp.bind();
  await using one = await udp.connect(server.address);
  await using two = await udp.connect(server.address);
  await one.send(text.encode("one"));
  const a = await server.receive({ timeout: 30_000 });
  await two.send(text.encode("two"));
  const b = await server.receive({ timeout: 30_000 });
  assert.equal(untext.decode(a.data), "one");
  assert.equal(untext.decode(b.data), "two");
  assert.notEqual(a.from.port, b.from.port);
  await server.send(text.encode("to two"), b.from);
  await server.send(text.encode("to one"), a.from);
  assert.equal(untext.decode(await one.receive({ timeout: 30_000 })), "to one");
  assert.equal(untext.decode(await two.receive({ timeout: 30_000 })), "to two");
  // A connected channel ignores datagrams from anyone but its peer.
  await using stranger = await udp.bind();
  await stranger.send(text.encode("spam"), one.address);
  await server.send(text.encode("real"), a.from);
  assert.equal(untext.decode(await one.receive({ timeout: 30_000 })), "real");
});

test("udp: datagrams over the socket's maxMessage are dropped and counted", LONG, async () => {
  await using server = await udp.bind({ maxMessage: 100 });
  await using client = await udp.connect(server.address);
  await client.send(new Uint8Array(101));
  await client.send(new Uint8Array(100));
  assert.equal((await server.receive({ timeout: 30_000 })).data.byteLength, 100);
  assert.equal(server.dropped, 1);
});

test("udp: bad input gets clear errors", LONG, async () => {
  await assert.rejects(udp.bind({ port: 70_000 }), RangeError);
  await assert.rejects(udp.bind({ port: -1 }), RangeError);
  await assert.rejects(udp.bind({ host: "not an address" }), TypeError);
  await assert.rejects(udp.connect({ port: 0 }), RangeError);
  await assert.rejects(udp.bind({ maxMessage: 70_000 }), RangeError);
  await using a = await udp.bind();
  await assert.rejects(udp.bind({ port: a.address.port }), AlreadyExistsError);
  await assert.rejects(a.send(new Uint8Array(65_508), { port: 9, host: "127.0.0.1" }), MessageTooLargeError);
  await assert.rejects(a.send(new Uint8Array(1), { port: 0, host: "127.0.0.1" }), RangeError);
  await assert.rejects(a.send("x" as unknown as Uint8Array, a.address), TypeError);
  await a.close();
  await a.close();
  await assert.rejects(a.send(new Uint8Array(1), a.address), ClosedError);
  await assert.rejects(a.receive(), ClosedError);
  await assert.rejects(a.connect({ port: 9, host: "127.0.0.1" }), ClosedError);
});

test("udp: IPv6 loopback works where the machine has it", LONG, async (t) => {
  const socket = await udp.bind({ host: "::1" }).catch(() => undefined);
  if (!socket) return t.skip("no IPv6 loopback on this machine");
  await using server = socket;
  await using client = await udp.connect(server.address);
  assert.equal(client.capabilities.maxMessage, udp.MAX_DATAGRAM_IPV6);
  await client.send(text.encode("six"));
  assert.equal(untext.decode((await server.receive({ timeout: 30_000 })).data), "six");
});
