/**
 * `ipckit demo` (and `npm start`): this process starts one child on each runtime (Deno, Bun, Node) at once, talks to
 * each over five transports (Unix socket, TCP, the child's stdin/stdout pipe, a FIFO pair, a shared-memory ring),
 * and prints the median round trip of an 8-byte message per runtime and transport. The child is
 * `cli/peers/echo.ts`, which echoes every message back.
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import { type RuntimeName, RUNTIMES } from "../runtimes/runtime.ts";
import { parse, positive, type Spec } from "./args.ts";
import { columns } from "./format.ts";
import { type EchoPeer, type EchoTransport, median, roundTrip, sampleRoundTrips, startEcho } from "./peers/launch.ts";

const SPEC: Spec = { iterations: "value" };
const SHOWN: readonly EchoTransport[] = ["unix", "tcp", "pipe", "fifo", "shm"];

/** `ipckit demo`. */
export async function demo(args: readonly string[]): Promise<number> {
  const opts = parse(args, SPEC);
  const iterations = positive(opts, "iterations", 200);
  const warmup = Math.min(50, iterations);
  const rt = await runtime();
  console.log(`ipckit demo: one process talking to Deno, Bun and Node children over ${SHOWN.length} transports`);
  console.log(`parent: ${rt.name} ${rt.version}, pid ${rt.pid}`);
  console.log(`each cell: median of ${iterations} round trips of an 8-byte message (after ${warmup} warm-up), in us\n`);
  const dir = await rt.makeTempDir("ipckit-demo-");
  const peers = new Map<RuntimeName, EchoPeer<EchoTransport>>();
  try {
    // Start all three children at once: their start-up dominates the demo's run time.
    const started = await Promise.allSettled(RUNTIMES.map((name) => startEcho(name, dir, name, SHOWN)));
    for (const [i, result] of started.entries()) {
      if (result.status === "fulfilled") peers.set(RUNTIMES[i]!, result.value);
      else rt.printError(`could not start a ${RUNTIMES[i]} child: ${(result.reason as Error)?.message}\n`);
    }
    const rows = [["child", ...SHOWN.map((t) => `${t} us`)]];
    for (const name of RUNTIMES) {
      const peer = peers.get(name);
      if (peer === undefined) {
        rows.push([name, ...SHOWN.map(() => "n/a")]);
        continue;
      }
      const cells: string[] = [];
      for (const transport of SHOWN) {
        const channel = peer.channels[transport];
        for (let n = 0; n < warmup; n++) await roundTrip(channel);
        cells.push(median(await sampleRoundTrips(channel, iterations)).toFixed(1));
      }
      rows.push([`${name} (pid ${peer.child.pid})`, ...cells]);
    }
    console.log(columns(rows, new Set(SHOWN.map((_, i) => i + 1))));
    console.log(`\nunix = Unix domain socket, tcp = 127.0.0.1, pipe = child's stdin/stdout, fifo = two named pipes,`);
    console.log(`shm = a ring buffer in a shared memory segment; the stream ones carry length-prefixed frames`);
    console.log(`(see transports/framing.ts). \`ipckit bench\` measures more, one runtime at a time.`);
  } finally {
    await Promise.all([...peers.values()].map((p) => p.close()));
    await rt.removeDir(dir);
  }
  return peers.size > 0 ? 0 : 1;
}
