/**
 * Round-trip latency of ipckit's stream transports, next to the raw mechanism underneath, in the same run.
 *
 * A ping-pong of one 8-byte message between this process (the parent) and a child on a chosen runtime:
 * - framed: ipckit channels (unix, tcp, pipe, fifo) to `cli/peers/echo.ts`;
 * - raw: the Runtime adapter's ByteStreams without framing (Unix socket, TCP socket, the child's stdio, and two
 *   FIFOs made with the `mkfifo` command) to `bench/peers/raw_echo.ts`, which writes each chunk straight back.
 *
 * After a warm-up, each repetition times `--iterations` round trips; framed and raw repetitions alternate (which
 * goes first alternates too), and the table shows the median over repetitions of the mean round trip, in
 * microseconds, and the median of the per-repetition framed/raw ratios. Figures, not pass/fail.
 * On a 2-vCPU VM, unpinned figures include a cross-CPU wake-up (see PERF.md); prefix `taskset -c 0` to pin.
 *
 *   node --import tsx bench/roundtrip.ts [--runtime deno|bun|node] [--iterations N] [--reps N]
 *   npx bun bench/roundtrip.ts --runtime deno
 *   npx deno run -A bench/roundtrip.ts --iterations 1000 --reps 3
 *
 * @module
 */
import { type ByteStream, runtime, runtimeArgv, type RuntimeName } from "../mod.ts";
import {
  guard,
  median,
  reap,
  ROOT,
  roundTrip,
  startEcho,
  table,
  timeRoundTrips,
  type Transport,
  TRANSPORTS,
} from "../cli/peers/launch.ts";

const rt = await runtime();

// ---- options

function usage(problem: string): never {
  rt.printError(`${problem}\nusage: roundtrip.ts [--runtime deno|bun|node] [--iterations N] [--reps N]\n`);
  return rt.exit(2);
}

function parseArgs(args: string[]): { peer: RuntimeName; iterations: number; reps: number } {
  const opts = { peer: rt.name as RuntimeName, iterations: 3000, reps: 5 };
  for (let i = 0; i < args.length; i++) {
    const [flag, inline] = args[i]!.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? args[++i] ?? usage(`${flag} needs a value`);
    const count = () => {
      const n = Number(value());
      return Number.isInteger(n) && n > 0 ? n : usage(`${flag} must be a positive integer`);
    };
    if (flag === "--runtime") {
      const v = value();
      opts.peer = v === "deno" || v === "bun" || v === "node" ? v : usage(`unknown runtime "${v}"`);
    } else if (flag === "--iterations") opts.iterations = count();
    else if (flag === "--reps") opts.reps = count();
    else usage(`unknown argument "${args[i]}"`);
  }
  return opts;
}

// ---- raw ping-pong over ByteStreams

interface RawLink {
  /** Mean round trip over `n` ping-pongs, in microseconds. */
  time(n: number): Promise<number>;
  /** Ends our side and waits (briefly) for the peer's end. */
  close(): Promise<void>;
}

function rawLink(input: ByteStream, output: ByteStream): RawLink {
  const ping = new Uint8Array(8);
  let received = 0;
  let expected = 0;
  let wake: (() => void) | undefined;
  let failure: Error | undefined;
  let ended!: () => void;
  const end = new Promise<void>((r) => (ended = r));
  input.start({
    data(chunk) {
      received += chunk.byteLength;
      if (wake !== undefined && received >= expected) {
        const w = wake;
        wake = undefined;
        w();
      }
    },
    end(error) {
      failure = error ?? new Error("Cannot ping: the raw peer closed the stream");
      wake?.();
      ended();
    },
  });
  return {
    async time(n) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        expected += ping.byteLength;
        const full = output.write(ping);
        if (full !== undefined) await full;
        if (received < expected) await new Promise<void>((r) => (wake = r));
        if (failure !== undefined) throw failure;
      }
      return ((performance.now() - t0) * 1000) / n;
    },
    async close() {
      await output.end().catch(() => {});
      await Promise.race([end, new Promise((r) => setTimeout(r, 2000))]);
      output.close();
      input.close();
    },
  };
}

/** Starts `raw_echo.ts` on `peer` and links to it over a raw Unix socket, TCP socket, its stdio and two FIFOs. */
async function startRawEcho(peer: RuntimeName, dir: string) {
  const sock = `${dir}/raw.sock`;
  const fifo = `${dir}/raw.fifo`;
  const mkfifo = rt.spawn(["mkfifo", "-m", "600", `${fifo}.in`, `${fifo}.out`], { stdio: "null" });
  if ((await mkfifo.exited).code !== 0) throw new Error(`Cannot create FIFOs at "${fifo}": mkfifo failed`);

  const accepted = (listen: (on: (s: ByteStream) => void) => ReturnType<typeof rt.listenUnix>) => {
    let take!: (s: ByteStream) => void;
    const stream = new Promise<ByteStream>((r) => (take = r));
    return listen((s) => take(s)).then((server) => ({ server, stream }));
  };
  const u = await accepted((on) => rt.listenUnix(sock, on));
  const t = await accepted((on) => rt.listenTcp({ port: 0, hostname: "127.0.0.1" }, on));
  const abort = new AbortController();
  const fifoEnds = Promise.all([
    rt.openFifo(`${fifo}.in`, "read", abort.signal),
    rt.openFifo(`${fifo}.out`, "write", abort.signal),
  ]);
  fifoEnds.catch(() => {}); // awaited below
  const argv = runtimeArgv(peer, rt.fromFileUrl(new URL("./peers/raw_echo.ts", import.meta.url)));
  const child = rt.spawn([...argv, "stdio", `unix=${sock}`, `tcp=${t.server.port}`, `fifo=${fifo}`], {
    cwd: ROOT,
    stdio: "pipe",
  });
  // Server.close() resolves only once its connections ended: start it now, await it after closing the links.
  const stopListening = () => Promise.all([u.server.close(), t.server.close()]);
  try {
    const [us, ts, [fr, fw]] = await guard(child, Promise.all([u.stream, t.stream, fifoEnds]), `raw peer on ${peer}`);
    const stopped = stopListening();
    const links: Record<Transport, RawLink> = {
      unix: rawLink(us, us),
      tcp: rawLink(ts, ts),
      pipe: rawLink(child.stdio!, child.stdio!),
      fifo: rawLink(fr, fw),
    };
    return {
      links,
      async close() {
        await Promise.all(TRANSPORTS.map((name) => links[name].close()));
        await reap(child, `raw echo peer on ${peer}`);
        await stopped;
      },
    };
  } catch (e) {
    abort.abort(e);
    child.kill("SIGKILL");
    void stopListening().catch(() => {});
    throw e;
  }
}

// ---- main

const { peer, iterations, reps } = parseArgs(rt.args());
const warmup = Math.min(iterations, 1000);
const dir = await rt.makeTempDir("ipckit-bench-");
// On Ctrl-C, still remove the temp dir; the peers exit by themselves when our ends close.
const interrupted = (["SIGINT", "SIGTERM"] as const).map((sig) =>
  rt.onSignal(sig, () => void rt.removeDir(dir).finally(() => rt.exit(130)))
);
const us = (x: number) => x.toFixed(1);
try {
  console.log(`ipckit round-trip latency: parent ${rt.name} ${rt.version} <-> child ${peer}, 8-byte ping-pong`);
  console.log(
    `${iterations} round trips x ${reps} reps after a warm-up (${warmup} and 0.5 s); medians of per-rep means`,
  );
  console.log("ratio = median over reps of framed/raw measured back to back");
  const framedPeer = await startEcho(peer, dir, "framed");
  const rawPeer = await startRawEcho(peer, dir).catch(async (e) => {
    await framedPeer.close();
    throw e;
  });
  const rows = [["transport", "framed median us", "raw median us", "ratio"]];
  try {
    for (const name of TRANSPORTS) {
      const channel = framedPeer.channels[name];
      const raw = rawPeer.links[name];
      // At least `warmup` round trips and half a second each: Bun's JIT takes longer than 1000 round trips to settle
      // (the transport measured first ran 1.9-2.1x its raw round trip, the same one measured again 1.16x).
      for (let i = 0, until = performance.now() + 500; i < warmup || performance.now() < until; i++) {
        await roundTrip(channel);
      }
      for (const until = performance.now() + 500; performance.now() < until;) await raw.time(100);
      await raw.time(warmup);
      const framed: number[] = [];
      const bare: number[] = [];
      const ratios: number[] = [];
      for (let r = 0; r < reps; r++) {
        // Alternate which goes first, and compare neighbours in time: machine noise drifts slowly.
        if (r % 2 === 0) {
          framed.push(await timeRoundTrips(channel, iterations));
          bare.push(await raw.time(iterations));
        } else {
          bare.push(await raw.time(iterations));
          framed.push(await timeRoundTrips(channel, iterations));
        }
        ratios.push(framed[r]! / bare[r]!);
      }
      rows.push([name, us(median(framed)), us(median(bare)), `${median(ratios).toFixed(2)}x`]);
    }
  } finally {
    await Promise.all([framedPeer.close(), rawPeer.close()]);
  }
  console.log();
  console.log(table(rows));
  console.log("\nraw = runtime adapter ByteStream, no framing; fifo raw uses FIFOs made by mkfifo(1)");
} finally {
  for (const handler of interrupted) handler[Symbol.dispose]();
  await rt.removeDir(dir);
}
