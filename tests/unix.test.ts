import { test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, NotFoundError, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { channelConformance } from "./conformance/channel.ts";
import { unixFixture } from "./conformance/fixtures.ts";

channelConformance(unixFixture);

test("unix.connect() rejects with NotFoundError when nothing listens", async () => {
  await assert.rejects(unix.connect("/tmp/ipckit-nobody-listens-here.sock"), NotFoundError);
});

test("unix.listen() rejects with AlreadyExistsError on a taken path, and close() removes the socket file", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  try {
    const path = `${dir}/s.sock`;
    const l = await unix.listen(path);
    await assert.rejects(unix.listen(path), AlreadyExistsError);
    assert.equal(await rt.exists(path), true);
    await l.close();
    await l.close();
    assert.equal(await rt.exists(path), false);
    await assert.rejects(l.accept(), (e: Error) => e.name === "ClosedError");
  } finally {
    await rt.removeDir(dir);
  }
});

test("unix.listen() in a missing directory rejects with NotFoundError on every runtime", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  try {
    // The kernel says ENOENT; Node's libuv reports it as EACCES, which the Node adapter undoes.
    await assert.rejects(unix.listen(`${dir}/no/such/dir/s.sock`), (e: Error) => {
      assert.ok(e instanceof NotFoundError, `${e}`);
      assert.equal((e as NotFoundError).code, "ENOENT");
      return true;
    });
  } finally {
    await rt.removeDir(dir);
  }
});

test("unix paths are validated with TypeError/RangeError", async () => {
  await assert.rejects(unix.listen(""), TypeError);
  await assert.rejects(unix.connect(42 as unknown as string), TypeError);
  await assert.rejects(unix.listen("/tmp/" + "x".repeat(200)), RangeError);
});

test("a Listener yields connections with for await and stops at close()", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  try {
    const path = `${dir}/s.sock`;
    const l = await unix.listen(path);
    const clients = await Promise.all([unix.connect(path), unix.connect(path)]);
    let n = 0;
    for await (const c of l) {
      await c.close();
      if (++n === 2) break;
    }
    assert.equal(n, 2);
    await Promise.all(clients.map((c) => c.close()));
    await l.close();
  } finally {
    await rt.removeDir(dir);
  }
});

test("Listener.close() returns while an accepted channel is still open, and the channel keeps working", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  try {
    const path = `${dir}/s.sock`;
    const l = await unix.listen(path);
    const [a, b] = await Promise.all([unix.connect(path), l.accept()]);
    await l.close();
    assert.equal(await rt.exists(path), false);
    await a.send(new Uint8Array([5]));
    assert.deepEqual([...await b.receive()], [5]);
    await Promise.all([a.close(), b.close()]);
  } finally {
    await rt.removeDir(dir);
  }
});
