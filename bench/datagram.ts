/**
 * Round trip of one 8-byte message over the message transports that are not byte streams: UDP and Unix datagram
 * channels and the durable file queue channel, next to ipckit's Unix stream socket channel, in the same run: a
 * ping-pong between this process and an echo child on `--runtime`. Each repetition times `--iterations` round trips
 * per transport (the order rotates); the table shows the median over repetitions of the mean round trip, in
 * microseconds, and the ratio to the Unix stream socket. Figures, not pass/fail.
 *
 *   node --import tsx bench/datagram.ts [--runtime deno|bun|node] [--iterations N] [--reps N]
 *   npx deno run -A bench/datagram.ts --runtime bun
 *
 * The child side is this same file: `bench/datagram.ts peer <kind> <address>` echoes until an empty message
 * (datagram channels have no end of stream) or until the channel ends.
 *
 * @module
 */
import { type Channel, fileQueue, runtime, runtimeArgv, type RuntimeName, udp, unixDgram } from "../mod.ts";
import { guard, median, reap, ROOT, roundTrip, startEcho, table, timeRoundTrips } from "../cli/peers/launch.ts";
import { flags } from "./args.ts";

const rt = await runtime();
const args = rt.args();
const HELLO = new Uint8Array([1, 2, 3]);

if (args[0] === "peer") {
  const [kind, address] = [args[1]!, args[2]!];
  let channel: Channel;
  if (kind === "udp") channel = await udp.connect({ port: Number(address) });
  else if (kind === "unix_dgram") channel = await unixDgram.connect(address);
  else channel = await fileQueue.channel(address, { wait: 30_000 });
  if (kind !== "file_queue") await channel.send(HELLO);
  for await (const m of channel) {
    if (m.byteLength === 0) break;
    await channel.send(m);
  }
  await channel.close();
} else {
  const { opt } = flags(args);
  const peer = opt("--runtime", rt.name) as RuntimeName;
  const iterations = Number(opt("--iterations", "2000"));
  const reps = Number(opt("--reps", "5"));
  const dir = await rt.makeTempDir("ipckit-bench-");
  const spawn = (kind: string, address: string) =>
    rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(import.meta.url)), "peer", kind, address], {
      cwd: ROOT,
      stdio: "null",
    });
  const children = [];
  const channels: Record<string, Channel> = {};
  try {
    const u = await udp.bind();
    const uChild = spawn("udp", String(u.address.port));
    children.push(uChild);
    channels.udp = await u.connect((await guard(uChild, u.receive(), "udp peer")).from);

    const d = await unixDgram.bind(`${dir}/dgram`);
    const dChild = spawn("unix_dgram", d.address);
    children.push(dChild);
    channels["unix dgram"] = await d.connect((await guard(dChild, d.receive(), "unix_dgram peer")).from);

    const pending = fileQueue.channel(`${dir}/fq`, { create: true });
    const fChild = spawn("file_queue", `${dir}/fq`);
    children.push(fChild);
    channels["file queue"] = await guard(fChild, pending, "file queue peer");

    const echo = await startEcho(peer, dir, "unix");
    channels["unix stream"] = echo.channels.unix!;
    try {
      const order = Object.keys(channels);
      for (const c of order) for (let i = 0; i < 200; i++) await roundTrip(channels[c]!); // warm-up
      const times: Record<string, number[]> = Object.fromEntries(order.map((c) => [c, []]));
      for (let r = 0; r < reps; r++) {
        const turn = [...order.slice(r % order.length), ...order.slice(0, r % order.length)];
        for (const c of turn) times[c]!.push(await timeRoundTrips(channels[c]!, iterations));
      }
      const base = median(times["unix stream"]!);
      console.log(`8-byte round trip, ${rt.name} parent -> ${peer} child, median of ${reps} x ${iterations}:\n`);
      console.log(table([
        ["transport", "round trip (us)", "vs unix stream"],
        ...order.map((c) => {
          const us = median(times[c]!);
          return [c, us.toFixed(1), (us / base).toFixed(2)];
        }),
      ]));
    } finally {
      await echo.close();
    }
  } finally {
    for (const c of Object.values(channels)) {
      await c.send(new Uint8Array(0)).catch(() => {}); // the peer's cue to leave
      await c.close();
    }
    for (const child of children) await reap(child, "datagram bench peer");
    await rt.removeDir(dir);
  }
}
