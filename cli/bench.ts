/**
 * `ipckit bench`: round trips of an 8-byte message between this process and an echo child of each runtime, over
 * each transport, one table per runtime (medians of individually timed round trips). Progress goes to stderr.
 * A runtime whose child cannot be started is reported and skipped. For the careful comparisons (framed vs raw,
 * alternated repetitions, pinned CPUs) see `bench/` in the repository.
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import { type RuntimeName, RUNTIMES } from "../runtimes/runtime.ts";
import type { Channel } from "../transports/channel.ts";
import { listOf, parse, positive, type Spec } from "./args.ts";
import { columns, progress } from "./format.ts";
import {
  ALL_TRANSPORTS,
  type EchoPeer,
  type EchoTransport,
  median,
  quantile,
  roundTrip,
  sampleRoundTrips,
  startEcho,
  TRANSPORTS,
} from "./peers/launch.ts";

const SPEC: Spec = { runtime: "value", transport: "value", quick: "flag", iterations: "value" };

/** What one runtime's run measured: per transport, the samples in microseconds, or why there are none. */
type Measured = Map<EchoTransport, number[] | Error>;

/** `ipckit bench`. */
export async function bench(args: readonly string[]): Promise<number> {
  const opts = parse(args, SPEC);
  const runtimes = listOf<RuntimeName>(opts, "runtime", RUNTIMES, RUNTIMES);
  const transports = listOf<EchoTransport>(opts, "transport", ALL_TRANSPORTS, ALL_TRANSPORTS);
  const iterations = positive(opts, "iterations", opts.quick ? 200 : 2000);
  const warmup = Math.max(5, Math.min(iterations, Math.round(iterations / 10)));
  const rt = await runtime();
  const bar = progress(rt);
  const total = runtimes.length * transports.length;
  let done = 0;
  let failures = 0;
  console.log(`ipckit bench: parent ${rt.name} ${rt.version} (pid ${rt.pid}), 8-byte ping-pong`);
  console.log(`${iterations} round trips per cell after ${warmup} warm-up; median and p90 in microseconds\n`);
  const dir = await rt.makeTempDir("ipckit-bench-");
  try {
    for (const peer of runtimes) {
      bar.step(`[${done}/${total}] starting a ${peer} child ...`);
      let echo: EchoPeer<EchoTransport>;
      let missing: Error | undefined;
      try {
        ({ echo, missing } = await start(peer, dir, transports));
      } catch (e) {
        bar.clear();
        console.log(`${peer}: could not start a child: ${(e as Error).message}\n`);
        failures++;
        done += transports.length;
        continue;
      }
      const measured: Measured = new Map();
      try {
        for (const transport of transports) {
          bar.step(`[${++done}/${total}] ${peer} ${transport} ...`);
          const channel: Channel | undefined = (echo.channels as Partial<Record<EchoTransport, Channel>>)[transport];
          if (channel === undefined) {
            measured.set(transport, missing ?? new Error("not connected"));
            continue;
          }
          try {
            for (let i = 0; i < warmup; i++) await roundTrip(channel);
            measured.set(transport, await sampleRoundTrips(channel, iterations));
          } catch (e) {
            measured.set(transport, e as Error);
          }
        }
      } finally {
        await echo.close();
      }
      bar.clear();
      console.log(report(peer, echo.child.pid, measured));
      console.log();
    }
  } finally {
    bar.clear();
    await rt.removeDir(dir);
  }
  if (failures === runtimes.length) {
    console.error("ipckit bench: no child could be started");
    return 1;
  }
  return 0;
}

/**
 * Starts the echo child with every transport; if that fails (shm or mq refused by the system, say), once more with
 * the stream transports alone, and says why the others are missing.
 */
async function start(
  peer: RuntimeName,
  dir: string,
  transports: EchoTransport[],
): Promise<{ echo: EchoPeer<EchoTransport>; missing: Error | undefined }> {
  try {
    return { echo: await startEcho(peer, dir, `${peer}-all`, transports), missing: undefined };
  } catch (e) {
    const streams = transports.filter((t) => (TRANSPORTS as readonly string[]).includes(t));
    if (streams.length === transports.length || streams.length === 0) throw e;
    return { echo: await startEcho<EchoTransport>(peer, dir, `${peer}-streams`, streams), missing: e as Error };
  }
}

function report(peer: RuntimeName, pid: number, measured: Measured): string {
  const rows = [["transport", "median us", "p90 us", "round trips/s"]];
  for (const [transport, result] of measured) {
    if (result instanceof Error) {
      rows.push([transport, "n/a", "n/a", result.message.slice(0, 60)]);
      continue;
    }
    const m = median(result);
    rows.push([transport, m.toFixed(1), quantile(result, 0.9).toFixed(1), Math.round(1e6 / m).toLocaleString("en")]);
  }
  return `${peer} child (pid ${pid})\n${columns(rows, new Set([1, 2, 3]))}`;
}
