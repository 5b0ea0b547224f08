import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { AlreadyExistsError, NotFoundError, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { conformance } from "./conformance/registry.ts";
import { asNobody, names, openTempDir, otherUserSkip, withUmask } from "./helpers/socket_modes.ts";

await conformance("unix");

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

test("unix.listen() creates its socket file 0600 even under umask 000, and `mode` sets other bits exactly", async () => {
  const rt = await runtime();
  const dir = await openTempDir();
  try {
    await withUmask(0, async () => {
      await using _a = await unix.listen(`${dir}/a.sock`);
      assert.equal((await rt.fileInfo(`${dir}/a.sock`))?.mode, 0o600);
      await using _b = await unix.listen(`${dir}/b.sock`, { mode: 0o660 });
      assert.equal((await rt.fileInfo(`${dir}/b.sock`))?.mode, 0o660);
    });
    await withUmask(0o077, async () => {
      await using c = await unix.listen(`${dir}/c.sock`, { mode: 0o666 }); // wider than the umask allows
      assert.equal((await rt.fileInfo(`${dir}/c.sock`))?.mode, 0o666);
      // Connections still work through the file that was linked into place.
      await using client = await unix.connect(`${dir}/c.sock`);
      await using peer = await c.accept();
      await client.send(new Uint8Array([1]));
      assert.deepEqual([...await peer.receive()], [1]);
    });
    assert.deepEqual(names(dir), [], "no private directory or socket file left behind");
  } finally {
    await rt.removeDir(dir);
  }
});

test("unix.listen() on a taken path leaves the path and its directory as they were", async () => {
  const rt = await runtime();
  const dir = await openTempDir();
  try {
    await using _l = await unix.listen(`${dir}/s.sock`);
    await assert.rejects(unix.listen(`${dir}/s.sock`, { mode: 0o666 }), AlreadyExistsError);
    assert.equal((await rt.fileInfo(`${dir}/s.sock`))?.mode, 0o600);
    assert.deepEqual(names(dir), ["s.sock"]);
  } finally {
    await rt.removeDir(dir);
  }
});

test("a socket file 0600 refuses another user's connection; mode 0o666 lets it in (root: a Python child as nobody)", async (t) => {
  const skip = await otherUserSkip();
  if (skip) return t.skip(skip);
  const rt = await runtime();
  const dir = await openTempDir();
  try {
    await withUmask(0, async () => {
      await using _closed = await unix.listen(`${dir}/private.sock`);
      assert.equal(await asNobody("stream", `${dir}/private.sock`), "EACCES");
      await using open = await unix.listen(`${dir}/public.sock`, { mode: 0o666 });
      assert.equal(await asNobody("stream", `${dir}/public.sock`), "ok");
      await using peer = await open.accept();
      assert.equal(new TextDecoder().decode(await peer.receive()), "nobody");
    });
  } finally {
    await rt.removeDir(dir);
  }
});

test("unix.listen() validates mode with RangeError", async () => {
  await assert.rejects(unix.listen("/tmp/ipckit-never.sock", { mode: 0o1777 }), RangeError);
  await assert.rejects(unix.listen("/tmp/ipckit-never.sock", { mode: -1 }), RangeError);
  await assert.rejects(unix.listen("/tmp/ipckit-never.sock", { mode: 1.5 }), RangeError);
});

test("unix.listen() binds next to its path: a directory of up to 94 bytes works, a longer one is a RangeError", async () => {
  const rt = await runtime();
  const dir = await openTempDir();
  try {
    const fits = `${dir}/${"d".repeat(94 - dir.length - 1)}`;
    const over = `${fits}e`;
    mkdirSync(fits);
    mkdirSync(over);
    await using l = await unix.listen(`${fits}/s`);
    await using c = await unix.connect(`${fits}/s`);
    await using p = await l.accept();
    await c.send(new Uint8Array([7]));
    assert.deepEqual([...await p.receive()], [7]);
    await assert.rejects(unix.listen(`${over}/s`), (e: Error) => {
      assert.ok(e instanceof RangeError, `${e}`);
      assert.match(e.message, /directory path is 95 bytes long/);
      return true;
    });
    assert.deepEqual(names(over), []);
  } finally {
    await rt.removeDir(dir);
  }
});
