// @test-serial its race tests need both processes of a pair on a CPU at once (spinning); beside other files each side waits for a CPU while the other spins, and the file took 3x its CPU
/**
 * How a shm channel side waits: the idle strategies (spin-then-park, park, spin), the doorbell that wakes a
 * sleeping process (a Unix socket its event loop polls), the futex fallback when no doorbell can be made, a
 * stranger on the doorbell, and a peer that dies while this side sleeps.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, runtime, runtimeArgv, type RuntimeName, SharedMemory, shm } from "../mod.ts";
import { Idle, idleOption } from "../shm/idle.ts";
import { within } from "../async/mod.ts";
import { shmNames } from "./conformance/fixtures.ts";
import { arch } from "node:os";
import { native } from "../ffi/native.ts";
import { processFence } from "../os/fence.ts";
import { CONSUMER_FENCES, PLAIN_AFTER, Ring, ringSize } from "../shm/ring.ts";
import { CHANNEL_HEADER, threadBuffer, threadParts } from "../shm/ring_channel_layout.ts";
import { type ChannelParts, RingChannel, SLEEP_MS } from "../shm/ring_channel.ts";
import type { Doorbell } from "../shm/doorbell.ts";

const RUNTIMES: RuntimeName[] = ["deno", "bun", "node"];
const CHILD = new URL("./helpers/shm_idle_child.ts", import.meta.url);
const FENCE_CHILD = new URL("./helpers/shm_fence_child.ts", import.meta.url);
const ROOT = new URL("..", import.meta.url);

function name(): string {
  const n = `/ipckit-test-${Math.random().toString(36).slice(2, 12)}`;
  shmNames.add(n);
  return n;
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

test("the spin: stops when spins keep running out, probes after 16 waits (then 32...), spins again once one pays", () => {
  const idle = new Idle("spin-then-park", 50, 2);
  assert.equal(idle.next(), 50);
  assert.equal(idle.next(true), 200, "a peer that was asleep answers after its wake-up: a longer spin");
  for (let i = 0; i < 5; i++) idle.ranOut();
  assert.equal(idle.next(), 50, "five misses in a row are a hiccup");
  idle.ranOut();
  const parked = Array.from({ length: 16 }, () => idle.next());
  assert.deepEqual(parked, [...Array(15).fill(0), 200], "15 waits parked, then a long probe");
  idle.ranOut(); // the probe ran out: twice as long parked
  assert.equal(Array.from({ length: 32 }, () => idle.next()).filter((b) => b === 0).length, 31);
  idle.found(); // that probe paid: spinning again
  assert.equal(idle.next(), 50);
  assert.equal(new Idle("spin-then-park", 50, 1).next(), 0, "one CPU: never spin");
  assert.equal(new Idle("park", 50, 8).next(true), 0);
  assert.equal(new Idle("spin", 50, 1).next(), Infinity);
  assert.equal(idleOption(undefined), "spin-then-park");
  assert.throws(
    () => idleOption("busy"),
    /Cannot use idle strategy busy: it must be one of spin-then-park, park, spin/,
  );
  assert.throws(() => shm.pair({ idle: "nap" as never }), RangeError);
});

test("every idle strategy carries messages between threads, with pauses that make the sides park", async () => {
  for (const idle of ["spin-then-park", "park", "spin"] as const) {
    const [a, handle] = shm.pair({ capacity: 256, idle, spin: 20 });
    const b = shm.fromHandle(handle);
    try {
      const echo = (async () => {
        for (let i = 0; i < 20; i++) await b.send(await b.receive({ timeout: 30_000 }));
      })();
      for (let i = 0; i < 20; i++) {
        if (i % 5 === 0) await pause(15);
        await a.send(new Uint8Array([i, 1, 2]));
        assert.deepEqual(await a.receive({ timeout: 30_000 }), new Uint8Array([i, 1, 2]), idle);
      }
      await echo;
    } finally {
      await Promise.all([a.close(), b.close()]);
    }
  }
});

/**
 * Runs a child of `peer` (`script`, given the channel's name, then `args`) over a channel of 4096 bytes that this side
 * makes: it creates it when the child opens it (`how` "open"), else opens the child's. `fn` talks to it. The child is
 * gone when this returns or throws.
 */
async function withChild(
  peer: RuntimeName,
  child: { script: URL; how: "open" | "create"; args: string[]; idle: shm.IdleStrategy; env?: Record<string, string> },
  fn: (channel: shm.ShmChannel, kill: () => Promise<void>) => Promise<void>,
): Promise<void> {
  const rt = await runtime();
  const n = name();
  const abort = new AbortController();
  const mine = child.how === "open"
    ? shm.create(n, { capacity: 4096, idle: child.idle, signal: abort.signal })
    : shm.open(n, { capacity: 4096, idle: child.idle, wait: 60_000, signal: abort.signal });
  const proc = rt.spawn([
    ...runtimeArgv(peer, rt.fromFileUrl(child.script)),
    ...child.args.map((a) => a === NAME ? n : a),
  ], {
    cwd: rt.fromFileUrl(ROOT),
    stdio: "null",
    env: child.env ?? {},
  });
  const timer = setTimeout(() => abort.abort(new Error(`no channel with the ${peer} child in 60 s`)), 60_000);
  let channel: shm.ShmChannel | undefined;
  try {
    channel = await Promise.race([
      mine,
      proc.exited.then((s) => Promise.reject(new Error(`the ${peer} child exited first: ${JSON.stringify(s)}`))),
    ]);
    let killed = false;
    await fn(channel, async () => {
      killed = true;
      proc.kill("SIGKILL");
      await proc.exited;
    });
    await channel.close();
    if (!killed) assert.equal((await proc.exited).code, 0, `the ${peer} child failed`);
  } finally {
    clearTimeout(timer);
    abort.abort();
    await mine.catch(() => {});
    await channel?.close();
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

/** Where the channel's name goes in a child's arguments. */
const NAME = "<name>";

/** Runs a `shm_idle_child.ts` of `peer` that echoes, with the idle strategies given each side (see {@linkcode withChild}). */
function withEcho(
  peer: RuntimeName,
  how: "open" | "create",
  idle: { mine: shm.IdleStrategy; theirs: shm.IdleStrategy },
  env: Record<string, string>,
  fn: (channel: shm.ShmChannel, kill: () => Promise<void>) => Promise<void>,
): Promise<void> {
  return withChild(peer, { script: CHILD, how, args: [how, NAME, idle.theirs], idle: idle.mine, env }, fn);
}

async function roundTrips(channel: shm.ShmChannel, what: string): Promise<void> {
  for (let i = 0; i < 30; i++) {
    if (i % 6 === 0) await pause(15); // both sides run out of spin and park: the wake-up path is what is tested
    const m = new Uint8Array(1 + (i % 40)).fill(i);
    await channel.send(m);
    assert.deepEqual(await channel.receive({ timeout: 30_000 }), m, what);
  }
}

for (const peer of RUNTIMES) {
  test(
    `a ${peer} child parks and is woken: every idle strategy, through the doorbell`,
    { timeout: 120_000 },
    async () => {
      const strategies = ["spin-then-park", "park", "spin"] as const;
      const rt = await runtime();
      // Each runner gives the child another strategy than its own: the two sides need not agree.
      const mine = strategies[RUNTIMES.indexOf(rt.name) % 3]!;
      const theirs = strategies[(RUNTIMES.indexOf(peer) + 1) % 3]!;
      await withEcho(peer, "open", { mine, theirs }, {}, (channel) => {
        return roundTrips(channel, `${mine} here, ${theirs} in ${peer}`);
      });
    },
  );
}

test("plain publication: on where this process can fence, once the consumer stayed awake for PLAIN_AFTER publications, off once it was found asleep", async () => {
  // The words of a thread pair's rings, made in this process (which loaded FFI): what process channels set the same way.
  const fenced = processFence(await native()) !== undefined;
  assert.equal(fenced, arch() === "x64", "x86-64 with membarrier(2) fences; other machines publish with Atomics");
  const [a, handle] = shm.pair({ capacity: 4096, idle: "park" });
  const b = shm.fromHandle(handle);
  try {
    const head = new Int32Array(handle.buffer);
    for (const ring of [CHANNEL_HEADER, CHANNEL_HEADER + ringSize(4096)]) {
      const flags = Atomics.load(head, (ring + 12) / 4);
      assert.equal(flags & CONSUMER_FENCES, fenced ? CONSUMER_FENCES : 0, `flags ${flags} of the ring at ${ring}`);
    }
    const plain = () => Atomics.load(head, (CHANNEL_HEADER + 72) / 4); // a's outgoing ring's `plain` word
    const m = new Uint8Array(8);
    for (let i = 1; i < PLAIN_AFTER; i++) assert.ok(a.trySend(m) && b.tryReceive() !== undefined);
    assert.equal(plain(), 0, `atomic stores for the first ${PLAIN_AFTER - 1}`);
    assert.ok(a.trySend(m) && b.tryReceive() !== undefined);
    assert.equal(plain(), fenced ? 1 : 0, "plain stores from then on, where this process can fence");
    const receiving = b.receive({ timeout: 30_000 }); // parks at once: announces it, fences, sleeps
    await pause(20);
    assert.ok(a.trySend(m));
    assert.deepEqual(await receiving, m);
    assert.equal(plain(), 0, "atomic stores again once the consumer was found asleep");
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

test("plain publication: a peer that writes the plain word or the flags by hand (garbage, or the wrong way) does not stop the channel", async () => {
  await native();
  const [a, handle] = shm.pair({ capacity: 4096, idle: "park" });
  const b = shm.fromHandle(handle);
  try {
    const head = new Int32Array(handle.buffer);
    const rings = [CHANNEL_HEADER, CHANNEL_HEADER + ringSize(4096)];
    // What a peer could write at any moment: as a producer, its plain word (garbage, or 1 when it publishes with
    // atomic stores: the consumer only fences for nothing); as a consumer, its flags (but the closed bits: a
    // producer then publishes plainly to a consumer that fences, or atomically to one that could).
    for (const [plain, flags] of [[0x7fffffff, -1 & ~3], [-1, 0], [1, CONSUMER_FENCES], [1, 0]]) {
      for (const ring of rings) {
        Atomics.store(head, (ring + 72) / 4, plain!);
        Atomics.store(head, (ring + 12) / 4, flags!);
      }
      for (let i = 0; i < 3 * PLAIN_AFTER; i++) {
        const m = new Uint8Array([i & 255]);
        if (i % PLAIN_AFTER === 0) {
          // A side that parks at once, then is sent to: each way.
          const got = b.receive({ timeout: 30_000 });
          await pause(5);
          await a.send(m);
          assert.deepEqual(await got, m, `plain ${plain}, flags ${flags}, message ${i} to b`);
          const back = a.receive({ timeout: 30_000 });
          await pause(5);
          await b.send(m);
          assert.deepEqual(await back, m, `plain ${plain}, flags ${flags}, message ${i} to a`);
        } else {
          assert.ok(a.trySend(m) && b.tryReceive()?.[0] === (i & 255));
          assert.ok(b.trySend(m) && a.tryReceive()?.[0] === (i & 255));
        }
      }
    }
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});

/**
 * A thread pair, side 0 publishing plainly to side 1 (after PLAIN_AFTER messages that found it awake), side 1 made
 * from its own parts changed by `consumer`; runs `body` and closes both. Off x86-64 it checks there is no fence.
 */
async function withPlainPair(
  consumer: (parts: ChannelParts) => ChannelParts,
  body: (a: RingChannel, b: RingChannel, buffer: SharedArrayBuffer) => Promise<void>,
): Promise<void> {
  await native(); // thread channels fence where FFI is loaded
  const buffer = threadBuffer(4096);
  const parts = threadParts({ buffer, side: 1, idle: "park" }, undefined);
  if (arch() !== "x64") return assert.equal(parts.fence, undefined, "no plain publication off x86-64");
  assert.ok(parts.fence !== undefined, "x86-64 with membarrier(2): this side can fence");
  const a = new RingChannel(threadParts({ buffer, side: 0, idle: "park" }, undefined));
  const b = new RingChannel(consumer(parts));
  try {
    const m = new Uint8Array(8);
    for (let i = 0; i < PLAIN_AFTER; i++) assert.ok(a.trySend(m) && b.tryReceive() !== undefined);
    assert.equal(Atomics.load(new Int32Array(buffer), (CHANNEL_HEADER + 72) / 4), 1, "a publishes plainly");
    await body(a, b, buffer);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
}

test("plain publication: a consumer whose fence fails does not sleep on its last look, and still gets the message", async () => {
  let failed = 0;
  await withPlainPair((parts) => ({ ...parts, fence: () => (failed++, false) }), async (a, b) => {
    const receiving = b.receive({ timeout: 30_000 });
    await pause(20);
    assert.ok(failed > 0, "the consumer tried to fence before it slept");
    assert.ok(a.trySend(new Uint8Array([7])));
    assert.deepEqual(await receiving, new Uint8Array([7]));
  });
});

test("plain publication: a producer whose look at the consumer's sleep came late (no wake-up) costs the consumer one bounded sleep, not a hang", async () => {
  // A doorbell that nobody rings: the consumer's sleep ends by its own bound or never.
  const waits: number[] = [];
  const bell = {
    silent: false,
    wait: (ms: number) => (waits.push(ms), ms === Infinity ? new Promise<void>(() => {}) : pause(ms)),
    ring() {},
    close() {},
  } as unknown as Doorbell;
  await withPlainPair((parts) => ({ ...parts, bell }), async (_a, b, buffer) => {
    const receiving = b.receive();
    await pause(20);
    // The record a producer publishes whose look at the announcement came late: written, and nobody woken.
    assert.ok(Ring.attach(buffer, CHANNEL_HEADER).tryWrite(new Uint8Array([9])));
    assert.ok(await within(receiving, 20_000), "the consumer's sleep ended by its bound");
    assert.deepEqual(await receiving, new Uint8Array([9]));
    assert.ok(waits.length > 0 && waits.every((ms) => ms <= SLEEP_MS), `bounded sleeps only: ${waits}`);
  });
});

/** Runs a `shm_fence_child.ts` of `peer` in `role`; this side's channel waits with `idle` (see {@linkcode withChild}). */
function withFenceChild(
  peer: RuntimeName,
  role: "spin" | "burst",
  idle: shm.IdleStrategy,
  seed: number,
  fn: (channel: shm.ShmChannel) => Promise<void>,
): Promise<void> {
  return withChild(peer, { script: FENCE_CHILD, how: "open", args: [NAME, role, String(seed)], idle }, fn);
}

/** A counted wait of 0 to ~0.3 us, drawn from `seed` (returns the next seed). */
function jitter(seed: number): number {
  const next = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  let x = 0;
  for (let k = 0; k < next % 256; k++) x += k;
  return x === -1 ? 0 : next;
}

/** The next message, taken in a busy loop (this side stays awake, it never announces a sleep). */
async function busyReceive(channel: shm.ShmChannel): Promise<Uint8Array> {
  for (let spins = 0;; spins++) {
    const m = channel.tryReceive();
    if (m !== undefined) return m;
    if ((spins & 0xffff) === 0xffff) await new Promise((r) => setTimeout(r, 0)); // the child's exit can come in
  }
}

for (const peer of RUNTIMES) {
  test(
    `plain publication with a ${peer} child: a side that parks just as the other publishes is woken, for data and for room`,
    { timeout: 180_000 },
    async () => {
      const seed = (Date.now() % 1_000_000) + 1;
      const says = `seed ${seed}`;
      const parks = 1500;
      const message = (i: number) => new Uint8Array([i & 255, i >> 8]);
      // This side takes 64 replies awake (the child's producer then publishes plainly), then parks for the 65th a
      // pseudo-random 0-0.3 us after its send, while the child answers within a microsecond: its announcement lands
      // again and again just as the child publishes. A lost wake-up hangs a doorbell's sleep: the receive times out.
      // The 64 go out in one burst (the child echoes each as it comes): one wait for the child's turn on a CPU, not 64,
      // when the machine is busy.
      await withFenceChild(peer, "spin", "park", seed, async (channel) => {
        let s = seed;
        for (let park = 0; park < parks; park++) {
          const first = park * (PLAIN_AFTER + 1);
          for (let i = first; i < first + PLAIN_AFTER; i++) await channel.send(message(i));
          for (let i = first; i < first + PLAIN_AFTER; i++) {
            assert.deepEqual(await busyReceive(channel), message(i), `reply ${i}, ${says}`);
          }
          const last = first + PLAIN_AFTER;
          await channel.send(message(last));
          s = jitter(s);
          assert.deepEqual(await channel.receive({ timeout: 30_000 }), message(last), `reply ${last}, ${says}`);
        }
      });
      // The other way: the child takes 64 awake (this side's producer then publishes plainly) and parks for the 65th,
      // which this side sends as soon as the 64th reply is in.
      await withFenceChild(peer, "burst", "spin", seed, async (channel) => {
        for (let park = 0; park < parks; park++) {
          const first = park * (PLAIN_AFTER + 1);
          for (let i = first; i < first + PLAIN_AFTER; i++) await channel.send(message(i));
          for (let i = first; i <= first + PLAIN_AFTER; i++) {
            assert.deepEqual(await channel.receive({ timeout: 30_000 }), message(i), `reply ${i}, ${says}`);
            if (i === first + PLAIN_AFTER - 1) await channel.send(message(first + PLAIN_AFTER));
          }
        }
      });
      // Sleeps for room: messages of 1000 bytes, four to a ring, sent and taken at once both ways, both sides parked.
      await withEcho(peer, "open", { mine: "park", theirs: "park" }, {}, async (channel) => {
        const n = 2000;
        const sending = (async () => {
          for (let i = 0; i < n; i++) await channel.send(new Uint8Array(1000).fill(i & 255));
        })();
        for (let i = 0; i < n; i++) {
          const m = await channel.receive({ timeout: 30_000 });
          assert.ok(m.length === 1000 && m[0] === (i & 255) && m[999] === (i & 255), `message ${i} of ${n}`);
        }
        await sending;
      });
    },
  );
}

test("without a doorbell (the creator's socket path does not fit), both sides wake each other with futexes", {
  timeout: 120_000,
}, async () => {
  const rt = await runtime();
  // A TMPDIR longer than a socket path can be: the creator (the child) makes no doorbell.
  const long = `${await rt.makeTempDir("ipckit-long-")}/${"d".repeat(100)}`;
  const { mkdirSync } = await import("node:fs");
  mkdirSync(long, { recursive: true });
  try {
    const peer = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 2) % 3]!;
    const idle = { mine: "park", theirs: "park" } as const;
    await withEcho(peer, "create", idle, { TMPDIR: long }, (channel) => roundTrips(channel, `futexes with ${peer}`));
  } finally {
    await rt.removeDir(long.slice(0, long.lastIndexOf("/")));
  }
});

test(
  "strangers on the doorbell (a false pid and garbage, or silence) do not take the peer's place and are hung up on",
  {
    timeout: 120_000,
  },
  async () => {
    const rt = await runtime();
    const n = name();
    const abort = new AbortController();
    const creating = shm.create(n, { capacity: 4096, signal: abort.signal });
    let stranger: Awaited<ReturnType<typeof rt.connectUnix>> | undefined;
    let silent: Awaited<ReturnType<typeof rt.connectUnix>> | undefined;
    let child: ReturnType<typeof rt.spawn> | undefined;
    let channel: shm.ShmChannel | undefined;
    try {
      // Read the doorbell's path from the segment's header (64..191, length at byte 16), as any process could.
      let path = "";
      for (let i = 0; i < 600 && path === ""; i++) {
        const segment = await SharedMemory.open(n).catch(() => undefined);
        if (segment !== undefined) {
          const length = new Int32Array(segment.buffer, 0, 8)[4]!;
          if (length > 0) path = new TextDecoder().decode(new Uint8Array(segment.buffer, 64, length));
          segment.close();
        }
        if (path === "") await pause(50);
      }
      assert.notEqual(path, "", "the creator laid out a doorbell path");
      stranger = await rt.connectUnix(path);
      let strangerEnded!: () => void;
      const ended = new Promise<void>((resolve) => (strangerEnded = resolve));
      stranger.start({ data() {}, end: () => strangerEnded() });
      stranger.write(new Uint8Array([1, 0, 0, 0, 9, 9, 9, 9, 9]));
      // And one that connects and says nothing at all.
      silent = await rt.connectUnix(path);
      let silentEnded!: () => void;
      const silentEnd = new Promise<void>((resolve) => (silentEnded = resolve));
      silent.start({ data() {}, end: () => silentEnded() });
      const peer = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % 3]!;
      child = rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(CHILD)), "open", n, "park"], {
        cwd: rt.fromFileUrl(ROOT),
        stdio: "null",
      });
      channel = await creating;
      // The creator hung up on the strangers once it had its peer (bounded: a hang here is the failure).
      assert.ok(await within(ended, 30_000), "the stranger with a false pid was hung up on");
      assert.ok(await within(silentEnd, 30_000), "the silent stranger was hung up on");
      await roundTrips(channel, `with a stranger on the bell, ${peer} child`);
      await channel.close();
      assert.equal((await child.exited).code, 0);
    } finally {
      abort.abort();
      await creating.catch(() => {});
      await channel?.close();
      stranger?.close();
      silent?.close();
      child?.kill("SIGKILL");
      await child?.exited;
    }
  },
);

test("a peer SIGKILLed while this side sleeps: receive() rejects with ClosedError, it does not hang", {
  timeout: 120_000,
}, async () => {
  const rt = await runtime();
  const peer = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % 3]!;
  await withEcho(peer, "open", { mine: "park", theirs: "park" }, {}, async (channel, kill) => {
    await roundTrips(channel, "before the kill");
    const pending = channel.receive({ timeout: 60_000 }).then(() => undefined, (e: unknown) => e);
    await pause(50); // asleep by now
    await kill();
    const e = await pending;
    assert.ok(e instanceof ClosedError && /died|closed/.test(e.message), `receive() ended with ${e}`);
  });
});
