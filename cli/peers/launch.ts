/**
 * The parent's side of `echo.ts`: starts one echo peer on any runtime, connected over several transports at once
 * (unix, tcp, pipe, fifo by default; shm and mq on request), and times ping-pong round trips on the channels.
 * Shared by `ipckit bench`, `ipckit demo` and the benchmarks in `bench/`.
 *
 * @module
 */
import {
  type Channel,
  type ChildProcess,
  fifo,
  mq,
  pipe,
  runtime,
  type RuntimeName,
  shm,
  tcp,
  TimeoutError,
  unix,
} from "../../mod.ts";
import { packageRoot, runtimeArgv, scriptPath } from "../../runtimes/argv.ts";

/** The stream transports an echo peer serves (what `bench/roundtrip.ts` compares with raw streams). */
export type Transport = "unix" | "tcp" | "pipe" | "fifo";
/** Every transport an echo peer serves. */
export type EchoTransport = Transport | "shm" | "mq";
/** The stream transports, in table order. */
export const TRANSPORTS: readonly Transport[] = ["unix", "tcp", "pipe", "fifo"];
/** Every transport, in table order. */
export const ALL_TRANSPORTS: readonly EchoTransport[] = ["unix", "tcp", "pipe", "fifo", "shm", "mq"];

/** The package root: children run there so that Deno finds deno.json and node_modules. */
export const ROOT: string = packageRoot(import.meta.url);

/** The echo peer's file (`echo.ts`, or `echo.js` in a build). */
export function echoScript(): string {
  return scriptPath(import.meta.url, "./echo.ts");
}

/** How long a peer may take to start and connect, in milliseconds. */
export const START_TIMEOUT_MS = 30_000;

/** A running echo peer and its channels. */
export interface EchoPeer<T extends EchoTransport = Transport> {
  readonly runtime: RuntimeName;
  readonly child: ChildProcess;
  readonly channels: Record<T, Channel>;
  /** Closes every channel and waits for the peer to exit (killing it after a grace period). */
  close(): Promise<void>;
}

/** Rejects when `child` exits before `done` settles, or after `ms`; a stuck start never hangs the parent. */
export function guard<T>(child: ChildProcess, done: Promise<T>, what: string, ms = START_TIMEOUT_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const failed = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`Cannot start ${what}: no connection after ${ms} ms`)), ms);
    child.exited.then((s) => reject(new Error(`Cannot start ${what}: it exited (${s.code ?? s.signal})`)), reject);
  });
  return Promise.race([done, failed]).finally(() => clearTimeout(timer));
}

/** Waits for a child to exit after its parent closed everything; kills it if it does not, and says so. */
export async function reap(child: ChildProcess, what: string, ms = 5000): Promise<void> {
  const rt = await runtime();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((r) => (timer = setTimeout(() => r("late"), ms)));
  const status = await Promise.race([child.exited, late]).catch(() => ({ code: null, signal: "spawn failed" }));
  clearTimeout(timer);
  if (status === "late") {
    rt.printError(`warning: ${what} (pid ${child.pid}) did not exit ${ms} ms after close; killing it\n`);
    child.kill("SIGKILL");
    await child.exited;
  } else if (status.code !== 0) {
    rt.printError(`warning: ${what} (pid ${child.pid}) exited with ${status.code ?? status.signal}\n`);
  }
}

/**
 * Starts `echo.ts` on runtime `peer` and connects to it over `transports` (unix, tcp, pipe and fifo by default).
 * Socket and FIFO names go in `dir` (prefixed with `tag`), shm and mq names are `/ipckit-echo-<pid>-<tag>`; all are
 * removed once the peer has connected.
 */
export async function startEcho<T extends EchoTransport = Transport>(
  peer: RuntimeName,
  dir: string,
  tag: string,
  transports: readonly T[] = TRANSPORTS as readonly T[],
): Promise<EchoPeer<T>> {
  const rt = await runtime();
  const want = new Set<EchoTransport>(transports);
  const sock = `${dir}/${tag}.sock`;
  const fifoPath = `${dir}/${tag}.fifo`;
  const ipcName = `/ipckit-echo-${rt.pid}-${tag}`;
  const abort = new AbortController();
  const opened: Promise<[EchoTransport, Channel]>[] = [];
  const quiet = <V>(p: Promise<V>) => (p.catch(() => {}), p); // awaited below; no unhandled rejection meanwhile
  const unixListener = want.has("unix") ? await unix.listen(sock) : undefined;
  const tcpListener = want.has("tcp") ? await tcp.listen({ port: 0 }) : undefined;
  const stopListening = () => Promise.all([unixListener?.close(), tcpListener?.close()]);
  const args: string[] = [];
  if (unixListener) {
    args.push(`unix=${sock}`);
    opened.push(quiet(unixListener.accept({ signal: abort.signal }).then((c) => ["unix", c])));
  }
  if (tcpListener) {
    args.push(`tcp=${tcpListener.port}`);
    opened.push(quiet(tcpListener.accept({ signal: abort.signal }).then((c) => ["tcp", c])));
  }
  if (want.has("fifo")) {
    args.push(`fifo=${fifoPath}`);
    opened.push(quiet(fifo.create(fifoPath, { signal: abort.signal }).then((c) => ["fifo", c])));
  }
  if (want.has("shm")) {
    args.push(`shm=${ipcName}`);
    opened.push(quiet(shm.create(ipcName, { signal: abort.signal }).then((c) => ["shm", c])));
  }
  if (want.has("mq")) {
    args.push(`mq=${ipcName}`);
    opened.push(quiet(mq.channel(ipcName, { create: true, signal: abort.signal }).then((c) => ["mq", c])));
  }
  if (want.has("pipe")) args.push("pipe");
  let spawned: Awaited<ReturnType<typeof pipe.spawn>> | undefined;
  let child: ChildProcess | undefined;
  try {
    const argv = [...runtimeArgv(peer, echoScript()), ...args];
    if (want.has("pipe")) {
      spawned = await pipe.spawn(argv, { cwd: ROOT });
      child = spawned.child;
    } else {
      child = rt.spawn(argv, { cwd: ROOT, stdio: "null" });
    }
    const pairs = await guard(child, Promise.all(opened), `echo peer on ${peer}`);
    await stopListening(); // stops accepting and removes the socket file; the channels stay open
    const channels = Object.fromEntries(pairs) as Record<EchoTransport, Channel>;
    if (spawned) channels.pipe = spawned.channel;
    const started = child;
    return {
      runtime: peer,
      child: started,
      channels: channels as Record<T, Channel>,
      async close() {
        await Promise.all(Object.values<Channel>(channels).map((c) => c.close()));
        await reap(started, `echo peer on ${peer}`);
      },
    };
  } catch (e) {
    abort.abort(e);
    await stopListening();
    const settled = await Promise.allSettled(opened);
    for (const s of settled) if (s.status === "fulfilled") await s.value[1].close();
    await spawned?.channel.close();
    child?.kill("SIGKILL");
    throw e;
  }
}

/** One 8-byte message, sent over and over. */
const PING = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);

/** One ping-pong over `channel`: sends 8 bytes, waits for them to come back. */
export async function roundTrip(channel: Channel): Promise<void> {
  await channel.send(PING);
  const pong = await channel.receive();
  if (pong.byteLength !== PING.byteLength) throw new Error(`Echo returned ${pong.byteLength} bytes, expected 8`);
}

/** Mean time of one round trip over `n` ping-pongs, in microseconds. */
export async function timeRoundTrips(channel: Channel, n: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await roundTrip(channel);
  return ((performance.now() - t0) * 1000) / n;
}

/** Each of `n` round trips timed on its own, in microseconds. */
export async function sampleRoundTrips(channel: Channel, n: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await roundTrip(channel);
    times.push((performance.now() - t0) * 1000);
  }
  return times;
}

/** The median of some numbers (NaN for none). */
export function median(xs: readonly number[]): number {
  return quantile(xs, 0.5);
}

/** The `q` quantile (0..1) of some numbers, interpolated between neighbours (NaN for none). */
export function quantile(xs: readonly number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo]! + (s[Math.min(lo + 1, s.length - 1)]! - s[lo]!) * (at - lo);
}

/** Formats rows as a plain-text table; the first row is the header, columns after the first right-aligned. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ").trimEnd();
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}
