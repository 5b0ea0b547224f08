/**
 * Round trip of one 8-byte message over the POSIX message queue channel (`mq.channel`), next to ipckit's Unix
 * socket channel, in the same run: a ping-pong between this process and an echo child on `--runtime`. Each
 * repetition times `--iterations` round trips per transport (alternating which goes first); the table shows the
 * median over repetitions of the mean round trip, in microseconds. Figures, not pass/fail.
 *
 *   node --import tsx bench/mq.ts [--runtime deno|bun|node] [--iterations N] [--reps N]
 *   npx deno run -A bench/mq.ts --runtime bun
 *
 * The child side is this same file: `bench/mq.ts peer <name>` echoes over the mq channel until it ends.
 *
 * @module
 */
import { mq, runtime, runtimeArgv, type RuntimeName } from "../mod.ts";
import { guard, median, reap, ROOT, roundTrip, startEcho, table, timeRoundTrips } from "../cli/peers/launch.ts";
import { flags } from "./args.ts";

const rt = await runtime();
const args = rt.args();

if (args[0] === "peer") {
  const channel = await mq.channel(args[1]!, { wait: 30_000 });
  for await (const m of channel) await channel.send(m);
  await channel.close();
} else {
  const { opt } = flags(args);
  const peer = opt("--runtime", rt.name) as RuntimeName;
  const iterations = Number(opt("--iterations", "2000"));
  const reps = Number(opt("--reps", "5"));

  const name = `/ipckit-bench-mq-${rt.pid}`;
  const ac = new AbortController();
  const pending = mq.channel(name, { create: true, signal: ac.signal });
  const child = rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(import.meta.url)), "peer", name], {
    cwd: ROOT,
    stdio: "null",
  });
  const mqChannel = await guard(child, pending, `mq echo peer on ${peer}`).catch((e) => {
    ac.abort();
    child.kill("SIGKILL");
    throw e;
  });
  const dir = await rt.makeTempDir("ipckit-bench-");
  const echo = await startEcho(peer, dir, "mq");
  try {
    const channels = { mq: mqChannel, unix: echo.channels.unix };
    const order = ["mq", "unix"] as const;
    for (const c of order) for (let i = 0; i < 200; i++) await roundTrip(channels[c]); // warm-up
    const times: Record<string, number[]> = { mq: [], unix: [] };
    for (let r = 0; r < reps; r++) {
      const turn = r % 2 === 0 ? order : [...order].reverse();
      for (const c of turn) times[c]!.push(await timeRoundTrips(channels[c], iterations));
    }
    const mqUs = median(times.mq!);
    const unixUs = median(times.unix!);
    console.log(`8-byte round trip, ${rt.name} parent -> ${peer} child, median of ${reps} x ${iterations}:\n`);
    console.log(table([
      ["transport", "round trip (us)", "vs unix"],
      ["mq channel", mqUs.toFixed(1), (mqUs / unixUs).toFixed(2)],
      ["unix socket channel", unixUs.toFixed(1), "1.00"],
    ]));
  } finally {
    await mqChannel.close();
    await reap(child, `mq echo peer on ${peer}`);
    await echo.close();
    await rt.removeDir(dir);
  }
}
