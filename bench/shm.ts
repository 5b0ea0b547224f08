/**
 * The shared memory channel against its floor and against a Unix socket, in one run:
 * - round trip of an 8-byte and a 1 KiB message over `shm` (await send + await receive on both sides, spinning),
 *   over a raw JavaScript spin on the same kind of segment (Atomics on two words, no channel: the floor for JS),
 *   and over ipckit's Unix socket channel;
 * - one-way throughput of 64-byte and 64 KiB messages over `shm`, with `send()` (a promise per message) and with
 *   `trySend()` (none), into a peer that takes them with `tryReceive()`.
 * Round trips are timed one by one into an HdrHistogram over all `--reps` repetitions (p50, p99, p99.9, max; the
 * 8-byte p50 also as a ratio to the raw spin floor of the same run); the other figures are medians of the
 * repetitions. The peer runs on `--runtime` (default: this runtime). Figures, not pass/fail.
 *
 *   node --import tsx bench/shm.ts [--runtime deno|bun|node] [--reps 5] [--spin 50]
 *   npx bun bench/shm.ts --runtime deno
 *   npx deno run -A bench/shm.ts
 *
 * @module
 */
import { type Channel, runtime, runtimeArgv, type RuntimeName, SharedMemory, shm, unix } from "../mod.ts";
import { echoScript, guard, median, reap, ROOT, table } from "../cli/peers/launch.ts";
import { type Distribution, Latency } from "./stats.ts";

const rt = await runtime();
const args = rt.args();
const opt = (flag: string, dflt: string) => {
  const i = args.indexOf(flag);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
};
const peer = opt("--runtime", rt.name) as RuntimeName;
const REPS = Number(opt("--reps", "5"));
const SPIN = opt("--spin", "50");
const peerScript = (file: string) => rt.fromFileUrl(new URL(`./peers/${file}`, import.meta.url));
const tag = `/ipckit-bench-${rt.pid}`;

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

async function roundTrips(ch: Channel, size: number, n: number): Promise<number> {
  const m = new Uint8Array(size);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    await ch.send(m);
    await ch.receive();
  }
  return ((performance.now() - t0) * 1000) / n;
}

/** Times each of `n` round trips into `lat`: p50 shows the typical case, p99 and beyond the sleeps. */
async function eachRoundTrip(ch: Channel, size: number, n: number, lat: Latency): Promise<void> {
  const m = new Uint8Array(size);
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await ch.send(m);
    await ch.receive();
    lat.record((performance.now() - t) * 1000);
  }
}

/** Raw floor: Atomics ping-pong on a segment with the spin peer. */
async function rawSpin(n: number, reps: number): Promise<number[]> {
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
    run(Math.min(n, 10_000));
    for (let r = 0; r < reps; r++) out.push(run(n));
  } finally {
    Atomics.store(w, 2, 1);
    await reap(child, "spin peer");
    seg.unlink();
    seg.close();
  }
  return out;
}

/** Messages per second and bytes per second, one way, into the sink. */
async function oneWay(ch: Channel & { trySend(m: Uint8Array): boolean }, size: number, count: number, sync: boolean) {
  const m = new Uint8Array(size);
  const header = new Uint8Array(8);
  new DataView(header.buffer).setUint32(0, count, true);
  const t0 = performance.now();
  await ch.send(header);
  if (sync) {
    for (let i = 0; i < count; i++) if (!ch.trySend(m)) await ch.send(m);
  } else {
    for (let i = 0; i < count; i++) await ch.send(m);
  }
  await ch.receive();
  const s = (performance.now() - t0) / 1000;
  return { msgs: count / s, bytes: (count * size) / s };
}

const rows: string[][] = [["measure", "value", "unit", "note"]];
let roundTrip8: Distribution | undefined;
const fmt = (x: number, d = 3) => x.toFixed(d);
console.log(`ipckit shm benchmark: parent ${rt.name} ${rt.version} <-> peer ${peer}; ${REPS} reps; spin ${SPIN} us`);

// Round trips.
{
  const echo = await shmPeer("echo", 1 << 20);
  try {
    for (const size of [8, 1024]) {
      const n = 20_000;
      await roundTrips(echo.channel, size, 2000);
      const lat = new Latency();
      for (let r = 0; r < REPS; r++) await eachRoundTrip(echo.channel, size, n, lat);
      const d = lat.summary();
      if (size === 8) roundTrip8 = d;
      rows.push([`shm round trip ${size} B, p50`, fmt(d.p50), "us", "await send + await receive"]);
      rows.push([
        `shm round trip ${size} B, tail`,
        `${fmt(d.p99, 1)} / ${fmt(d.p999, 1)} / ${fmt(d.max, 0)}`,
        "us",
        `p99 / p99.9 / max of ${d.count} (HdrHistogram); a side preempted past its spin sleeps`,
      ]);
    }
  } finally {
    await echo.close();
  }
  const spinner = await shmPeer("spin", 1 << 20);
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
    rows.push(["shm round trip 8 B, trySend/tryReceive", fmt(median(xs)), "us", "both sides busy, no promises"]);
  } finally {
    await spinner.close();
  }
  const raw = await rawSpin(200_000, REPS);
  rows.push(["raw JS spin round trip (floor)", fmt(median(raw)), "us", "Atomics on a segment, no channel"]);
  if (roundTrip8 !== undefined) {
    rows.push(["shm 8 B p50 / floor", fmt(roundTrip8.p50 / median(raw), 2), "x", "same run; issue 18 aims at <= 2"]);
  }
}
{
  const dir = await rt.makeTempDir("ipckit-bench-");
  const path = `${dir}/u.sock`;
  const listener = await unix.listen(path);
  const child = rt.spawn([...runtimeArgv(peer, echoScript()), `unix=${path}`], { cwd: ROOT, stdio: "null" });
  try {
    const ch = await guard(child, listener.accept(), `unix echo peer on ${peer}`);
    await roundTrips(ch, 8, 2000);
    const xs: number[] = [];
    for (let r = 0; r < REPS; r++) xs.push(await roundTrips(ch, 8, 5000));
    rows.push(["unix channel round trip 8 B", fmt(median(xs), 1), "us", "same runtimes, for comparison"]);
    await ch.close();
    await reap(child, "unix echo peer");
  } finally {
    await listener.close();
    await rt.removeDir(dir);
  }
}

// Throughput.
{
  const sink = await shmPeer("sink", 4 << 20);
  try {
    for (const [size, count] of [[64, 1_000_000], [65536, 40_000]] as const) {
      for (const sync of [false, true]) {
        await oneWay(sink.channel, size, count / 10, sync);
        const msgs: number[] = [];
        const bytes: number[] = [];
        for (let r = 0; r < REPS; r++) {
          const x = await oneWay(sink.channel, size, count, sync);
          msgs.push(x.msgs);
          bytes.push(x.bytes);
        }
        const how = sync ? "trySend" : "await send";
        rows.push([
          `shm one-way ${size} B, ${how}`,
          fmt(median(msgs) / 1e6, 2),
          "M msg/s",
          `${fmt(median(bytes) / 1e9, 2)} GB/s`,
        ]);
      }
    }
  } finally {
    await sink.close();
  }
}
// Peer death: how long until a waiting receive() learns that the peer was SIGKILLed.
{
  const victim = await shmPeer("echo", 4096);
  const pending = victim.channel.receive().then(() => NaN, () => performance.now());
  await new Promise((r) => setTimeout(r, 200)); // let both sides go to sleep
  const t0 = performance.now();
  victim.child.kill("SIGKILL");
  await victim.child.exited;
  rows.push([
    "peer SIGKILLed -> receive() rejects",
    fmt((await pending) - t0, 1),
    "ms",
    "liveness checked every 100 ms",
  ]);
  await victim.channel.close();
}
console.log(table(rows));
