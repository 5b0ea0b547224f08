/**
 * Anonymous pipes: a Channel over a child process's stdin and stdout. The parent calls `pipe.spawn(argv)`; the
 * child calls `pipe.stdio()`. The child must keep stdout for the channel: log to stderr (`console.error`), since
 * anything else written to stdout breaks the framing (the parent then sees a `ProtocolError`).
 *
 * @example
 * ```ts
 * import { pipe, runtimeArgv } from "ipckit";
 * const { channel, child } = await pipe.spawn([...runtimeArgv("bun"), "./echo_child.ts"]);
 * await channel.send(new TextEncoder().encode("ping"));
 * console.log(await channel.receive());
 * await channel.close();
 * await child.exited;
 * ```
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import type { ChildProcess, Runtime } from "../runtimes/runtime.ts";
import type { Capabilities, Channel, ChannelOptions } from "./channel.ts";
import { MAX_FRAME } from "./framing.ts";
import { StreamChannel } from "./stream_channel.ts";

/** What a pipe channel promises. */
export const capabilities: Capabilities = {
  ordered: true,
  reliable: true,
  maxMessage: MAX_FRAME,
  crossHost: false,
  datagram: false,
};

/** Options of {@linkcode spawn}. */
export interface PipeSpawnOptions extends ChannelOptions {
  /** Working directory of the child. */
  cwd?: string;
  /** Extra environment variables for the child. */
  env?: Record<string, string>;
  /** The child's stderr: inherited by default. */
  stderr?: "inherit" | "pipe" | "null";
}

/** What {@linkcode spawn} returns. */
export interface SpawnedChannel {
  /** The channel to the child. */
  channel: Channel;
  /** The child process (pid, exited, kill). */
  child: ChildProcess;
}

let rt: Runtime | undefined;

/** Loads the runtime adapter; `spawn` is synchronous, so the adapter must be loaded first. */
async function ready(): Promise<void> {
  rt ??= await runtime();
}

/**
 * Starts `argv` as a child process and returns a Channel over its stdin/stdout.
 *
 * @param argv The program and its arguments, e.g. `[...runtimeArgv("deno"), "child.ts"]`.
 * @throws {TypeError} when argv is empty.
 */
export async function spawn(argv: string[], options: PipeSpawnOptions = {}): Promise<SpawnedChannel> {
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new TypeError("Cannot spawn a child: argv must be a non-empty array of strings");
  }
  await ready();
  const spawnOptions = {
    stdio: "pipe" as const,
    stderr: options.stderr ?? "inherit",
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
  };
  const child = rt!.spawn(argv, spawnOptions);
  const channel = new StreamChannel(child.stdio!, `pipe to child ${child.pid}`, capabilities, options);
  return { channel, child };
}

let stdioChannel: Channel | undefined;

/**
 * The child's side: a Channel over this process's own stdin and stdout. Returns the same Channel every time.
 */
export async function stdio(options: ChannelOptions = {}): Promise<Channel> {
  await ready();
  return (stdioChannel ??= new StreamChannel(rt!.stdio(), "pipe to parent", capabilities, options));
}
