// @test-serial it writes /proc/sys/kernel/ns_last_pid to make a process take a given pid: other files forking at the same time take it first
/**
 * Liveness against zombies, reused pids and terminated threads (os/liveness.ts), and everything built on it: the
 * robust Mutex and the peer-death detection of the shm, POSIX mq, System V and file-queue channels. The hostile
 * situations are made by independent processes: a Python parent that never reaps its child (a zombie), and a
 * Python program that makes an unrelated process take a dead process's pid (`ns_last_pid`, as root).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  type Channel,
  ClosedError,
  fileQueue,
  MessageQueue,
  mq,
  Mutex,
  NotFoundError,
  type RuntimeName,
  SharedMemory,
  shm,
  sysv,
  SysvQueue,
} from "../mod.ts";
import { native } from "../ffi/native.ts";
import * as os from "../os/liveness.ts";
import { liveness } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { randomKey } from "./conformance/fixtures_sysv.ts";
import { spawnUnreaped, takePid, untilGone, untilZombie } from "./helpers/pids.ts";
import { DATA } from "./helpers/sync_scenarios.ts"; // sync_child.ts hold sets data word DATA + 7 once it locked

const LONG = { timeout: 180_000 };
const ROOT = new URL("../", import.meta.url);
const PEER = new URL("./conformance/peer.ts", import.meta.url);
const HOLDER = new URL("./helpers/sync_child.ts", import.meta.url);
const WORKER = new URL("./helpers/mutex_holder_worker.ts", import.meta.url);
const shmName = () => `/ipckit-test-live-${Math.random().toString(36).slice(2, 12)}`;
const WAIT = 60_000;

/** Another runtime than this one, so every run crosses runtimes. */
async function otherRuntime(offset = 1): Promise<RuntimeName> {
  const rt = await runtime();
  return RUNTIMES[(RUNTIMES.indexOf(rt.name) + offset) % RUNTIMES.length]!;
}

test("liveness: this process is alive; a wrong tag, pid 0 and a pid nobody has are dead", async () => {
  const ffi = await native();
  const me = os.self(ffi);
  assert.equal(me.id, (await runtime()).pid);
  assert.notEqual(me.tag, 0);
  assert.equal(os.alive(me.id, me.tag), true);
  assert.equal(os.alive(me.id, 0), true);
  assert.equal(os.alive(me.id, me.tag === 1 ? 2 : me.tag - 1), false);
  assert.equal(os.alive(0), false);
  assert.equal(os.alive(-1), false);
  assert.equal(os.alive(2 ** 22 + 1), false); // above pid_max's ceiling
  assert.equal(os.tagOfId(me.id), me.tag);
  assert.equal(os.tagOf(0), 1, "a start time of 0 mod 2^32 still gives a known tag");
  const thread = os.selfThread(ffi);
  // The JS thread's kernel id: the pid on Node and Bun; Deno may run its main isolate on another thread.
  assert.ok(thread.id > 0 && os.alive(thread.id, thread.tag), `thread ${JSON.stringify(thread)}`);
  assert.equal(os.parseStat("123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 0")?.start, 4242);
  assert.equal(os.parseStat("garbage"), undefined);
  // The async forms load FFI themselves.
  assert.deepEqual(await liveness.identify(), me);
  assert.equal(await liveness.isAlive(me), true);
  assert.equal(await liveness.isAlive(1), true);
  await assert.rejects(liveness.identify(2 ** 22 + 1), NotFoundError);
  await assert.rejects(liveness.identify(0), RangeError);
});

test(
  "liveness: a killed child its parent has not reaped (a zombie) is dead, though kill(pid, 0) succeeds",
  LONG,
  async () => {
    const ffi = await native();
    const child = await spawnUnreaped(["sleep", "600"]);
    try {
      assert.equal(os.alive(child.pid), true);
      child.kill();
      await untilZombie(child.pid);
      assert.equal(ffi.call.kill(child.pid, 0), 0, "kill(pid, 0) still answers for a zombie");
      assert.equal(os.alive(child.pid), false);
    } finally {
      await child.cleanup();
    }
  },
);

test("liveness: a pid taken over by an unrelated process is dead under its old tag", LONG, async (t) => {
  const rt = await runtime();
  await native();
  const first = rt.spawn(["sleep", "600"], { stdio: "null" });
  let taken: Awaited<ReturnType<typeof takePid>> | undefined;
  try {
    const old = { id: first.pid, tag: os.tagOfId(first.pid) };
    assert.equal(os.alive(old.id, old.tag), true);
    first.kill("SIGKILL");
    await first.exited;
    await untilGone(old.id);
    taken = await takePid(old.id);
    if ("skip" in taken) return t.skip(taken.skip);
    assert.equal(os.alive(old.id, 0), true, "someone has the pid again");
    assert.equal(os.alive(old.id, old.tag), false, "but not the process that had it");
  } finally {
    first.kill("SIGKILL");
    if (taken && "release" in taken) await taken.release();
  }
});

// ---- the robust Mutex

/** Waits until the holder child (sync_child.ts hold) has locked the mutex. */
async function untilLocked(segment: SharedMemory): Promise<void> {
  const words = new Int32Array(segment.buffer);
  for (let i = 0; Atomics.load(words, DATA + 7) !== 1; i++) {
    if (i > 6000) throw new Error("the holder never locked the mutex");
    await new Promise((r) => setTimeout(r, 10));
  }
}

for (const r of RUNTIMES) {
  test(`robust Mutex: a ${r} owner killed and left a zombie is dead: lock() takes over (ownerDied)`, LONG, async () => {
    const rt = await runtime();
    const name = shmName();
    const segment = await SharedMemory.create(name, { size: 4096 });
    const holder = await spawnUnreaped(
      [...runtimeArgv(r, rt.fromFileUrl(HOLDER)), "hold", name],
      rt.fromFileUrl(ROOT),
    );
    try {
      await untilLocked(segment);
      const mutex = Mutex.in(segment, 0);
      assert.equal(mutex.tryLock(), false);
      holder.kill();
      await untilZombie(holder.pid);
      assert.equal(await mutex.lock({ timeout: WAIT }), true, "the owner died");
      mutex.markConsistent();
      mutex.unlock();
    } finally {
      await holder.cleanup();
      segment.close();
      await SharedMemory.unlink(name);
    }
  });
}

test(
  "robust Mutex: an owner that died and whose pid an unrelated process took is dead: lock() takes over",
  LONG,
  async (t) => {
    const rt = await runtime();
    const name = shmName();
    const segment = await SharedMemory.create(name, { size: 4096 });
    const holder = rt.spawn([...runtimeArgv(await otherRuntime()), rt.fromFileUrl(HOLDER), "hold", name], {
      cwd: rt.fromFileUrl(ROOT),
      stdio: "null",
    });
    let taken: Awaited<ReturnType<typeof takePid>> | undefined;
    try {
      await untilLocked(segment);
      holder.kill("SIGKILL");
      await holder.exited;
      await untilGone(holder.pid);
      taken = await takePid(holder.pid);
      if ("skip" in taken) return t.skip(taken.skip);
      const mutex = Mutex.in(segment, 0);
      assert.equal(await mutex.lock({ timeout: WAIT }), true, "the owner died (its pid lives on in another process)");
      mutex.markConsistent();
      mutex.unlock();
    } finally {
      holder.kill("SIGKILL");
      if (taken && "release" in taken) await taken.release();
      segment.close();
      await SharedMemory.unlink(name);
    }
  },
);

test("robust Mutex: a worker thread terminated while holding a process-shared lock is a dead owner", LONG, async () => {
  const rt = await runtime();
  const name = shmName();
  const segment = await SharedMemory.create(name, { size: 4096 });
  const worker = rt.worker(WORKER);
  try {
    const said = new Promise((resolve) => worker.onMessage(resolve));
    worker.postMessage(name);
    assert.equal(await said, "locked");
    const mutex = Mutex.in(segment, 0);
    assert.equal(mutex.tryLock(), false, "the worker holds it");
    assert.throws(() => mutex.unlock(), /held by/, "another thread of the same process does not own it");
    await worker.terminate();
    assert.equal(await mutex.lock({ timeout: WAIT }), true, "the terminated thread was the owner");
    mutex.markConsistent();
    mutex.unlock();
  } finally {
    await worker.terminate();
    segment.close();
    await SharedMemory.unlink(name);
  }
});

// ---- channels whose peer becomes a zombie

interface Made {
  address: string;
  create(signal: AbortSignal): Promise<Channel>;
  cleanup(): Promise<void>;
}

const channels: Record<string, () => Promise<Made>> = {
  shm: () => {
    const name = shmName();
    return Promise.resolve({
      address: name,
      create: (signal) => shm.create(name, { capacity: 4096, signal }),
      cleanup: () => SharedMemory.unlink(name).catch(() => {}),
    });
  },
  mq: () => {
    const name = `/ipckit-test-live-${Math.random().toString(36).slice(2, 12)}`;
    return Promise.resolve({
      address: name,
      create: (signal) => mq.channel(name, { create: true, signal }),
      cleanup: () => unlinkQueues(name),
    });
  },
  sysv: () => {
    const key = randomKey();
    return Promise.resolve({
      address: String(key),
      create: (signal) => sysv.channel(key, { create: true, signal }),
      cleanup: () => Promise.resolve(),
    });
  },
  file_queue: async () => {
    const rt = await runtime();
    const dir = await rt.makeTempDir("ipckit-test-live-");
    return {
      address: `${dir}/ch`,
      create: (signal) => fileQueue.channel(`${dir}/ch`, { create: true, signal }),
      cleanup: () => rt.removeDir(dir),
    };
  },
};

for (const [i, [transport, make]] of Object.entries(channels).entries()) {
  test(`${transport} channel: a peer killed and left a zombie ends receive() with ClosedError`, LONG, async () => {
    const rt = await runtime();
    const made = await make();
    const abort = new AbortController();
    const pending = made.create(abort.signal);
    const peer = await spawnUnreaped(
      [...runtimeArgv(await otherRuntime(i)), rt.fromFileUrl(PEER), transport, made.address],
      rt.fromFileUrl(ROOT),
    );
    let channel: Channel | undefined;
    try {
      channel = await pending;
      await channel.send(new Uint8Array([1, 2, 3]));
      assert.deepEqual([...await channel.receive({ timeout: WAIT })], [1, 2, 3], "the peer echoes");
      peer.kill();
      await untilZombie(peer.pid);
      await assert.rejects(channel.receive({ timeout: WAIT }), ClosedError);
    } finally {
      abort.abort();
      await pending.catch(() => {});
      await channel?.close();
      await peer.cleanup();
      await made.cleanup();
    }
  });
}

test(
  "shm channel: a peer that died and whose pid an unrelated process took ends receive() with ClosedError",
  LONG,
  async (t) => {
    const rt = await runtime();
    const name = shmName();
    const abort = new AbortController();
    const pending = shm.create(name, { capacity: 4096, signal: abort.signal });
    const peer = rt.spawn([...runtimeArgv(await otherRuntime()), rt.fromFileUrl(PEER), "shm", name], {
      cwd: rt.fromFileUrl(ROOT),
      stdio: "null",
    });
    let channel: Channel | undefined;
    let taken: Awaited<ReturnType<typeof takePid>> | undefined;
    try {
      channel = await pending;
      await channel.send(new Uint8Array([7]));
      assert.deepEqual([...await channel.receive({ timeout: WAIT })], [7]);
      // No receive() runs while the pid changes hands: the next one finds the new process there.
      peer.kill("SIGKILL");
      await peer.exited;
      await untilGone(peer.pid);
      taken = await takePid(peer.pid);
      if ("skip" in taken) return t.skip(taken.skip);
      await assert.rejects(channel.receive({ timeout: WAIT }), ClosedError);
    } finally {
      abort.abort();
      await pending.catch(() => {});
      await channel?.close();
      peer.kill("SIGKILL");
      if (taken && "release" in taken) await taken.release();
      await SharedMemory.unlink(name).catch(() => {});
    }
  },
);

test(
  "mq and System V channels: a raw peer whose HELLO names a live pid with another start time is dead",
  LONG,
  async () => {
    const rt = await runtime();
    const sleeper = rt.spawn(["sleep", "600"], { stdio: "null" });
    const forged = new Uint8Array(9);
    forged[0] = 3; // HELLO
    const view = new DataView(forged.buffer);
    view.setUint32(1, sleeper.pid, true);
    view.setUint32(5, (os.tagOfId(sleeper.pid) + 12345) >>> 0 || 1, true); // not that process's start
    const name = `/ipckit-test-live-${Math.random().toString(36).slice(2, 12)}`;
    const key = randomKey();
    const queues: { close(): void }[] = [];
    try {
      // POSIX mq: the creator greets on <name>-0; the raw peer answers on <name>-1.
      const mqPending = mq.channel(name, { create: true });
      const toPeer = await openSoon(() => MessageQueue.open(`${name}-0`));
      const fromPeer = await MessageQueue.open(`${name}-1`);
      queues.push(toPeer, fromPeer);
      await toPeer.receive({ timeout: WAIT });
      await fromPeer.send(forged);
      const a = await mqPending;
      await assert.rejects(a.receive({ timeout: WAIT }), ClosedError);
      await a.close();
      // System V: one queue, HELLO types 3 (to the opener) and 4 (to the creator).
      const sysvPending = sysv.channel(key, { create: true });
      const q = await openSoon(() => SysvQueue.open(key));
      queues.push(q);
      await q.receive({ type: 3, timeout: WAIT });
      await q.send(4, forged);
      const b = await sysvPending;
      await assert.rejects(b.receive({ timeout: WAIT }), ClosedError);
      await b.close();
    } finally {
      sleeper.kill("SIGKILL");
      for (const q of queues) q.close();
      await unlinkQueues(name);
    }
  },
);

/** Removes a mq channel's queue names if they are still there (the creator removes them once a peer attached). */
async function unlinkQueues(name: string): Promise<void> {
  for (const s of ["-0", "-1"]) {
    const q = await MessageQueue.open(`${name}${s}`).catch(() => undefined);
    q?.unlink();
    q?.close();
  }
}

async function openSoon<T>(open: () => Promise<T>): Promise<T> {
  for (let i = 0;; i++) {
    try {
      return await open();
    } catch (e) {
      if (i > 3000) throw e;
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
