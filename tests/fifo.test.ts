import { test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, fifo, NotFoundError } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { conformance } from "./conformance/registry.ts";

await conformance("fifo");

test("fifo.open() rejects with NotFoundError when no FIFO pair exists", async () => {
  await assert.rejects(fifo.open("/tmp/ipckit-no-such-fifo"), NotFoundError);
});

test("fifo.create() rejects with AlreadyExistsError on a taken path, and removes its FIFOs when aborted", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  try {
    const ac = new AbortController();
    const pending = fifo.create(`${dir}/f`, { signal: ac.signal });
    while (!(await rt.exists(`${dir}/f.out`))) await new Promise((r) => setTimeout(r, 2));
    await assert.rejects(fifo.create(`${dir}/f`), AlreadyExistsError);
    ac.abort();
    await assert.rejects(pending, (e: Error) => e.name === "AbortError");
    assert.equal(await rt.exists(`${dir}/f.in`), false);
    assert.equal(await rt.exists(`${dir}/f.out`), false);
  } finally {
    await rt.removeDir(dir);
  }
});

test("fifo.create() removes the FIFO names once the peer has connected", async () => {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-");
  try {
    const [a, b] = await Promise.all([fifo.create(`${dir}/f`), fifo.open(`${dir}/f`, { wait: 10_000 })]);
    assert.equal(await rt.exists(`${dir}/f.in`), false);
    await Promise.all([a.close(), b.close()]);
  } finally {
    await rt.removeDir(dir);
  }
});

test("fifo arguments are validated", async () => {
  await assert.rejects(fifo.create(""), TypeError);
  await assert.rejects(fifo.create("/tmp/x", { mode: 0o1000 }), RangeError);
  await assert.rejects(fifo.open("/tmp/x", { wait: -1 }), RangeError);
});
