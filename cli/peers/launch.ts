/**
 * The parent's side of `echo.ts`: starts one echo peer on any runtime, connected over all four stream transports
 * (unix, tcp, pipe, fifo) at once, and times ping-pong round trips on the channels. Shared by `bench/roundtrip.ts`
 * and `examples/demo.ts`.
 *
 * @module
 */
import {
  type Channel,
  type ChildProcess,
  fifo,
  pipe,
  runtime,
  runtimeArgv,
  type RuntimeName,
  tcp,
  TimeoutError,
  unix,
} from "../../mod.ts";

/** The transports an echo peer serves. */
export type Transport = "unix" | "tcp" | "pipe" | "fifo";
/** All of them, in table order. */
export const TRANSPORTS: readonly Transport[] = ["unix", "tcp", "pipe", "fifo"];

const rt = await runtime();
/** The project root: children run there so that Deno finds deno.json and node_modules. */
export const ROOT: string = rt.fromFileUrl(new URL("../../", import.meta.url));
const ECHO = rt.fromFileUrl(new URL("./echo.ts", import.meta.url));

/** How long a peer may take to start and connect, in milliseconds. */
export const START_TIMEOUT_MS = 30_000;

/** A running echo peer and its four channels. */
export interface EchoPeer {
  readonly runtime: RuntimeName;
  readonly child: ChildProcess;
  readonly channels: Record<Transport, Channel>;
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
 * Starts `bench/peers/echo.ts` on runtime `peer` and connects to it over unix, tcp, pipe and fifo. Socket and FIFO
 * names go in `dir` (prefixed with `tag`) and are removed once the peer has connected.
 */
export async function startEcho(peer: RuntimeName, dir: string, tag: string): Promise<EchoPeer> {
  const sock = `${dir}/${tag}.sock`;
  const fifoPath = `${dir}/${tag}.fifo`;
  const abort = new AbortController();
  const unixListener = await unix.listen(sock);
  const tcpListener = await tcp.listen({ port: 0 });
  const fifoChannel = fifo.create(fifoPath, { signal: abort.signal });
  fifoChannel.catch(() => {}); // awaited below; this only avoids an unhandled rejection if the spawn fails
  const stopListening = () => Promise.all([unixListener.close(), tcpListener.close()]);
  let spawned: Awaited<ReturnType<typeof pipe.spawn>> | undefined;
  try {
    const argv = [...runtimeArgv(peer), ECHO, "pipe", `unix=${sock}`, `tcp=${tcpListener.port}`, `fifo=${fifoPath}`];
    spawned = await pipe.spawn(argv, { cwd: ROOT });
    const { child, channel } = spawned;
    const accepted = Promise.all([
      unixListener.accept({ signal: abort.signal }),
      tcpListener.accept({ signal: abort.signal }),
      fifoChannel,
    ]);
    const [u, t, f] = await guard(child, accepted, `echo peer on ${peer}`);
    await stopListening(); // stops accepting and removes the socket file; the channels stay open
    const channels: Record<Transport, Channel> = { unix: u, tcp: t, pipe: channel, fifo: f };
    return {
      runtime: peer,
      child,
      channels,
      async close() {
        await Promise.all(TRANSPORTS.map((name) => channels[name].close()));
        await reap(child, `echo peer on ${peer}`);
      },
    };
  } catch (e) {
    abort.abort(e);
    await stopListening();
    await spawned?.channel.close();
    spawned?.child.kill("SIGKILL");
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

/** The median of some numbers (NaN for none). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  if (s.length === 0) return NaN;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Formats rows as a plain-text table; the first row is the header, numbers right-aligned. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ");
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)].join("\n");
}
