/**
 * RPC call costs over shm, Unix socket and TCP, next to birpc over the same kind of Unix socket, in one run:
 * - sequential: one `add(i, 1)` call awaited after the other (the round trip of a call), each timed into an
 *   HdrHistogram over all repetitions: p50, p99, p99.9, max and mean, in us;
 * - pipelined, in calls per second: `--window` calls (64) in flight, the next window sent once they all returned;
 *   and `--batch` calls (1000) at once the same way, where the caller's thousand pending promises cost their share.
 * Over shm, the bare channel's echo of 8 bytes is measured the same way, as the floor under RPC, in turns with it
 * (blocks of `--calls` sequential calls on each, 2 x `--reps` times; then the pipelined runs in turns), so that a load
 * that comes and goes on the machine weighs on both; the ratio is also given as the median of the blocks' ratios.
 * The server is a child on `--runtime` (`bench/peers/rpc_server.ts`); birpc's server is a Node child (birpc over
 * node:net with newline-delimited JSON, the way its README wires a socket). ipckit uses CBOR. Pipelined: medians of `--reps`.
 * Pin to one CPU (`taskset -c 0`) to see software costs; unpinned, shm spins on the other CPU and avoids wake-ups.
 *
 *   node --import tsx bench/rpc.ts [--runtime deno|bun|node] [--reps 5] [--calls 5000] [--window 64] [--batch 1000]
 *     [--only shm,unix,tcp,birpc]
 *
 * @module
 */
import { rpc, runtime, runtimeArgv, type RuntimeName, shm, tcp, unix } from "../mod.ts";
import { birpcOverLines } from "./peers/birpc_lines.ts";
import { guard, median, reap, ROOT, table } from "../cli/peers/launch.ts";
import { type Distribution, Latency } from "./stats.ts";
import { flags } from "./args.ts";
import { cpuTimes, stolenNote } from "./steal.ts";

const rt = await runtime();
const cpuAtStart = await cpuTimes();
const args = rt.args();
const { opt } = flags(args);
const peer = opt("--runtime", rt.name) as RuntimeName;
const REPS = Number(opt("--reps", "5"));
const CALLS = Number(opt("--calls", "5000"));
const BATCH = Number(opt("--batch", "1000"));
const WINDOW = Number(opt("--window", "64"));
const ONLY = new Set(opt("--only", "shm,unix,tcp,birpc").split(","));
const SERVER = rt.fromFileUrl(new URL("./peers/rpc_server.ts", import.meta.url));

type Add = (a: number, b: number) => Promise<number>;

/** What one transport measured: sequential calls, and pipelined calls/s in windows and in batches. */
interface Measured {
  calls: Distribution;
  windowed: number;
  batched: number;
}

/** Calls per second, `inFlight` at a time, over CALLS * 20 calls. */
async function pipelined(add: Add, inFlight: number): Promise<number> {
  const t0 = performance.now();
  for (let done = 0; done < CALLS * 20; done += inFlight) {
    await Promise.all(Array.from({ length: inFlight }, (_, i) => add(i, 1)));
  }
  return (CALLS * 20) / ((performance.now() - t0) / 1000);
}

/** One block of CALLS sequential calls, each timed into `lat`; returns the block's own p50 (us). */
async function sequential(add: Add, lat: Latency): Promise<number> {
  const block = new Latency();
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    if ((await add(i, 1)) !== i + 1) throw new Error("wrong sum");
    const us = (performance.now() - t) * 1000;
    lat.record(us);
    block.record(us);
  }
  return block.summary().p50;
}

/** Lets the JIT settle on both sides. */
async function warm(add: Add): Promise<void> {
  for (let i = 0; i < 20_000; i++) await add(i, 1);
}

/** Sequential calls, each timed into one HdrHistogram over all repetitions; pipelined calls/s, medians of REPS. */
async function measure(add: Add): Promise<Measured> {
  await warm(add);
  const lat = new Latency();
  const windowed: number[] = [];
  const batched: number[] = [];
  for (let r = 0; r < REPS; r++) {
    await sequential(add, lat);
    windowed.push(await pipelined(add, WINDOW));
    batched.push(await pipelined(add, BATCH));
  }
  return { calls: lat.summary(), windowed: median(windowed), batched: median(batched) };
}

/**
 * Two transports measured in turns (a block of sequential calls on one, then on the other, REPS times, then their
 * pipelined runs in turns): a machine whose load changes during the run weighs on both alike. Also returns the
 * median over the blocks of the ratio of their p50s, block by block.
 */
async function measurePair(a: Add, b: Add): Promise<[Measured, Measured, number]> {
  await warm(a);
  await warm(b);
  const latA = new Latency(), latB = new Latency();
  const ratios: number[] = [];
  const win: [number[], number[]] = [[], []];
  const bat: [number[], number[]] = [[], []];
  for (let r = 0; r < REPS * 2; r++) {
    const pa = await sequential(a, latA);
    const pb = await sequential(b, latB);
    ratios.push(pa / pb);
  }
  for (let r = 0; r < REPS; r++) {
    win[0].push(await pipelined(a, WINDOW));
    win[1].push(await pipelined(b, WINDOW));
    bat[0].push(await pipelined(a, BATCH));
    bat[1].push(await pipelined(b, BATCH));
  }
  return [
    { calls: latA.summary(), windowed: median(win[0]), batched: median(bat[0]) },
    { calls: latB.summary(), windowed: median(win[1]), batched: median(bat[1]) },
    median(ratios),
  ];
}

const dir = await rt.makeTempDir("ipckit-bench-rpc-");
const rows: string[][] = [[
  "transport",
  "call p50",
  "p99",
  "p99.9",
  "max",
  "mean (us)",
  `${WINDOW} in flight (calls/s)`,
  `${BATCH} in flight (calls/s)`,
]];
const notes: string[] = [];
const row = (label: string, m: Measured) => {
  const d = m.calls;
  const f = (x: number) => (x >= 100 ? x.toFixed(0) : x.toFixed(1));
  const n = (x: number) => Math.round(x).toString();
  rows.push([label, f(d.p50), f(d.p99), f(d.p999), f(d.max), f(d.mean), n(m.windowed), n(m.batched)]);
};
const spawn = (kind: string, address: string, runtimeName: RuntimeName = peer) =>
  rt.spawn([...runtimeArgv(runtimeName, SERVER), kind, address], { cwd: ROOT, stdio: "null" });
try {
  if (ONLY.has("shm")) {
    // RPC over shm and, as its floor, the bare channel's echo of 8 bytes (no RPC, no codec), measured in turns.
    const name = `/ipckit-bench-rpc-${rt.pid}`;
    const pending = shm.create(name, { capacity: 1 << 20 });
    const child = spawn("shm", name);
    const client = rpc.connect<{ add: Add }>(await guard(child, pending, `rpc shm server on ${peer}`));
    const echoName = `${name}-echo`;
    const echoPending = shm.create(echoName, { capacity: 1 << 20 });
    const echo = spawn("shm-echo", echoName);
    const channel = await guard(echo, echoPending, `shm echo on ${peer}`);
    const ping = new Uint8Array(8);
    const [m, e, ratio] = await measurePair(client.api.add, async (a, b) => {
      await channel.send(ping);
      await channel.receive();
      return a + b;
    });
    row("shm (cbor)", m);
    row("shm channel alone (floor)", e);
    notes.push(
      `shm: call p50 / floor p50 = ${(m.calls.p50 / e.calls.p50).toFixed(2)}x over the run, ` +
        `${ratio.toFixed(2)}x as the median of ${REPS * 2} pairs of blocks of ${CALLS} calls`,
    );
    await client.close();
    await reap(child, "rpc shm server");
    await channel.close();
    await reap(echo, "shm echo");
  }
  if (ONLY.has("unix")) {
    const listener = await unix.listen(`${dir}/rpc.sock`);
    const child = spawn("unix", `${dir}/rpc.sock`);
    const client = rpc.connect<{ add: Add }>(await guard(child, listener.accept(), `rpc unix server on ${peer}`));
    const m = await measure(client.api.add);
    row("unix socket (cbor)", m);
    await client.close();
    await reap(child, "rpc unix server");
    await listener.close();
  }
  if (ONLY.has("tcp")) {
    const listener = await tcp.listen({ port: 0 });
    const child = spawn("tcp", String(listener.port));
    const client = rpc.connect<{ add: Add }>(await guard(child, listener.accept(), `rpc tcp server on ${peer}`));
    const m = await measure(client.api.add);
    row("tcp (cbor)", m);
    await client.close();
    await reap(child, "rpc tcp server");
    await listener.close();
  }
  // birpc over a Unix socket (Node parent only: it drives node:net directly)
  if (rt.name === "node" && ONLY.has("birpc")) {
    const net = await import("node:net");
    const { createBirpc } = await import("birpc");
    const path = `${dir}/birpc.sock`;
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(path, r));
    const accepted = new Promise<import("node:net").Socket>((r) => server.once("connection", r));
    const child = spawn("birpc", path, "node");
    const socket = await guard(child, accepted, "birpc server");
    const client = createBirpc<{ add: Add }>({}, { ...birpcOverLines(socket), timeout: 60_000 });
    const m = await measure((a, b) => client.add(a, b));
    row("birpc, unix socket (json, node)", m);
    socket.end();
    await reap(child, "birpc server");
    server.close();
  }
  console.log(
    `RPC add(i, 1): ${rt.name} client -> ${peer} server; calls timed one by one over ${REPS} reps, pipelined medians\n`,
  );
  console.log(table(rows));
  notes.push(stolenNote(cpuAtStart, await cpuTimes()));
  for (const note of notes) console.log(`\n${note}`);
} finally {
  await rt.removeDir(dir);
}
