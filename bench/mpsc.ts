/**
 * Many producers into one consumer: 4 producer processes of `--runtime` send `--count` messages of `--size` bytes
 * each (64 by default) as fast as they can, into this process, over
 * - one many-producer channel (`shm.collector` / `shm.producer`: one ring, a compare-and-swap per message), and
 * - 4 separate single-producer shm channels (`shm.create` / `shm.open`), which this process polls in turn.
 * Both consumers copy every message out (`tryReceive()`, and `receive()` when nothing is there). The clock runs from
 * the moment all producers are told to go (a word in a small segment) until the last message arrived; messages per
 * second are the median of `--reps` runs. Throughput only: no latency is measured here (the round trip of one
 * channel is `bench/shm.ts`'s). Figures, not pass/fail. `--json` prints the rows as one JSON line.
 *
 *   node --import tsx bench/mpsc.ts [--runtime deno|bun|node] [--count 1000000] [--size 64] [--reps 5]
 *   npx deno run -A bench/mpsc.ts --count 2000 --reps 1     (a quick check that it works)
 *
 * @module
 */
import { runtime, runtimeArgv, type RuntimeName, SharedMemory, shm } from "../mod.ts";
import { median, reap, ROOT, table } from "../cli/peers/launch.ts";
import type { ThroughputRow } from "./report.ts";
import { flags } from "./args.ts";

const rt = await runtime();
const args = rt.args();
const PRODUCERS = 4;

/** A producer process: `mpsc.ts producer <mpsc|spsc> <name> <go> <count> <size>`. */
async function producer(kind: string, name: string, go: string, count: number, size: number): Promise<void> {
  const start = await SharedMemory.open(go);
  const flag = new Int32Array(start.buffer, 0, 1);
  const m = new Uint8Array(size);
  if (kind === "mpsc") {
    const p = await shm.producer(name, { wait: 30_000 });
    Atomics.add(flag, 0, 2); // ready
    while ((Atomics.load(flag, 0) & 1) === 0) await new Promise((r) => setTimeout(r, 1));
    for (let i = 0; i < count; i++) if (!p.trySend(m)) await p.send(m);
    await p.close();
  } else {
    const ch = await shm.open(name, { wait: 30_000 });
    Atomics.add(flag, 0, 2);
    while ((Atomics.load(flag, 0) & 1) === 0) await new Promise((r) => setTimeout(r, 1));
    for (let i = 0; i < count; i++) if (!ch.trySend(m)) await ch.send(m);
    await ch.receive().catch(() => {}); // until the consumer closes: everything sent was taken
    await ch.close();
  }
  start.close();
}

if (args[0] === "producer") {
  const [, kind, name, go, count, size] = args;
  await producer(kind!, name!, go!, Number(count), Number(size));
} else {
  const { opt, has } = flags(args);
  const peer = opt("--runtime", rt.name) as RuntimeName;
  const COUNT = Number(opt("--count", "1000000"));
  const SIZE = Number(opt("--size", "64"));
  const REPS = Number(opt("--reps", "5"));
  const pair = `${rt.name}-${peer}`;
  const tag = `/ipckit-bench-mpsc-${rt.pid}`;
  const script = rt.fromFileUrl(import.meta.url);

  /** One run: msgs/s of PRODUCERS x COUNT messages into this process. */
  const run = async (kind: "mpsc" | "spsc", rep: number): Promise<number> => {
    const go = await SharedMemory.create(`${tag}-go-${kind}${rep}`, { size: 64 });
    const flag = new Int32Array(go.buffer, 0, 1);
    const names = Array.from({ length: PRODUCERS }, (_, k) => `${tag}-${kind}${rep}-${k}`);
    const collector = kind === "mpsc" ? await shm.collector(names[0]!, { capacity: 1 << 20 }) : undefined;
    const creating = kind === "spsc" ? names.map((n) => shm.create(n, { capacity: 1 << 18 })) : [];
    const children = names.map((n) =>
      rt.spawn(
        [...runtimeArgv(peer, script), "producer", kind, collector ? names[0]! : n, go.name, `${COUNT}`, `${SIZE}`],
        { cwd: ROOT, stdio: "null", stderr: "inherit" },
      )
    );
    const channels = await Promise.all(creating);
    try {
      while (Atomics.load(flag, 0) < 2 * PRODUCERS) await new Promise((r) => setTimeout(r, 1));
      const total = PRODUCERS * COUNT;
      const t0 = performance.now();
      Atomics.or(flag, 0, 1);
      if (collector) {
        for (let got = 0; got < total; got++) {
          if (collector.tryReceive() === undefined) await collector.receive({ timeout: 60_000 });
        }
      } else {
        const left = channels.map(() => COUNT);
        let got = 0;
        for (let k = 0; got < total; k = (k + 1) % PRODUCERS) {
          if (left[k] === 0) continue;
          let took = 0;
          while (left[k]! > 0 && took < 256 && channels[k]!.tryReceive() !== undefined) took++;
          if (took === 0) {
            await channels[k]!.receive({ timeout: 60_000 });
            took = 1;
          }
          left[k]! -= took;
          got += took;
        }
      }
      return total / ((performance.now() - t0) / 1000);
    } finally {
      await collector?.close();
      for (const ch of channels) await ch.close();
      for (const c of children) await reap(c, `${kind} producer`);
      go.unlink();
      go.close();
    }
  };

  const rows: string[][] = [["measure", "value", "unit", "note"]];
  const throughput: ThroughputRow[] = [];
  if (!has("--json")) {
    console.log(`ipckit many-producer benchmark: consumer ${rt.name} ${rt.version} <- ${PRODUCERS} ${peer} producers`);
  }
  const results: Record<string, number> = {};
  for (const kind of ["mpsc", "spsc"] as const) {
    const xs: number[] = [];
    for (let r = 0; r < REPS; r++) xs.push(await run(kind, r));
    const msgs = results[kind] = median(xs);
    const transport = kind === "mpsc" ? `shm many-producer ${PRODUCERS} -> 1` : `shm ${PRODUCERS} x one-producer -> 1`;
    throughput.push({ transport, api: "trySend", pair, size: SIZE, msgsPerSec: msgs, bytesPerSec: msgs * SIZE });
    rows.push([`${transport}, ${SIZE} B`, (msgs / 1e6).toFixed(2), "M msg/s", `median of ${REPS}; ${COUNT} each`]);
  }
  rows.push(["many-producer / 4 channels", (results.mpsc! / results.spsc!).toFixed(2), "x", "same run"]);
  if (has("--json")) console.log(JSON.stringify({ pair, runtimes: { [rt.name]: rt.version }, throughput }));
  else console.log(table(rows));
}
