/**
 * Which socket API is faster on this runtime: node:net or the runtime's own (Bun.listen/connect)? Round trip of one 8-byte message to a child of the same runtime using the same API, raw (bytes echoed
 * as they come) and framed (an ipckit StreamChannel over the same kind of stream), over Unix and TCP sockets.
 * Alternates the APIs, repeats, prints medians. Run under bun (deno and node measure node:net alone):
 *
 *   taskset -c 0 npx bun bench/socket_api.ts [--iterations 3000] [--reps 7]
 *
 * @module
 */
import { type ByteStream, runtime, runtimeArgv, runtimeName } from "../mod.ts";
import { StreamChannel } from "../transports/stream_channel.ts";
import { capabilities } from "../transports/unix.ts";
import { median, table } from "../cli/peers/launch.ts";
import { type SocketApi, socketApi } from "./peers/socket_apis.ts";

const rt = await runtime();
const args = rt.args();
const opt = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const ITER = opt("--iterations", 3000);
const REPS = opt("--reps", 7);
const PING = new Uint8Array(8).fill(7);
const ROOT = rt.fromFileUrl(new URL("../", import.meta.url));

interface Conns {
  rawUnix: ByteStream;
  rawTcp: ByteStream;
  chUnix: StreamChannel;
  chTcp: StreamChannel;
  close(): Promise<void>;
}

async function connect(which: "node" | "native", api: SocketApi, dir: string): Promise<Conns> {
  const unixConns: ByteStream[] = [];
  const tcpConns: ByteStream[] = [];
  let got!: () => void;
  const all = new Promise<void>((r) => (got = r));
  const on = (list: ByteStream[]) => (s: ByteStream) => {
    list.push(s);
    if (unixConns.length + tcpConns.length === 4) got();
  };
  const path = `${dir}/${which}.sock`;
  const us = await api.listenUnix(path, on(unixConns));
  const ts = await api.listenTcp({ port: 0, hostname: "127.0.0.1" }, on(tcpConns));
  const t = [`unix=${path}`, `unix=${path}`, `tcp=${ts.port}`, `tcp=${ts.port}`];
  const child = rt.spawn([...runtimeArgv(runtimeName()), `${ROOT}bench/peers/api_echo.ts`, which, ...t], {
    cwd: ROOT,
    stdio: "null",
  });
  await all;
  await us.close();
  await ts.close();
  await rt.removeFile(path);
  const [a, b] = unixConns as [ByteStream, ByteStream];
  const [c, d] = tcpConns as [ByteStream, ByteStream];
  const chUnix = new StreamChannel(b, "bench unix", capabilities);
  const chTcp = new StreamChannel(d, "bench tcp", capabilities);
  return {
    rawUnix: a,
    rawTcp: c,
    chUnix,
    chTcp,
    async close() {
      await Promise.all([chUnix.close(), chTcp.close()]);
      for (const s of [a, c]) await s.end();
      await child.exited;
    },
  };
}

function rawPinger(s: ByteStream): () => Promise<number> {
  let want = 0;
  let wake: (() => void) | undefined;
  s.start({
    data(c) {
      want -= c.byteLength;
      if (want <= 0) wake?.();
    },
    end() {},
  });
  return async () => {
    const t0 = performance.now();
    for (let i = 0; i < ITER; i++) {
      want = PING.byteLength;
      const p = new Promise<void>((r) => (wake = r));
      s.write(PING.slice());
      await p;
    }
    return ((performance.now() - t0) * 1000) / ITER;
  };
}

function framedPinger(ch: StreamChannel): () => Promise<number> {
  return async () => {
    const t0 = performance.now();
    for (let i = 0; i < ITER; i++) {
      await ch.send(PING);
      await ch.receive();
    }
    return ((performance.now() - t0) * 1000) / ITER;
  };
}

const dir = await rt.makeTempDir("ipckit-bench-");
try {
  const apis = runtimeName() === "bun" ? (["node", "native"] as const) : (["node"] as const);
  const results: Record<string, number[]> = {};
  const pingers: Record<string, () => Promise<number>> = {};
  const conns: Conns[] = [];
  for (const which of apis) {
    const c = await connect(which, await socketApi(which), dir);
    conns.push(c);
    pingers[`${which} unix raw`] = rawPinger(c.rawUnix);
    pingers[`${which} unix framed`] = framedPinger(c.chUnix);
    pingers[`${which} tcp raw`] = rawPinger(c.rawTcp);
    pingers[`${which} tcp framed`] = framedPinger(c.chTcp);
  }
  for (const p of Object.values(pingers)) await p(); // warm-up
  for (let r = 0; r < REPS; r++) {
    for (const [k, p] of Object.entries(pingers)) (results[k] ??= []).push(await p());
  }
  const rows = [["api / socket / mode", "median us", "min us"]];
  for (const [k, xs] of Object.entries(results)) {
    rows.push([k, median(xs).toFixed(1), Math.min(...xs).toFixed(1)]);
  }
  console.log(`${rt.name} ${rt.version}: round trip of 8 bytes to a child of the same runtime, ${ITER} x ${REPS}`);
  console.log(table(rows));
  for (const c of conns) await c.close();
} finally {
  await rt.removeDir(dir);
}
