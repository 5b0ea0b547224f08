import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, pipe } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { conformance } from "./conformance/registry.ts";

await conformance("pipe");

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

await conformance("pipe_fds");

test("pipe over fds: the child keeps its stdout; pipe.create() gives a working close-on-exec pipe", async () => {
  const rt = await runtime();
  // The child prints to stdout and answers on fd 4 what it read on fd 3 (sh: read a line from fd 3, echo it to 4).
  const { channel, child } = await pipe.spawn(["sh", "-c", "echo on-stdout; head -c 8 <&3 >&4"], {
    over: "fds",
  });
  try {
    // A frame of 4 bytes: length 4, then "ping" (8 bytes in all, which `head -c 8` copies back).
    await channel.send(new TextEncoder().encode("ping"));
    assert.equal(new TextDecoder().decode(await channel.receive({ timeout: 60_000 })), "ping");
    await assert.rejects(channel.receive({ timeout: 60_000 }), ClosedError);
    assert.equal((await child.exited).code, 0);
  } finally {
    await channel.close();
  }
  using p = await pipe.create();
  assert.ok(p.read >= 0 && p.write >= 0 && p.read !== p.write);
  assert.equal(await rt.exists(`/proc/self/fd/${p.read}`), true);
  p.close();
  p.close();
});

for (const child of ["deno", "bun", "node"] as const) {
  test(`pipe over fds to a ${child} child that reads files with node:fs between messages: every message comes back`, {
    timeout: 120_000,
  }, async () => {
    const rt = await runtime();
    const script = rt.fromFileUrl(new URL("./helpers/pipe_reading_child.ts", import.meta.url));
    const { channel, child: proc } = await pipe.spawn(runtimeArgv(child, script), { over: "fds" });
    try {
      for (let i = 0; i < 200; i++) {
        await channel.send(new Uint8Array([i, 7, 7, 7]));
        assert.deepEqual([...await channel.receive({ timeout: 30_000 })], [i, 7, 7, 7], `message ${i}`);
      }
    } finally {
      await channel.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise((r) => timer = setTimeout(r, 30_000, "late"));
      if (await Promise.race([proc.exited, late]) === "late") rt.kill(proc.pid, "SIGKILL");
      clearTimeout(timer);
      await proc.exited;
    }
  });
}

test("pipe.inherited() in a process started without the pipes is an UnsupportedError", async () => {
  const rt = await runtime();
  const child = rt.spawn([
    ...runtimeArgv(rt.name, rt.fromFileUrl(new URL("./helpers/pipe_inherited_child.ts", import.meta.url))),
  ], {
    cwd: rt.fromFileUrl(new URL("../", import.meta.url)),
    stdio: "null",
  });
  assert.equal((await child.exited).code, 7);
});
