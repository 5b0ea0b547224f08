/**
 * The shared memory channel against its floors and against a Unix socket, between this runtime (the parent) and
 * a peer of `--runtime`, in one run:
 * - round trip of an 8-byte and a 1 KiB message over `shm` (await send + await receive on both sides, the default
 *   idle strategy) and of 8 bytes with `trySend`/`tryReceive` (both sides busy, no promises); the raw JavaScript
 *   spin on the same kind of segment (Atomics on two words of one cache line, no channel: the floor for JS); the
 *   JS ring's round trip (`bench/js_ring.ts`: the least a JavaScript channel does, fresh arrays, no checks); the
 *   Unix socket channel;
 * - one-way throughput into a peer that copies every payload out of the ring: 64-byte messages with `send()` +
 *   `receive()`, `trySend()` + `tryReceive()`, `trySend()` + `receiveInto()` (one reused buffer: the sender's cost
 *   without an array per message on the other side), `trySend()` + `drain()` (the cost of single sends: no copy out
 *   on the other side), `sendMany()` (batches of 64) + `receiveMany()`, and `sendMany()` +
 *   `drain()` (the peer reads each message where it lies, no copy); 64 KiB messages
 *   with `trySend()` into `tryReceive()` (a fresh array per message) and into `receiveInto()` (one reused buffer);
 *   64 KiB and 1 MiB messages copied in and out (`trySend()` of a buffer filled first, `receiveInto()`) against loans
 *   (`loan()` filled in place, `receiveLoan()` read in place: no copy either side); and the JS ring's 64-byte batches
 *   read in place, the floor of `sendMany()` + `drain()`, and sent one at a time, the floor of `trySend()` + `drain()`.
 * Round trips are timed one by one into an HdrHistogram over all `--reps` repetitions (p50, p99, p99.9, max); the
 * trySend round trip and the raw spin, too short to time one by one, are medians of repetitions of long loops. The
 * two reads of the clock around each timed round trip cost 80-170 ns here, which the loops do not pay: so the raw
 * spin is also timed one by one (its p50 is the like-for-like floor of the await p50), and the 8-byte await round
 * trip is also run as loops (its mean is the like-for-like figure for the loop floor).
 * The two processes may share a core or not, as the scheduler places them (this machine has 2). Figures, not
 * pass/fail. `--json` prints the rows as one JSON line instead of the table (`bench/suite.ts` collects them).
 *
 *   node --import tsx bench/shm.ts [--runtime deno|bun|node] [--reps 5] [--spin 50] [--only latency,throughput]
 *   npx bun bench/shm.ts --runtime deno
 *   npx deno run -A bench/shm.ts
 *
 * @module
 */
import { type Channel, runtime, runtimeArgv, type RuntimeName, SharedMemory, shm, unix } from "../mod.ts";
import { echoScript, guard, median, reap, ROOT, table } from "../cli/peers/launch.ts";
import type { LatencyRow, ThroughputRow } from "./report.ts";
import { Latency } from "./stats.ts";
import { flags } from "./args.ts";
import { JS_RING_SEGMENT, JsRing, jsRingControl } from "./js_ring.ts";

const rt = await runtime();
const args = rt.args();
const { opt } = flags(args);
const peer = opt("--runtime", rt.name) as RuntimeName;
const REPS = Number(opt("--reps", "5"));
const SPIN = opt("--spin", "50");
const ONLY = new Set(opt("--only", "latency,unix,throughput,death").split(","));
const JSON_OUT = args.includes("--json");
const pair = `${rt.name}-${peer}`;
const peerScript = (file: string) => rt.fromFileUrl(new URL(`./peers/${file}`, import.meta.url));
const tag = `/ipckit-bench-${rt.pid}`;

/** The sink's APIs (the second word of its header). */
const SINK = { receive: 0, receiveMany: 1, receiveInto: 2, drain: 3, receiveLoan: 4 } as const;

function spawn(file: string, ...rest: string[]) {
  return rt.spawn([...runtimeArgv(peer, peerScript(file)), ...rest], { cwd: ROOT, stdio: "null" });
}

async function shmPeer(mode: "echo" | "spin" | "sink", capacity: number) {
  const name = `${tag}-${mode}`;
  const ac = new AbortController();
  const pending = shm.create(name, { capacity, spin: Number(SPIN), signal: ac.signal });
  const child = spawn("shm_echo.ts", name, mode, SPIN);
  const channel = await guard(child, pending, `shm ${mode} peer on ${peer}`).catch((e) => {
    ac.abort();
    throw e;
  });
  return { channel, child, close: async () => (await channel.close(), await reap(child, "shm peer")) };
}

/** Times each of `n` round trips into `lat`. */
/** Mean microseconds per round trip of `n` in a row, untimed one by one (as the raw spin's loop). */
async function loopRoundTrip(ch: Channel, size: number, n: number): Promise<number> {
  const m = new Uint8Array(size);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await ch.send(m);
    await ch.receive();
  }
  return ((performance.now() - t0) * 1000) / n;
}

async function eachRoundTrip(ch: Channel, size: number, n: number, lat: Latency | undefined): Promise<void> {
  const m = new Uint8Array(size);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await ch.send(m);
    await ch.receive();
    lat?.record((performance.now() - t) * 1000);
  }
}

/**
 * Raw floor: Atomics ping-pong on a segment with the spin peer, mean microseconds per round trip of each rep; with
 * `timed`, each round trip is also timed into it as the channel's are (the same clock reads around each), so the two
 * p50s carry the same cost of timing.
 */
async function rawSpin(n: number, reps: number, timed?: Latency): Promise<number[]> {
  const seg = await SharedMemory.create(`${tag}-spin`, { size: 4096 });
  const w = new Int32Array(seg.buffer, 0, 16);
  const child = spawn("shm_spin.ts", seg.name);
  const out: number[] = [];
  try {
    const deadline = Date.now() + 30_000;
    while (Atomics.load(w, 3) === 0) {
      if (Date.now() > deadline) throw new Error("Cannot start the raw spin peer: it never mapped the segment");
      await new Promise((r) => setTimeout(r, 5));
    }
    let seq = 0;
    const run = (k: number) => {
      const t0 = performance.now();
      for (let i = 0; i < k; i++) {
        Atomics.store(w, 0, ++seq);
        while (Atomics.load(w, 1) !== seq) { /* spin */ }
      }
      return ((performance.now() - t0) * 1000) / k;
    };
    const each = (k: number, lat: Latency) => {
      for (let i = 0; i < k; i++) {
        const t = performance.now();
        Atomics.store(w, 0, ++seq);
        while (Atomics.load(w, 1) !== seq) { /* spin */ }
        lat.record((performance.now() - t) * 1000);
      }
    };
    run(Math.min(n, 10_000));
    for (let r = 0; r < reps; r++) {
      out.push(run(n));
      if (timed) each(20_000, timed);
    }
  } finally {
    Atomics.store(w, 2, 1);
    await reap(child, "spin peer");
    seg.unlink();
    seg.close();
  }
  return out;
}

type Api = "await send" | "trySend" | "sendMany" | "loan";

/** Messages and bytes per second, one way, into the sink taking them with `sink`. */
async function oneWay(ch: shm.ShmChannel, size: number, count: number, api: Api, sink: number) {
  const m = new Uint8Array(size);
  const batch = Array.from({ length: 64 }, () => m);
  const header = new Uint8Array(8);
  new DataView(header.buffer).setUint32(0, count, true);
  new DataView(header.buffer).setUint32(4, sink, true);
  const t0 = performance.now();
  await ch.send(header);
  if (api === "trySend") {
    for (let i = 0; i < count; i++) {
      if (size > 64) m.fill(i & 255); // large payloads are made before they are copied in (the loans fill in place)
      if (!ch.trySend(m)) await ch.send(m);
    }
  } else if (api === "loan") {
    // The payload is made where it goes (a fill here), against the fill of a buffer of its own and a copy below.
    for (let i = 0; i < count; i++) {
      const loan = ch.tryLoan(size) ?? await ch.loan(size);
      loan.bytes.fill(i & 255);
      loan.commit();
    }
  } else if (api === "sendMany") {
    for (let i = 0; i < count; i += 64) {
      const k = Math.min(64, count - i);
      const part = k === 64 ? batch : batch.slice(0, k);
      const sent = ch.trySendMany(part);
      if (sent < k) await ch.sendMany(part.slice(sent));
    }
  } else {
    for (let i = 0; i < count; i++) await ch.send(m);
  }
  await ch.receive();
  const s = (performance.now() - t0) / 1000;
  return { msgs: count / s, bytes: (count * size) / s };
}

/**
 * Runs `body` against a peer of the JavaScript ring floor (`bench/js_ring.ts`) in `mode`, on a segment of its own;
 * stops the peer and removes the segment after, also when `body` throws.
 */
async function withJsRing<T>(
  mode: "echo" | "sink",
  body: (ends: { out: JsRing; in: JsRing }, ctl: Int32Array) => T,
): Promise<T> {
  const seg = await SharedMemory.create(`${tag}-js-ring`, { size: JS_RING_SEGMENT });
  const ctl = jsRingControl(seg.buffer);
  const child = spawn("js_ring.ts", seg.name, mode);
  try {
    const deadline = Date.now() + 30_000;
    while (Atomics.load(ctl, 0) === 0) {
      if (Date.now() > deadline) throw new Error("Cannot start the JS ring peer: it never mapped the segment");
      await new Promise((r) => setTimeout(r, 5));
    }
    return body(JsRing.ends(seg.buffer, 0), ctl);
  } finally {
    Atomics.store(ctl, 1, 1);
    await reap(child, "JS ring peer");
    seg.unlink();
    seg.close();
  }
}

/** The JS ring's 8-byte round trip with fresh arrays both sides: mean microseconds of each rep's loop of `n`. */
function jsRingRoundTrips(n: number, reps: number): Promise<number[]> {
  return withJsRing("echo", (ends) => {
    const m = new Uint8Array(8);
    const run = (k: number) => {
      const t0 = performance.now();
      for (let i = 0; i < k; i++) {
        while (!ends.out.send(m)) { /* spin */ }
        while (ends.in.receive() === undefined) { /* spin */ }
      }
      return ((performance.now() - t0) * 1000) / k;
    };
    run(Math.min(n, 10_000));
    return Array.from({ length: reps }, () => run(n));
  });
}

/**
 * The JS ring's one-way 64-byte messages read where they lie: sent one at a time (the floor of `trySend()` into
 * `drain()`), or in batches of 64 (the same message 64 times; the floor of `sendMany()` into `drain()`). Msg/s per rep.
 */
function jsRingOneWay(count: number, reps: number, batched: boolean): Promise<number[]> {
  return withJsRing("sink", (ends, ctl) => {
    const m = new Uint8Array(64).fill(7);
    const batch = Array.from({ length: 64 }, () => m);
    const run = (k: number) => {
      const start = Atomics.load(ctl, 2);
      const t0 = performance.now();
      if (batched) { for (let i = 0; i < k; i += 64) while (!ends.out.sendBatch(batch)) { /* spin */ } }
      else for (let i = 0; i < k; i++) while (!ends.out.send(m)) { /* spin */ }
      while (Atomics.load(ctl, 2) - start < k) { /* spin */ }
      return k / ((performance.now() - t0) / 1000);
    };
    run(count / 10);
    return Array.from({ length: reps }, () => run(count));
  });
}

const latency: LatencyRow[] = [];
const throughput: ThroughputRow[] = [];
const notes: string[] = [];
const rows: string[][] = [["measure", "value", "unit", "note"]];
const fmt = (x: number, d = 3) => x.toFixed(d);
if (!JSON_OUT) {
  console.log(`ipckit shm benchmark: parent ${rt.name} ${rt.version} <-> peer ${peer}; ${REPS} reps; spin ${SPIN} us`);
}

if (ONLY.has("latency")) {
  let awaitMean = NaN;
  const echo = await shmPeer("echo", 1 << 20);
  try {
    for (const size of [8, 1024]) {
      // Warm up the very code that is timed (a Latency of its own: with none, the first timed round trips run
      // freshly compiled code, and the pause that takes can leave the pair parked for a while, see docs/performance),
      // for half a second at least.
      const warm = new Latency();
      for (const until = performance.now() + 500; performance.now() < until;) {
        await eachRoundTrip(echo.channel, size, 2000, warm);
      }
      const lat = new Latency();
      for (let r = 0; r < REPS; r++) await eachRoundTrip(echo.channel, size, 20_000, lat);
      const d = lat.summary();
      latency.push({ transport: `shm ${size} B`, pair, ...d });
      rows.push([`shm round trip ${size} B, p50`, fmt(d.p50), "us", "await send + await receive"]);
      rows.push([
        `shm round trip ${size} B, tail`,
        `${fmt(d.p99, 1)} / ${fmt(d.p999, 1)} / ${fmt(d.max, 0)}`,
        "us",
        `p99 / p99.9 / max of ${d.count} (HdrHistogram)`,
      ]);
    }
    const means: number[] = [];
    for (let r = 0; r < REPS; r++) means.push(await loopRoundTrip(echo.channel, 8, 100_000));
    awaitMean = median(means);
    latency.push({ transport: "shm 8 B, loop mean", pair, p50: awaitMean, count: REPS * 100_000 });
    rows.push(["shm round trip 8 B, mean of a loop", fmt(awaitMean), "us", "untimed one by one; median of means"]);
  } finally {
    await echo.close();
  }
  const spinner = await shmPeer("spin", 1 << 20);
  let trySendP50 = NaN;
  try {
    const run = (n: number) => {
      const m = new Uint8Array(8);
      const ch = spinner.channel;
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        while (!ch.trySend(m)) { /* spin */ }
        while (ch.tryReceive() === undefined) { /* spin */ }
      }
      return ((performance.now() - t0) * 1000) / n;
    };
    run(10_000);
    const xs: number[] = [];
    for (let r = 0; r < REPS; r++) xs.push(run(200_000));
    trySendP50 = median(xs);
    latency.push({ transport: "shm 8 B trySend", pair, p50: trySendP50, count: REPS * 200_000 });
    rows.push(["shm round trip 8 B, trySend/tryReceive", fmt(trySendP50), "us", "both sides busy; median of means"]);
  } finally {
    await spinner.close();
  }
  const jsRing = median(await jsRingRoundTrips(200_000, REPS));
  latency.push({ transport: "JS ring trySend (API floor)", pair, p50: jsRing, count: REPS * 200_000 });
  const timed = new Latency();
  const raw = median(await rawSpin(200_000, REPS, timed));
  const rawTimed = timed.summary();
  latency.push({ transport: "raw JS spin (floor)", pair, p50: raw, count: REPS * 200_000 });
  latency.push({ transport: "raw JS spin, timed each (floor)", pair, ...rawTimed });
  rows.push(["raw JS spin round trip (floor)", fmt(raw), "us", "Atomics on a segment, no channel; median of means"]);
  rows.push(["raw JS spin, timed one by one, p50", fmt(rawTimed.p50), "us", "the same clock reads as the shm p50's"]);
  const p50 = latency.find((r) => r.transport === "shm 8 B")!.p50;
  rows.push(["shm 8 B p50 / floor", fmt(p50 / raw, 2), "x", "same run; issue 18 aims at <= 2"]);
  rows.push(["shm 8 B p50 / floor timed the same way", fmt(p50 / rawTimed.p50, 2), "x", "like for like"]);
  rows.push(["shm 8 B loop mean / floor", fmt(awaitMean / raw, 2), "x", "means of loops, neither timed one by one"]);
  rows.push(["shm 8 B trySend / floor", fmt(trySendP50 / raw, 2), "x", "same run; issue 18 aims at <= 1.5"]);
  rows.push(["JS ring round trip, fresh arrays (API floor)", fmt(jsRing), "us", "bench/js_ring.ts; median of means"]);
  rows.push(["JS ring / raw spin", fmt(jsRing / raw, 2), "x", "what the runtime costs a channel in JS"]);
  rows.push(["shm 8 B trySend / JS ring", fmt(trySendP50 / jsRing, 2), "x", "what the channel adds to it"]);
  notes.push(
    `${pair}: 8 B p50 ${fmt(p50 / raw, 2)}x and trySend ${fmt(trySendP50 / raw, 2)}x the raw JS spin; ` +
      `trySend ${fmt(trySendP50 / jsRing, 2)}x the JS ring (itself ${fmt(jsRing / raw, 2)}x the spin)`,
  );
}

if (ONLY.has("unix")) {
  const dir = await rt.makeTempDir("ipckit-bench-");
  const path = `${dir}/u.sock`;
  const listener = await unix.listen(path);
  const child = rt.spawn([...runtimeArgv(peer, echoScript()), `unix=${path}`], { cwd: ROOT, stdio: "null" });
  try {
    const ch = await guard(child, listener.accept(), `unix echo peer on ${peer}`);
    await eachRoundTrip(ch, 8, 2000, undefined);
    const lat = new Latency();
    for (let r = 0; r < REPS; r++) await eachRoundTrip(ch, 8, 4000, lat);
    const d = lat.summary();
    latency.push({ transport: "unix 8 B", pair, ...d });
    rows.push(["unix channel round trip 8 B, p50", fmt(d.p50, 1), "us", `p99 ${fmt(d.p99, 1)}, max ${fmt(d.max, 0)}`]);
    await ch.close();
    await reap(child, "unix echo peer");
  } finally {
    await listener.close();
    await rt.removeDir(dir);
  }
}

if (ONLY.has("throughput")) {
  const sink = await shmPeer("sink", 4 << 20);
  const runs: [number, number, Api, keyof typeof SINK, string][] = [
    [64, 1_000_000, "await send", "receive", "send"],
    [64, 2_000_000, "trySend", "receive", "trySend"],
    [64, 2_000_000, "trySend", "receiveInto", "trySend, receiveInto"],
    [64, 4_000_000, "trySend", "drain", "trySend, drain"],
    [64, 4_000_000, "sendMany", "receiveMany", "batch, receiveMany"],
    [64, 8_000_000, "sendMany", "drain", "batch, drain"],
    [65536, 20_000, "trySend", "receive", "fresh arrays"],
    [65536, 40_000, "trySend", "receiveInto", "receiveInto"],
    [65536, 40_000, "loan", "receiveLoan", "loans"],
    [1 << 20, 2_000, "trySend", "receiveInto", "receiveInto"],
    [1 << 20, 2_000, "loan", "receiveLoan", "loans"],
  ];
  try {
    for (const [size, count, api, how, label] of runs) {
      await oneWay(sink.channel, size, count / 10, api, SINK[how]);
      const msgs: number[] = [];
      const bytes: number[] = [];
      for (let r = 0; r < REPS; r++) {
        const x = await oneWay(sink.channel, size, count, api, SINK[how]);
        msgs.push(x.msgs);
        bytes.push(x.bytes);
      }
      throughput.push({
        transport: "shm",
        api: label,
        pair,
        size,
        msgsPerSec: median(msgs),
        bytesPerSec: median(bytes),
      });
      rows.push([
        `shm one-way ${size} B, ${label}`,
        fmt(median(msgs) / 1e6, 2),
        "M msg/s",
        `${fmt(median(bytes) / 1e9, 2)} GB/s`,
      ]);
    }
  } finally {
    await sink.close();
  }
  for (
    const [api, count, batched] of [["trySend, drain", 4_000_000, false], ["batch, drain", 8_000_000, true]] as const
  ) {
    const floor = median(await jsRingOneWay(count, REPS, batched));
    throughput.push({ transport: "JS ring (floor)", api, pair, size: 64, msgsPerSec: floor, bytesPerSec: floor * 64 });
    const how = batched ? "batches" : "single sends";
    rows.push([
      `JS ring one-way 64 B, ${how} (floor)`,
      fmt(floor / 1e6, 2),
      "M msg/s",
      "bench/js_ring.ts, read in place",
    ]);
    const shm = throughput.find((t) => t.transport === "shm" && t.size === 64 && t.api === api)!.msgsPerSec;
    rows.push([`shm 64 B ${api} / JS ring`, fmt(shm / floor, 2), "x", "what the channel keeps of it"]);
  }
}

// Peer death: how long until a sleeping receive() learns that the peer was SIGKILLed.
if (ONLY.has("death")) {
  const victim = await shmPeer("echo", 4096);
  const pending = victim.channel.receive().then(() => NaN, () => performance.now());
  await new Promise((r) => setTimeout(r, 200)); // let both sides go to sleep
  const t0 = performance.now();
  victim.child.kill("SIGKILL");
  await victim.child.exited;
  const ms = (await pending) - t0;
  rows.push(["peer SIGKILLed -> receive() rejects", fmt(ms, 1), "ms", "its doorbell connection ends"]);
  notes.push(`${pair}: a SIGKILLed peer is seen in ${fmt(ms, 1)} ms`);
  await victim.channel.close();
}

if (JSON_OUT) {
  console.log(JSON.stringify({ pair, runtimes: { [rt.name]: rt.version }, latency, throughput, notes }));
} else {
  console.log(table(rows));
}
