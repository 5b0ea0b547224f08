/**
 * The `npm start` demo: this process starts one child on each runtime (Deno, Bun, Node), talks to each over four
 * transports (Unix socket, TCP, the child's stdin/stdout pipe, a FIFO pair), and prints the median round-trip
 * latency of an 8-byte message per runtime and transport. The child is `bench/peers/echo.ts`, which echoes every
 * message back. For the framed-vs-raw comparison, see `bench/roundtrip.ts`.
 *
 *   npm start                         (node --import tsx examples/demo.ts)
 *   npx bun examples/demo.ts
 *   npx deno run -A examples/demo.ts
 *
 * @module
 */
import { runtime, type RuntimeName } from "../mod.ts";
import { type EchoPeer, median, roundTrip, startEcho, table, TRANSPORTS } from "../bench/peers/launch.ts";

const RUNTIMES: readonly RuntimeName[] = ["deno", "bun", "node"];
const WARMUP = 50;
const ROUND_TRIPS = 200;

const rt = await runtime();
console.log(`ipckit demo: one process talking to Deno, Bun and Node children over four transports`);
console.log(`parent: ${rt.name} ${rt.version}, pid ${rt.pid}`);
console.log(`each cell: median of ${ROUND_TRIPS} round trips of an 8-byte message (after ${WARMUP} warm-up), in us\n`);

const dir = await rt.makeTempDir("ipckit-demo-");
const peers = new Map<RuntimeName, EchoPeer>();
try {
  // Start all three children at once: their start-up dominates the demo's run time.
  const started = await Promise.allSettled(RUNTIMES.map((name) => startEcho(name, dir, name)));
  for (const [i, result] of started.entries()) {
    if (result.status === "fulfilled") peers.set(RUNTIMES[i]!, result.value);
    else rt.printError(`could not start a ${RUNTIMES[i]} child: ${(result.reason as Error)?.message}\n`);
  }
  const rows = [["child", ...TRANSPORTS.map((t) => `${t} us`)]];
  for (const name of RUNTIMES) {
    const peer = peers.get(name);
    if (peer === undefined) {
      rows.push([name, ...TRANSPORTS.map(() => "n/a")]);
      continue;
    }
    const cells: string[] = [];
    for (const transport of TRANSPORTS) {
      const channel = peer.channels[transport];
      for (let n = 0; n < WARMUP; n++) await roundTrip(channel);
      const times: number[] = [];
      for (let n = 0; n < ROUND_TRIPS; n++) {
        const t0 = performance.now();
        await roundTrip(channel);
        times.push((performance.now() - t0) * 1000);
      }
      cells.push(median(times).toFixed(1));
    }
    rows.push([`${name} (pid ${peer.child.pid})`, ...cells]);
  }
  console.log(table(rows));
  console.log(`\nunix = Unix domain socket, tcp = 127.0.0.1, pipe = child's stdin/stdout, fifo = two named pipes`);
  console.log(`all four carry the same length-prefixed frames (see transports/framing.ts)`);
} finally {
  await Promise.all([...peers.values()].map((p) => p.close()));
  await rt.removeDir(dir);
}
