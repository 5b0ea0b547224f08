import { test } from "node:test";
import assert from "node:assert/strict";
import { AlreadyExistsError, ClosedError, NotFoundError, ProtocolError, SharedMemory, shm } from "../mod.ts";
import { RingChannel } from "../shm/ring_channel.ts";
import { CHANNEL_HEADER, channelSize, initLayout, threadParts } from "../shm/ring_channel_layout.ts";
import { I_READ, I_WRITE, Ring, ringSize } from "../shm/ring.ts";
import { identify } from "../os/liveness.ts";
import { conformance } from "./conformance/registry.ts";
import { shmNames } from "./conformance/fixtures.ts";
import { existsSync } from "node:fs";

await conformance("shm");

const name = () => `/ipckit-test-${Math.random().toString(36).slice(2, 12)}`;

test("shm.create() removes the segment name once the peer attached; a second opener is refused", async () => {
  const n = name();
  const [a, b] = await Promise.all([shm.create(n, { capacity: 4096 }), shm.open(n, { wait: 10_000 })]);
  try {
    await assert.rejects(SharedMemory.open(n), NotFoundError);
    await assert.rejects(shm.open(n), NotFoundError);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("shm.open() of a missing name rejects with NotFoundError; a taken name makes create() reject", async () => {
  await assert.rejects(shm.open(name()), NotFoundError);
  const n = name();
  const seg = await SharedMemory.create(n, { size: 4096 });
  try {
    await assert.rejects(shm.create(n), AlreadyExistsError);
    await assert.rejects(shm.open(n), ProtocolError); // a segment, but no channel in it
  } finally {
    seg.unlink();
    seg.close();
  }
});

test("shm.create() waiting for a peer can be aborted, and leaves no segment behind", async () => {
  const n = name();
  const ac = new AbortController();
  const pending = shm.create(n, { capacity: 4096, signal: ac.signal });
  setTimeout(() => ac.abort(), 50);
  await assert.rejects(pending, (e: Error) => e.name === "AbortError");
  await assert.rejects(SharedMemory.open(n), NotFoundError);
});

test("shm options are validated", async () => {
  await assert.rejects(shm.create("no-slash"), TypeError);
  await assert.rejects(shm.create(name(), { capacity: 0 }), RangeError);
  await assert.rejects(shm.create(name(), { spin: -1 }), RangeError);
  await assert.rejects(shm.create(name(), { capacity: 64, maxMessage: 57 }), RangeError);
  assert.throws(() => shm.pair({ capacity: 2 ** 31 }), RangeError);
  assert.throws(() => shm.fromHandle({} as never), TypeError);
});

test("a corrupt ring record rejects receive() with ProtocolError and ends the channel", async () => {
  const [a, handle] = shm.pair({ capacity: 1024, spin: 0 });
  const b = shm.fromHandle(handle);
  await a.send(new Uint8Array([1, 2, 3]));
  // Overwrite the record's length with more than the ring holds.
  const ring = Ring.attach(handle.buffer, CHANNEL_HEADER);
  new DataView(handle.buffer, ring.offset + 192, 4).setUint32(0, 100_000, true);
  await assert.rejects(b.receive(), ProtocolError);
  await assert.rejects(b.receive(), ClosedError);
  await assert.rejects(a.send(new Uint8Array(1)), ClosedError);
  await Promise.all([a.close(), b.close()]);
});

test("a corrupt ring record found by tryReceive() or tryDrain() throws ProtocolError and ends the channel, as receive() does", async () => {
  // The straight paths of the two (no reader closure) share the general path's handling of a failed read.
  for (const take of ["tryReceive", "tryDrain"] as const) {
    const [a, handle] = shm.pair({ capacity: 1024, spin: 0 });
    const b = shm.fromHandle(handle);
    try {
      assert.equal(a.trySend(new Uint8Array([1, 2, 3])), true);
      // A hostile peer's record: a length over what the ring holds.
      const ring = Ring.attach(handle.buffer, CHANNEL_HEADER);
      new DataView(handle.buffer, ring.offset + 192, 4).setUint32(0, 100_000, true);
      const read = () =>
        take === "tryReceive" ? b.tryReceive() : b.tryDrain(() => assert.fail("nothing is handed over"));
      assert.throws(read, ProtocolError, take);
      assert.throws(read, ClosedError, `${take}: the channel stays ended`);
      assert.throws(() => a.trySend(new Uint8Array(1)), ClosedError, `${take}: the peer learns it`);
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }
});

test("each end of a ring keeps its own position: a peer rewriting W or R in the header moves neither, and a read position no honest consumer writes is a ProtocolError once the producer needs it", () => {
  const buffer = new SharedArrayBuffer(ringSize(256));
  Ring.init(buffer, 0, 256);
  const producer = Ring.attach(buffer, 0);
  const consumer = Ring.attach(buffer, 0);
  const words = new Int32Array(buffer, 0, 48);
  assert.equal(producer.tryWrite(new Uint8Array([1])), true);
  assert.deepEqual(consumer.tryRead(), new Uint8Array([1]));
  // The hostile side scribbles over both positions.
  words[I_WRITE] = 12_345;
  words[I_READ] = 8;
  assert.equal(producer.tryWrite(new Uint8Array([2, 2])), true);
  assert.deepEqual(consumer.tryRead(), new Uint8Array([2, 2]), "the consumer read on from its own position");
  assert.equal(consumer.tryRead(), undefined);
  // R now claims the consumer read more than was ever written: the producer trusts its last look at R until the
  // ring seems full, then reads R again and refuses it.
  words[I_READ] = 4096;
  assert.throws(() => {
    for (let i = 0; i < 64; i++) producer.tryWrite(new Uint8Array(24));
  }, ProtocolError);
});

test("shm.open() attaches only once the creator has recorded itself, never taking a creator mid-setup for dead", async () => {
  // The race a fresh-clone run found: the opener saw the magic word before the creator wrote its pid, attached, and
  // its first liveness check (on pid 0) said the creator had died. Here a raw creator stops right there.
  const n = name();
  const capacity = 4096;
  const raw = await SharedMemory.create(n, { size: channelSize(capacity) });
  try {
    initLayout(raw.buffer, capacity); // laid out, magic word written, no creator recorded
    await assert.rejects(
      shm.open(n, { wait: 300 }),
      (e) => e instanceof ProtocolError && /has not recorded itself/.test(e.message),
    );
    assert.equal(new Int32Array(raw.buffer, 0, 16)[3], 0, "the opener did not attach");
    // The creator records itself (this process, alive): now the open goes through and the channel works.
    const me = await identify();
    Ring.attach(raw.buffer, CHANNEL_HEADER).setOwner("producer", me);
    Ring.attach(raw.buffer, CHANNEL_HEADER + ringSize(capacity)).setOwner("consumer", me);
    const opened = await shm.open(n, { wait: 10_000 });
    try {
      await opened.send(new Uint8Array([7]));
      assert.equal(opened.closed, false);
    } finally {
      await opened.close();
    }
  } finally {
    raw.close();
    await SharedMemory.unlink(n).catch(() => {});
  }
});

test("a peer that dies right after writing: receive() delivers what it wrote whole first, then ClosedError", async () => {
  // The race the soak found under load: the reader finds the ring empty, the peer then writes, closes and exits,
  // and the reader's liveness check (before it sleeps) sees a dead peer. Driven here without timing: the reader's
  // end is rebuilt with a liveness check that writes three messages from the peer's end, then reports it dead.
  const [peer, handle] = shm.pair({ capacity: 4096 });
  let asked = 0;
  const reader = new RingChannel({
    ...threadParts(handle, undefined),
    spinUs: 0,
    peerAlive: () => {
      if (asked++ === 0) { for (const n of [1, 2, 3]) assert.equal(peer.trySend(new Uint8Array([n])), true); }
      return false;
    },
  });
  try {
    const got = [await reader.receive(), await reader.receive(), await reader.receive()];
    assert.deepEqual(got.map((m) => [...m]), [[1], [2], [3]]);
    await assert.rejects(reader.receive(), (e) => e instanceof ClosedError && /the peer process died/.test(e.message));
    assert.equal(reader.closed, true);
  } finally {
    await reader.close();
    await peer.close();
  }
});

test("shm.pair() carries messages between threads: a worker echoes over the SharedArrayBuffer", {
  timeout: 60_000,
}, async () => {
  const { runtime } = await import("../runtimes/detect.ts");
  const rt = await runtime();
  const [here, there] = shm.pair({ capacity: 64 * 1024 });
  const w = rt.worker(new URL("./helpers/shm_worker.ts", import.meta.url));
  try {
    w.postMessage(there);
    for (let i = 0; i < 100; i++) {
      const m = new Uint8Array(i * 10).fill(i);
      await here.send(m);
      const back = await here.receive({ timeout: 30_000 });
      assert.deepEqual([...back], [...m]);
    }
    await here.close();
  } finally {
    await w.terminate();
  }
});

test("the ring keeps boundaries across wrap-around for every size up to its limit", () => {
  const buf = new ArrayBuffer(192 + 256);
  const ring = Ring.init(buf, 0, 256);
  for (let n = 0; n <= ring.maxMessage; n++) {
    const m = new Uint8Array(n).map((_, i) => (i * 7 + n) & 255);
    assert.equal(ring.tryWrite(m), true, `write ${n}`);
    const back = ring.tryRead()!;
    assert.deepEqual([...back], [...m], `size ${n}`);
  }
  // Full: a record that does not fit is refused without writing.
  assert.equal(ring.tryWrite(new Uint8Array(200)), true);
  assert.equal(ring.tryWrite(new Uint8Array(200)), false);
});

test("no shm channel segment is left in /dev/shm, also after SIGKILLed peers", () => {
  assert.ok(shmNames.size > 0);
  const left = [...shmNames].filter((n) => existsSync(`/dev/shm${n}`));
  assert.deepEqual(left, []);
});
