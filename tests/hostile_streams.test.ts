/**
 * Bounded memory on stream channels and listeners, driven by raw peers (issue 16, findings 1, 8 and 10): a Python
 * program writing bytes on sockets in non-blocking mode (`helpers/raw_flood.py`: what the kernel accepted from it,
 * exactly, is what it reports), plain `node:net` sockets, and decoders fed by hand. No ipckit client anywhere: the
 * peers here do not play by the rules.
 *
 * The bounds asserted are sizes, never times: a raw writer that the kernel stopped taking bytes from (EAGAIN for
 * 1.5 s) has been paused by the reader, and what it got rid of is what the reader holds plus the kernel's buffers.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import * as net from "node:net";
import process from "node:process";
import { ClosedError, MessageTooLargeError, ProtocolError, TimeoutError, udp, unix } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import type { ByteStream, ChildProcess } from "../runtimes/runtime.ts";
import { BaseChannel, type Capabilities, MESSAGE_OVERHEAD } from "../transports/channel.ts";
import { FrameDecoder } from "../transports/framing.ts";
import { LineDecoder } from "../transports/lines.ts";
import { type ListenerLimits, StreamListener } from "../transports/listener.ts";
import { StreamChannel, type StreamChannelOptions } from "../transports/stream_channel.ts";

const rt = await runtime();
const FLOOD = rt.fromFileUrl(new URL("./helpers/raw_flood.py", import.meta.url));
const KiB = 1024;
const MiB = 1024 * 1024;
const text = new TextDecoder();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await rt.makeTempDir("ipckit-hostile-");
  try {
    await fn(dir);
  } finally {
    await rt.removeDir(dir);
  }
}

/** A Unix listener built as `unix.listen` builds it, with limits (the transports pass them through). */
async function listen(
  path: string,
  limits: ListenerLimits,
  options: StreamChannelOptions = {},
): Promise<StreamListener> {
  const listener = new StreamListener({
    description: `Unix socket "${path}"`,
    wrap: (s) => new StreamChannel(s, `Unix socket "${path}"`, unix.capabilities, options),
    afterClose: () => rt.removeFile(path),
  }, limits);
  listener.attach(await rt.listenUnix(path, listener.onConnection));
  return listener;
}

/** The repeating unit of a stream of `size`-byte messages, all zero, length-framed, as hex. */
function frameUnit(size: number): string {
  const head = [size >>> 24, (size >>> 16) & 0xff, (size >>> 8) & 0xff, size & 0xff];
  return head.map((b) => b.toString(16).padStart(2, "0")).join("") + "00".repeat(size);
}

/** The raw Python peer of `helpers/raw_flood.py`. */
class Flood {
  readonly #child: ChildProcess;
  readonly #out: ByteStream;
  #seen = "";
  #ended = false;

  constructor(address: string, connections: number, unit: string, cap: number, stall = 1.5) {
    this.#child = rt.spawn(["python3", FLOOD, address, String(connections), unit, String(cap), String(stall)], {
      stdio: "pipe",
    });
    this.#out = this.#child.stdio!;
    this.#out.start({
      data: (c) => void (this.#seen += text.decode(c, { stream: true })),
      end: () => void (this.#ended = true),
    });
  }

  async #line(prefix: string): Promise<string> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const line = this.#seen.split("\n").find((l) => l.startsWith(prefix));
      if (line !== undefined) return line;
      if (this.#ended || Date.now() > deadline) {
        throw new Error(`expected "${prefix}..." from the raw peer, got "${this.#seen}"`);
      }
      await sleep(20);
    }
  }

  /** Waits until every socket stopped: what the kernel accepted on each, and which the server closed. */
  async result(): Promise<{ sent: number[]; closed: boolean[] }> {
    return JSON.parse(await this.#line("{"));
  }

  /** Completes each open stream at a message boundary and half-closes it; resolves when the server ended each. */
  async finish(): Promise<void> {
    await this.#out.write(new TextEncoder().encode("finish\n"));
    await this.#line("done");
  }

  async kill(): Promise<void> {
    this.#child.kill("SIGKILL");
    await this.#child.exited.catch(() => {});
    this.#out.close();
  }
}

/** Receives until the end; checks each message's size; returns how many arrived. */
async function drain(channel: { receive(): Promise<Uint8Array> }, size: number): Promise<number> {
  let n = 0;
  for (;;) {
    let m: Uint8Array;
    try {
      m = await channel.receive();
    } catch (e) {
      if (e instanceof ClosedError) return n;
      throw e;
    }
    if (m.byteLength !== size) throw new Error(`message ${n} has ${m.byteLength} bytes, expected ${size}`);
    n++;
  }
}

function rawConnect(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.createConnection(path, () => {
      s.off("error", reject);
      resolve(s);
    });
    s.once("error", reject);
  });
}

/** Resolves true once the server closed `socket` (EOF or reset), false after `ms`. */
function closedWithin(socket: net.Socket, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    const done = () => {
      clearTimeout(timer);
      resolve(true);
    };
    socket.once("close", done);
    socket.once("end", done);
    socket.once("error", done);
    socket.resume();
  });
}

// --- Finding 1: per-message overhead in backpressure ---------------------------------------------------------

/** A channel with no OS behind it: the test delivers messages by hand and watches pause/resume. */
class HandChannel extends BaseChannel {
  readonly capabilities: Capabilities = {
    ordered: true,
    reliable: true,
    maxMessage: 1 << 20,
    crossHost: false,
    datagram: false,
  };
  pauses = 0;
  resumes = 0;
  push(m: Uint8Array): void {
    this.deliver(m);
  }
  protected _send(): undefined {
    return undefined;
  }
  protected _close(): Promise<void> {
    return Promise.resolve();
  }
  protected override _pause(): void {
    this.pauses++;
  }
  protected override _resume(): void {
    this.resumes++;
  }
}

test("BaseChannel: empty messages count MESSAGE_OVERHEAD each, so reading pauses at highWaterMark / MESSAGE_OVERHEAD of them", async () => {
  const highWaterMark = 64 * KiB;
  const ch = new HandChannel("a hand-fed channel", { highWaterMark });
  const limit = highWaterMark / MESSAGE_OVERHEAD;
  const empty = new Uint8Array(0);
  for (let i = 0; i < limit - 1; i++) ch.push(empty);
  assert.equal(ch.pauses, 0);
  ch.push(empty);
  assert.equal(ch.pauses, 1, `reading pauses after ${limit} empty messages (payload bytes alone never reach it)`);
  // Receiving below half resumes, as for payload bytes.
  for (let i = 0; i <= limit / 2; i++) await ch.receive();
  assert.equal(ch.resumes, 1);
  // Mixed sizes: each counts its bytes plus the overhead.
  const mixed = new HandChannel("a hand-fed channel", { highWaterMark: 10 * (100 + MESSAGE_OVERHEAD) });
  for (let i = 0; i < 9; i++) mixed.push(new Uint8Array(100));
  assert.equal(mixed.pauses, 0);
  mixed.push(new Uint8Array(100));
  assert.equal(mixed.pauses, 1);
  await ch.close();
  await mixed.close();
});

test(
  "a raw peer flooding empty frames at a channel that does not read is paused: what the kernel took from it stays bounded, and nothing is lost",
  { timeout: 180_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      await using listener = await unix.listen(path); // the default highWaterMark (16 MiB)
      const flood = new Flood(path, 1, frameUnit(0), 8 * MiB);
      try {
        const channel = await listener.accept();
        const { sent } = await flood.result();
        // Reading pauses once 16 MiB / MESSAGE_OVERHEAD empty messages (512 KiB of frames) wait; add the kernel's
        // buffers (about 200 KiB for a Unix socket) and the runtime's read buffer. Counting payload bytes alone, it
        // never paused: the peer got rid of all 8 MiB (2 million messages, hundreds of MB of heap).
        assert.ok(sent[0]! < 2 * MiB, `the raw peer wrote ${sent[0]} bytes of empty frames into a channel nobody read`);
        const reading = drain(channel, 0);
        await flood.finish();
        assert.equal(await reading, Math.ceil(sent[0]! / 4), "every empty message arrives once reading resumes");
        await channel.close();
      } finally {
        await flood.kill();
      }
    });
  },
);

test("udp: empty datagrams nobody reads fill the queue at highWaterMark / MESSAGE_OVERHEAD; the rest are dropped", {
  timeout: 120_000,
}, async () => {
  const highWaterMark = 64 * KiB;
  await using server = await udp.bind({ highWaterMark });
  const raw = dgram.createSocket("udp4");
  try {
    const sent = 3000;
    for (let i = 0; i < sent; i++) {
      await new Promise<void>((r, j) =>
        raw.send(new Uint8Array(0), server.address.port, "127.0.0.1", (e) => (e ? j(e) : r()))
      );
      if (i % 50 === 0) await sleep(1); // let the receiver read, or the kernel's buffer (~256 of them) drops the rest
    }
    // Wait until the kernel's buffer is drained into the socket: `dropped` stops changing.
    for (let last = -1, same = 0; same < 3; await sleep(100)) {
      same = server.dropped === last ? same + 1 : 0;
      last = server.dropped;
    }
    let queued = 0;
    for (;;) {
      try {
        await server.receive({ timeout: 500 });
        queued++;
      } catch (e) {
        if (e instanceof TimeoutError) break;
        throw e;
      }
    }
    // Counting payload bytes alone, every empty datagram was queued (3000 here, millions from a real flood).
    assert.ok(queued <= highWaterMark / MESSAGE_OVERHEAD, `${queued} empty datagrams were queued`);
    assert.ok(queued + server.dropped > highWaterMark / MESSAGE_OVERHEAD, "enough datagrams arrived to test the bound");
  } finally {
    raw.close();
  }
});

// --- Finding 1, second half: connections not yet accepted --------------------------------------------------

test(
  "connections nobody accepted read nothing: 8 raw peers flooding a listener stay bounded, and each message arrives once accepted",
  { timeout: 180_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      await using listener = await unix.listen(path);
      const size = 1020; // 1 KiB frames: payload bytes, so this is about where unaccepted connections read, not overhead
      const flood = new Flood(path, 8, frameUnit(size), 6 * MiB);
      try {
        const { sent, closed } = await flood.result();
        assert.deepEqual(closed, new Array(8).fill(false));
        for (const [i, n] of sent.entries()) {
          // Each unaccepted connection used to be a channel reading up to highWaterMark (16 MiB): all 6 MiB went.
          assert.ok(n < 2 * MiB, `unaccepted connection ${i} took ${n} bytes`);
        }
        const channels = [];
        for (let i = 0; i < 8; i++) channels.push(await listener.accept());
        const reading = Promise.all(channels.map((c) => drain(c, size)));
        await flood.finish();
        // The listener hands connections out in arrival order: the Python peer connected them in order.
        assert.deepEqual(await reading, sent.map((n) => Math.ceil(n / (size + 4))));
        await Promise.all(channels.map((c) => c.close()));
      } finally {
        await flood.kill();
      }
    });
  },
);

test(
  "the accept queue is bounded: connections beyond backlog are closed at once, the others wait unread",
  { timeout: 180_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      await using listener = await listen(path, { backlog: 3 });
      const flood = new Flood(path, 6, frameUnit(0), 64 * MiB);
      try {
        const { sent, closed } = await flood.result();
        assert.deepEqual(closed, [false, false, false, true, true, true]);
        for (const n of sent.slice(0, 3)) assert.ok(n < 2 * MiB, `a waiting connection took ${n} bytes`);
        const channels = [await listener.accept(), await listener.accept(), await listener.accept()];
        const reading = Promise.all(channels.map((c) => drain(c, 0)));
        await flood.finish();
        assert.deepEqual(await reading, sent.slice(0, 3).map((n) => Math.ceil(n / 4)));
        await Promise.all(channels.map((c) => c.close()));
      } finally {
        await flood.kill();
      }
    });
  },
);

// --- Listener limits: maxConnections and idleTimeout ------------------------------------------------------

test("maxConnections: beyond it new connections are closed at once, and a closed one frees its place", {
  timeout: 120_000,
}, async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    await using listener = await listen(path, { maxConnections: 2 });
    const sockets: net.Socket[] = [];
    try {
      for (let i = 0; i < 2; i++) sockets.push(await rawConnect(path));
      const a = await listener.accept();
      const b = await listener.accept();
      const third = await rawConnect(path);
      sockets.push(third);
      assert.equal(await closedWithin(third, 30_000), true, "the third connection is closed by the server");
      // Close one: its place frees once the connection is gone (the peer's end completes the close handshake).
      sockets[0]!.destroy();
      await assert.rejects(a.receive(), ClosedError);
      const accepting = listener.accept();
      let fourth: net.Socket | undefined;
      for (let i = 0; i < 200 && fourth === undefined; i++) {
        const s = await rawConnect(path);
        sockets.push(s);
        const refused = await Promise.race([closedWithin(s, 60_000), accepting.then(() => false)]);
        if (!refused) fourth = s;
        else await sleep(50);
      }
      assert.ok(fourth, "a new connection is accepted once one closed");
      const d = await accepting;
      fourth.write(new Uint8Array([0, 0, 0, 1, 42]));
      assert.deepEqual([...await d.receive()], [42]);
      await Promise.all([a.close(), b.close(), d.close()]);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

test(
  "idleTimeout: a silent connection is closed with a ClosedError caused by a TimeoutError; traffic, or this side not reading, keeps one open",
  { timeout: 120_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      const idleTimeout = 1000;
      await using listener = await listen(path, { idleTimeout }, { highWaterMark: 1024 });
      const sockets: net.Socket[] = [];
      try {
        const silent = await rawConnect(path);
        const talker = await rawConnect(path);
        const flooder = await rawConnect(path);
        sockets.push(silent, talker, flooder);
        const [s, t, f] = [await listener.accept(), await listener.accept(), await listener.accept()];
        // The flooder fills this side's queue (highWaterMark 1 KiB: 8 empty messages), then stops: reading pauses.
        flooder.write(new Uint8Array(4 * 100));
        const ping = setInterval(() => talker.write(new Uint8Array(4)), 50);
        let pings = 0;
        try {
          const silentEnd = await s.receive().then(() => undefined, (e: unknown) => e);
          assert.ok(silentEnd instanceof ClosedError, `${silentEnd}`);
          assert.match(silentEnd.message, /idleTimeout/);
          assert.ok(silentEnd.cause instanceof TimeoutError);
          assert.equal(await closedWithin(silent, 30_000), true, "the raw peer sees its connection end");
          // Keep the talker going for 3 idle periods more: its channel stays open.
          const until = Date.now() + 3 * idleTimeout;
          while (Date.now() < until) {
            assert.equal((await t.receive()).byteLength, 0);
            pings++;
          }
        } finally {
          clearInterval(ping);
        }
        assert.ok(pings > 10);
        // The flooded channel sat paused all along: not idle. All 100 messages are there.
        assert.equal(f.closed, false);
        for (let i = 0; i < 100; i++) assert.equal((await f.receive()).byteLength, 0);
        // Once both go silent, both are closed.
        for (const c of [t, f]) {
          const end = await drain(c, 0).then(() => undefined, (e: unknown) => e);
          assert.equal(end, undefined);
          assert.equal(c.closed, true);
        }
        await Promise.all([s.close(), t.close(), f.close()]);
      } finally {
        for (const x of sockets) x.destroy();
      }
    });
  },
);

test("ListenerLimits are validated with RangeError", () => {
  const parts = { description: "a test listener", wrap: () => ({}) as never };
  assert.throws(() => new StreamListener(parts, { backlog: 0 }), RangeError);
  assert.throws(() => new StreamListener(parts, { backlog: 1.5 }), RangeError);
  assert.throws(() => new StreamListener(parts, { maxConnections: -1 }), RangeError);
  assert.throws(() => new StreamListener(parts, { idleTimeout: -5 }), RangeError);
  assert.throws(() => new StreamListener(parts, { idleTimeout: NaN }), RangeError);
  new StreamListener(parts, { backlog: 1, maxConnections: Infinity, idleTimeout: 0 });
});

// --- Finding 10: the frame decoder grows as bytes arrive ---------------------------------------------------

test("FrameDecoder: a 64 MiB - 1 length followed by a few bytes holds 64 KiB, not 64 MiB, and grows with the bytes", () => {
  const decoder = new FrameDecoder(64 * MiB, () => {});
  decoder.push(new Uint8Array([0x03, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]), false);
  assert.ok(decoder.held <= 64 * KiB, `held ${decoder.held} bytes`);
  let received = 10;
  const piece = new Uint8Array(100 * KiB);
  for (let i = 0; i < 40; i++) {
    decoder.push(piece, false);
    received += piece.byteLength;
    assert.ok(decoder.held <= 2 * received + 64 * KiB, `held ${decoder.held} bytes after ${received}`);
  }
  assert.throws(() => decoder.finish(), ProtocolError);
});

test(
  "64 raw connections announcing 64 MiB - 1 and sending 16 bytes do not reserve 4 GiB",
  { timeout: 120_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      await using listener = await unix.listen(path);
      const sockets: net.Socket[] = [];
      const channels = [];
      try {
        const before = process.memoryUsage().external;
        for (let i = 0; i < 64; i++) {
          const s = await rawConnect(path);
          sockets.push(s);
          s.end(new Uint8Array([0x03, 0xff, 0xff, 0xff, ...new Uint8Array(16)]));
          channels.push(await listener.accept());
        }
        // Each stream ends inside its frame: the ProtocolError says the decoder read the 16 bytes (and still holds
        // its buffer, since the channel is referenced here).
        for (const c of channels) {
          await assert.rejects(c.receive(), (e: Error) => {
            assert.ok(e instanceof ProtocolError, `${e}`);
            assert.match(e.message, /after 16 of 67108863 payload bytes/);
            return true;
          });
        }
        const grew = process.memoryUsage().external - before;
        assert.ok(grew < 512 * MiB, `external memory grew by ${(grew / MiB).toFixed(0)} MiB`);
        await Promise.all(channels.map((c) => c.close()));
      } finally {
        for (const s of sockets) s.destroy();
      }
    });
  },
);

test("LineDecoder: a line arriving byte by byte is held in one buffer, bounded by maxMessage", () => {
  const decoder = new LineDecoder(64 * KiB, () => {});
  const a = new Uint8Array([0x61]);
  for (let i = 1; i <= 20_000; i++) {
    decoder.push(a, false);
    if (i % 1000 === 0) assert.ok(decoder.held <= 2 * i + 1024, `held ${decoder.held} bytes after ${i}`);
  }
  // Past maxMessage: MessageTooLargeError, and what is held stays within maxMessage + 1.
  assert.throws(() => {
    for (let i = 0; i < 64 * KiB; i++) decoder.push(a, false);
  }, MessageTooLargeError);
  assert.ok(decoder.held <= 64 * KiB + 1);
});

test(
  "a raw peer sending one endless line to a lines channel gets MessageTooLargeError at maxMessage, not a growing heap",
  { timeout: 120_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      await using listener = await unix.listen(path, { framing: "lines", maxMessage: 256 * KiB });
      const flood = new Flood(path, 1, "61".repeat(64), 64 * MiB);
      try {
        const channel = await listener.accept();
        await assert.rejects(channel.receive(), MessageTooLargeError);
        const { sent, closed } = await flood.result();
        assert.equal(closed[0], true, "the channel closed the connection");
        assert.ok(sent[0]! < 4 * MiB, `the raw peer wrote ${sent[0]} bytes`);
        await channel.close();
      } finally {
        await flood.kill();
      }
    });
  },
);

// --- Finding 8: the write path stays linear -------------------------------------------------------------

test(
  "300 000 small writes to a peer that does not read are queued in linear time, and arrive whole and in order",
  { timeout: 120_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      const N = 300_000;
      let peer: net.Socket | undefined;
      const got: Uint8Array[] = [];
      let gotBytes = 0;
      let ended!: () => void;
      const end = new Promise<void>((r) => (ended = r));
      const server = net.createServer((s) => {
        peer = s;
        s.pause(); // read nothing: the writer's queue grows
        s.on("data", (c: Uint8Array) => {
          got.push(c);
          gotBytes += c.byteLength;
        });
        s.on("end", () => ended());
      });
      await new Promise<void>((r) => server.listen(path, r));
      const stream = await rt.connectUnix(path);
      try {
        stream.start({ data: () => {}, end: () => {} });
        const chunk = (i: number) => new Uint8Array([i >>> 24, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]);
        // Write as a channel does: until write() asks to wait. Bun's adapter queues up to 1 MiB after the kernel's
        // buffer is full: about 250 000 of these chunks. Walking that queue on each write (as it did) is 3 * 10^10
        // steps; a running count is one per write.
        let i = 0;
        let wait: Promise<void> | undefined;
        while (i < N && wait === undefined) wait = stream.write(chunk(i++));
        while (peer === undefined) await sleep(10);
        peer.resume();
        await wait;
        for (; i < N; i++) await stream.write(chunk(i));
        await stream.end();
        await end;
        assert.equal(gotBytes, 4 * N);
        const all = new Uint8Array(gotBytes);
        let at = 0;
        for (const c of got) {
          all.set(c, at);
          at += c.byteLength;
        }
        const view = new DataView(all.buffer);
        for (let j = 0; j < N; j++) if (view.getUint32(4 * j) !== j) assert.fail(`chunk ${j} is out of order`);
      } finally {
        stream.close();
        peer?.destroy();
        await new Promise((r) => server.close(r));
      }
    });
  },
);

test(
  "100 000 sends not awaited, to a peer that does not read, queue without shift() and arrive in order; aborted ones are skipped",
  { timeout: 120_000 },
  async () => {
    await withDir(async (dir) => {
      const path = `${dir}/s.sock`;
      const N = 100_000;
      let peer: net.Socket | undefined;
      const got: Uint8Array[] = [];
      const server = net.createServer((s) => {
        peer = s;
        s.pause();
        s.on("data", (c: Uint8Array) => got.push(c));
      });
      await new Promise<void>((r) => server.listen(path, r));
      const channel = await unix.connect(path);
      try {
        // 32-byte messages (3.6 MB of frames): the runtime's queue (1 MiB) fills early, and most sends wait in the
        // channel's own queue (a V8 array whose shift() copies it: 100 000 of them took seconds). Every 1000th is
        // aborted while it waits.
        const sends: Promise<unknown>[] = [];
        const aborts: AbortController[] = [];
        for (let i = 0; i < N; i++) {
          const m = new Uint8Array(32);
          new DataView(m.buffer).setUint32(0, i);
          if (i % 1000 !== 999) {
            sends.push(channel.send(m).then(() => "sent", (e: Error) => e.name));
            continue;
          }
          const abort = new AbortController(); // (only these: an abort listener costs ~15 us on Node)
          aborts.push(abort);
          sends.push(channel.send(m, { signal: abort.signal }).then(() => "sent", (e: Error) => e.name));
        }
        for (const a of aborts) a.abort();
        while (peer === undefined) await sleep(10);
        peer.resume();
        const results = await Promise.all(sends);
        const aborted = results.filter((r) => r === "AbortError").length;
        assert.ok(aborted > 0 && aborted <= aborts.length, `${aborted} sends aborted`);
        assert.equal(results.filter((r) => r === "sent").length, N - aborted);
        await channel.close();
        while (!peer.readableEnded) await sleep(10);
        const all = new Uint8Array(got.reduce((n, c) => n + c.byteLength, 0));
        let at = 0;
        for (const c of got) {
          all.set(c, at);
          at += c.byteLength;
        }
        // Frames of 32-byte messages, in order, with exactly the aborted ones missing.
        const view = new DataView(all.buffer);
        const seen: number[] = [];
        for (let off = 0; off < all.byteLength; off += 36) seen.push(view.getUint32(off + 4));
        assert.equal(seen.length, N - aborted);
        for (let j = 1; j < seen.length; j++) {
          if (seen[j]! <= seen[j - 1]!) assert.fail(`message ${seen[j]} out of order`);
        }
        const delivered = new Set(seen);
        for (const [j, r] of results.entries()) {
          if ((r === "AbortError") === delivered.has(j)) {
            assert.fail(`message ${j}: ${r}, delivered ${delivered.has(j)}`);
          }
        }
      } finally {
        await channel.close();
        peer?.destroy();
        await new Promise((r) => server.close(r));
      }
    });
  },
);

test("close() against a peer that reads nothing drops the connection after closeTimeout; queued sends reject", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/s.sock`;
    const accepted: net.Socket[] = [];
    // A raw server that accepts and never reads a byte.
    const server = net.createServer((s) => void accepted.push(s.pause()));
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      const ch = await unix.connect(path, { closeTimeout: 300 });
      await assert.rejects(unix.connect(path, { closeTimeout: -1 }), RangeError);
      // Queue more than the kernel and the runtime will take without a reader.
      const message = new Uint8Array(MiB);
      const sends: Promise<void>[] = [];
      for (let i = 0; i < 64; i++) sends.push(ch.send(message));
      const settled = sends.map((p) => p.then(() => "sent", (e) => e));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const hung = new Promise((resolve) => (timer = setTimeout(() => resolve("hung"), 60_000)));
      assert.equal(await Promise.race([ch.close().then(() => "closed"), hung]), "closed");
      clearTimeout(timer);
      const outcomes = await Promise.all(settled);
      const refused = outcomes.filter((o) => o instanceof ClosedError);
      assert.ok(refused.length > 0, "some sends could not go out and say so");
      assert.equal(refused.length + outcomes.filter((o) => o === "sent").length, 64, `${outcomes}`);
      assert.match((refused[0] as Error).message, /read nothing for 300 ms/);
    } finally {
      for (const s of accepted) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
