/**
 * The deprecated spellings still work for one release: the namespace functions that made named OS objects before
 * the class statics became the one way (`mq.create` is now `MessageQueue.create`, and so on). Each alias must give
 * the same class of handle as the static it stands for, on the same object.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { FileQueue, fileQueue, MessageQueue, mq, runtime, sysv, SysvQueue } from "../mod.ts";

const rt = await runtime();
const unique = () => `${rt.pid}-${Math.random().toString(36).slice(2, 10)}`;

test("mq.create, mq.open and mq.openOrCreate still make MessageQueue handles", async () => {
  const name = `/ipckit-test-alias-${unique()}`;
  const made: MessageQueue[] = [];
  try {
    made.push(await mq.create(name, { maxMessages: 2, messageSize: 16 }));
    made.push(await mq.open(name, { mode: "write" }));
    made.push(await mq.openOrCreate(name, { maxMessages: 2, messageSize: 16 }));
    for (const q of made) assert.ok(q instanceof MessageQueue);
    assert.equal(made[1]!.trySend(new Uint8Array([7])), true);
    assert.deepEqual([...made[2]!.tryReceive()!.data], [7], "one queue behind the three handles");
  } finally {
    for (const q of made) q.close();
    await MessageQueue.unlink(name).catch(() => {});
  }
});

test("sysv.create, open, openOrCreate, fromId and private still make SysvQueue handles", async () => {
  const k = await sysv.key(0x10000000 + (rt.pid % 0x1000000) * 16 + Math.floor(Math.random() * 16));
  const made: SysvQueue[] = [];
  try {
    const q = await sysv.create(k);
    made.push(q);
    made.push(await sysv.open(k));
    made.push(await sysv.openOrCreate(k));
    made.push(await sysv.fromId(q.id));
    for (const h of made) {
      assert.ok(h instanceof SysvQueue);
      assert.equal(h.id, q.id);
    }
    const p = await sysv.private();
    made.push(p);
    assert.ok(p instanceof SysvQueue);
    assert.notEqual(p.id, q.id);
  } finally {
    for (const id of new Set(made.map((h) => h.id))) {
      await SysvQueue.fromId(id).then((h) => h.remove(), () => {});
    }
  }
});

test("fileQueue.create and fileQueue.open still make FileQueue handles", async () => {
  const dir = await rt.makeTempDir("ipckit-test-alias-");
  try {
    const producer = await fileQueue.create(`${dir}/q`);
    const consumer = await fileQueue.open(`${dir}/q`);
    try {
      assert.ok(producer instanceof FileQueue && consumer instanceof FileQueue);
      await producer.send(new Uint8Array([1, 2]));
      assert.deepEqual([...(await consumer.receive({ timeout: 10_000 }))], [1, 2]);
    } finally {
      await producer.close();
      await consumer.close();
    }
  } finally {
    await rt.removeDir(dir);
  }
});

test("the aliases are the statics' functions under the old names, and the classes are exported top-level", () => {
  for (const [alias, name] of [[mq.create, "create"], [sysv.private, "private"], [fileQueue.open, "open"]] as const) {
    assert.equal(typeof alias, "function", name);
  }
  assert.equal(mq.MessageQueue, MessageQueue);
  assert.equal(sysv.SysvQueue, SysvQueue);
  assert.equal(fileQueue.FileQueue, FileQueue);
});
