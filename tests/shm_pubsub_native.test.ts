/**
 * Native peers of publish-subscribe: a C program (built here with cc against `include/ipckit_pubsub.h`, strict
 * warnings as errors) and a Python process (`python/ipckit_pubsub.py`), as subscribers of a publisher of this
 * runtime and as publishers to this process and to Deno, Bun and Node children; and both refuse a segment of
 * another layout version with a clear error.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { runtime, runtimeArgv, type RuntimeName, SharedMemory, shm } from "../mod.ts";
import { spawnWithLines } from "./helpers/child_lines.ts";
import { buildC } from "./helpers/native_peers.ts";
import { takesSharedChecks } from "./helpers/runners.ts";
import { indexOf, message } from "./helpers/shm_pubsub_data.ts";

const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("..", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/shm_pubsub_child.ts", import.meta.url));
const PY = rt.fromFileUrl(new URL("./fixtures/pubsub_peer.py", import.meta.url));
const RUNTIMES: RuntimeName[] = ["deno", "bun", "node"];
const names = new Set<string>();
let dir = "";
let cPeer = "";

const uniqueName = () => {
  const name = `/ipckit-psn-${rt.pid}-${names.size}-${Math.random().toString(36).slice(2, 8)}`;
  names.add(name);
  return name;
};

before(async () => {
  dir = await rt.makeTempDir("ipckit-pubsub-native-");
  cPeer = await buildC(rt, ROOT, dir, "pubsub_peer");
});

after(async () => {
  for (const name of names) await SharedMemory.unlink(name).catch(() => {});
  if (dir !== "") await rt.removeDir(dir).catch(() => {});
});

const PEERS = [
  { label: "C", argv: (args: string[]) => [cPeer, ...args] },
  { label: "Python", argv: (args: string[]) => ["python3", PY, ...args] },
];

async function start(argv: string[]) {
  const lc = spawnWithLines(rt, argv, {});
  const first = await lc.line();
  assert.equal(first, "ready", `${argv.join(" ")} says: ${first}`);
  return lc;
}

for (const peer of PEERS) {
  for (const policy of ["block", "overwrite"] as const) {
    test(`a ${peer.label} subscriber gets every message of a ${rt.name} publisher (${policy}), with history`, {
      timeout: 120_000,
    }, async () => {
      const name = uniqueName();
      const max = 300;
      const total = 2000;
      const pub = await shm.publisher(name, { capacity: 4096, history: 4, policy });
      const child = await (async () => {
        for (let i = 0; i < 10; i++) await pub.publish(message(i, max));
        return await start(peer.argv(["sub", name, "4", `${max}`]));
      })();
      const raw = await SharedMemory.open(name);
      const slots = new Int32Array(raw.buffer, 256, 16 * 64);
      try {
        for (let i = 10; i < total; i++) {
          // Overwrite: pace the publisher so that a subscriber that keeps up loses nothing (no timing assertion:
          // the wait is on the subscriber's own progress).
          if (policy === "overwrite") { while (!(await caughtUp(slots, i))) { /* wait */ } }
          await pub.publish(message(i, max), { timeout: 60_000 });
        }
        await pub.close();
        assert.deepEqual(JSON.parse(await child.line()), { first: 6, count: total - 6, end: "closed" });
        assert.equal((await child.child.exited).code, 0);
      } finally {
        raw.close();
        await pub.close();
        child.child.kill("SIGKILL");
      }
    });
  }

  test(
    `a ${peer.label} publisher reaches this ${rt.name} process${
      takesSharedChecks() ? " and Deno, Bun and Node children" : ""
    }`,
    {
      timeout: 180_000,
    },
    async () => {
      const name = uniqueName();
      const max = 500;
      const count = 1000;
      const others = takesSharedChecks() ? RUNTIMES : [];
      const pubChild = await start(peer.argv(["pub", name, "block", `${count}`, `${1 + others.length}`, `${max}`]));
      const children: Awaited<ReturnType<typeof start>>[] = [];
      try {
        const sub = await shm.subscriber(name, { wait: 30_000 });
        for (const r of others) {
          children.push(await start([...runtimeArgv(r, CHILD), "sub", name, "0", "-1", `${max}`]));
        }
        const got: number[] = [];
        for await (const m of sub) got.push(indexOf(m, max));
        await sub.close();
        assert.deepEqual(got, Array.from({ length: count }, (_, k) => k));
        for (const c of children) assert.deepEqual(JSON.parse(await c.line()), { first: 0, count, end: "closed" });
        assert.equal(await pubChild.line(), "done");
        assert.equal((await pubChild.child.exited).code, 0);
      } finally {
        pubChild.child.kill("SIGKILL");
        for (const c of children) c.child.kill("SIGKILL");
      }
    },
  );

  test(
    `a slow ${peer.label} subscriber of an overwrite ${rt.name} publisher gets exact messages or lag counts that match the gaps`,
    {
      timeout: 120_000,
    },
    async () => {
      const name = uniqueName();
      const max = 1000;
      const total = 20_000;
      const pub = await shm.publisher(name, { capacity: 8192, policy: "overwrite" });
      const child = await start(peer.argv(["lag", name, `${max}`]));
      try {
        for (let i = 0; i < total; i++) assert.equal(pub.tryPublish(message(i, max)), true);
        await pub.close();
        const r = JSON.parse(await child.line());
        assert.equal(r.end, "closed", JSON.stringify(r));
        assert.equal(r.last, total - 1, JSON.stringify(r));
        assert.equal(r.count + r.missed, total, JSON.stringify(r));
        assert.equal((await child.child.exited).code, 0);
      } finally {
        await pub.close();
        child.child.kill("SIGKILL");
      }
    },
  );

  test(`a ${peer.label} peer refuses a pub-sub segment of another layout version with a clear error`, async () => {
    const name = uniqueName();
    await using _pub = await shm.publisher(name, { capacity: 256 });
    const raw = await SharedMemory.open(name);
    try {
      new Int32Array(raw.buffer)[1] = 2;
    } finally {
      raw.close();
    }
    const lc = spawnWithLines(rt, peer.argv(["refuse", name]), {});
    const line = await lc.line();
    assert.match(line, /version 2, this peer speaks 1|EPROTONOSUPPORT/, line);
    assert.equal((await lc.child.exited).code, 0);
  });
}

/** Whether every active subscriber in the slot words has read up to message `i - 8` (after a yield). */
async function caughtUp(slots: Int32Array, i: number): Promise<boolean> {
  await new Promise((r) => setTimeout(r, 0));
  for (let s = 0; s < 64; s++) {
    if (Atomics.load(slots, s * 16) === 2 && i - (Atomics.load(slots, s * 16 + 4) >>> 0) > 8) return false;
  }
  return true;
}

test("no segment made by these tests is left in /dev/shm", async () => {
  for (const name of names) await assert.rejects(SharedMemory.open(name), { name: "NotFoundError" });
});
