import { test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, NotFoundError, tcp } from "../mod.ts";
import { channelConformance } from "./conformance/channel.ts";
import { tcpFixture } from "./conformance/fixtures.ts";

channelConformance(tcpFixture);

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
