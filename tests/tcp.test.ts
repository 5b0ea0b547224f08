import { test } from "node:test";
import assert from "node:assert/strict";
import * as net from "node:net";
import { AlreadyExistsError, ClosedError, NotFoundError, tcp } from "../mod.ts";
import { conformance } from "./conformance/registry.ts";

await conformance("tcp");

const LONG = { timeout: 120_000 };

test("tcp.listen({ port: 0 }) picks a free port; a second listener on it rejects with AlreadyExistsError", async () => {
  const l = await tcp.listen({ port: 0 });
  try {
    assert.ok(l.port > 0);
    await assert.rejects(tcp.listen({ port: l.port }), AlreadyExistsError);
  } finally {
    await l.close();
  }
});

test("tcp.connect() to a closed port rejects with NotFoundError", async () => {
  const l = await tcp.listen({ port: 0 });
  const port = l.port;
  await l.close();
  await assert.rejects(tcp.connect({ port }), NotFoundError);
});

test("tcp ports are validated with RangeError", async () => {
  await assert.rejects(tcp.listen({ port: -1 }), RangeError);
  await assert.rejects(tcp.connect({ port: 0 }), RangeError);
  await assert.rejects(tcp.connect({ port: 70000 }), RangeError);
});

test("tcp.listen() on an address other hosts can reach refuses to start without tls, auth or insecure: true", async () => {
  for (const hostname of ["0.0.0.0", "::", "192.0.2.1", "example.com"]) {
    await assert.rejects(tcp.listen({ port: 0, hostname }), (e: Error) => {
      assert.ok(e instanceof TypeError, `${hostname}: ${e}`);
      assert.match(e.message, /other hosts can reach this address.*tls or auth.*insecure: true/);
      return true;
    });
  }
  await assert.rejects(tcp.listen({ port: 0, hostname: "0.0.0.0", insecure: "yes" as never }), TypeError);
  // Loopback needs nothing: 127.0.0.0/8, ::1, localhost.
  for (const hostname of ["127.0.0.1", "127.3.2.1", "localhost"]) {
    const l = await tcp.listen({ port: 0, hostname });
    await l.close();
  }
  const open = await tcp.listen({ port: 0, hostname: "0.0.0.0", insecure: true });
  await open.close();
  const guarded = await tcp.listen({ port: 0, hostname: "0.0.0.0", auth: { secret: "sixteen bytes or more" } });
  try {
    await using client = await tcp.connect({ port: guarded.port, auth: { secret: "sixteen bytes or more" } });
    await using peer = await guarded.accept();
    await client.send(new Uint8Array([9]));
    assert.deepEqual([...await peer.receive()], [9]);
  } finally {
    await guarded.close();
  }
});

test("tcp.listen() passes maxConnections and idleTimeout to its listener (raw node:net peers)", LONG, async () => {
  await using l = await tcp.listen({ port: 0, maxConnections: 1, idleTimeout: 200 });
  const first = net.connect(l.port, "127.0.0.1");
  const firstClosed = new Promise<void>((r) => first.once("close", () => r()));
  first.on("error", () => {});
  await new Promise<void>((r) => first.once("connect", () => r()));
  const peer = await l.accept();
  try {
    const second = net.connect(l.port, "127.0.0.1");
    second.on("error", () => {});
    await new Promise<void>((r) => second.once("close", () => r())); // over maxConnections: closed at once
    // The first connection sends nothing: idleTimeout closes it.
    await assert.rejects(peer.receive({ timeout: 60_000 }), (e: Error) => e instanceof ClosedError);
    await firstClosed;
  } finally {
    first.destroy();
    await peer.close();
  }
});
