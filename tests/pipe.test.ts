import { test } from "node:test";
import assert from "node:assert/strict";
import { pipe } from "../mod.ts";
import { channelConformance } from "./conformance/channel.ts";
import { pipeFixture } from "./conformance/fixtures.ts";

channelConformance(pipeFixture);

test("pipe.spawn() rejects an empty argv with TypeError", async () => {
  await assert.rejects(pipe.spawn([]), TypeError);
});

test("a child that writes text to stdout breaks the framing: the parent gets ProtocolError, not a hang", async () => {
  const { channel, child } = await pipe.spawn(["sh", "-c", "echo 'hello, I am not a frame'"]);
  try {
    const e = await channel.receive({ timeout: 60_000 }).then(() => undefined, (e) => e);
    // "hell" read as a length is 1751477356 bytes: more than maxMessage.
    assert.equal(e?.name, "MessageTooLargeError");
  } finally {
    await channel.close();
    await child.exited;
  }
});
