/**
 * Anonymous pipes between a parent and the child it starts, in two forms:
 *
 * - over the child's stdin and stdout: the parent calls `pipe.spawn(argv)`, the child `pipe.stdio()`. The child must
 *   keep stdout for the channel: log to stderr, since anything else written to stdout breaks the framing (the parent
 *   then sees a `ProtocolError`);
 * - over two extra pipes the child inherits as fds 3 (it reads) and 4 (it writes): the parent calls
 *   `pipe.spawn(argv, { over: "fds" })`, the child `pipe.inherited()`. The child keeps its stdin, stdout and stderr.
 *
 * The extra pipes are real `pipe(2)` pairs (`pipe.create()`), made close-on-exec so that no other child inherits
 * them. Each side re-opens its ends through `/proc/self/fd` (the one way Deno can adopt an inherited descriptor) and
 * closes the originals, so that a side's close is the peer's end of stream. Linux only, like `/proc`.
 *
 * @example
 * ```ts
 * import { pipe } from "ipckit";
 * // `cat` copies its stdin to its stdout, frames included: an echo peer in any language.
 * const { channel, child } = await pipe.spawn(["cat"]);
 * await channel.send(new TextEncoder().encode("ping"));
 * console.log(new TextDecoder().decode(await channel.receive())); // "ping"
 * await channel.close(); // cat sees the end of its stdin and exits
 * console.log(await child.exited); // { code: 0, signal: null }
 * ```
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import type { ByteStream, ChildProcess, Runtime } from "../runtimes/runtime.ts";
import { duplex } from "../runtimes/streams.ts";
import { O_CLOEXEC } from "../ffi/constants.ts";
import { errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { UnsupportedError } from "../errors.ts";
import { type Capabilities, type Channel, reliableCapabilities } from "./channel.ts";
import { checkFraming, StreamChannel, type StreamChannelOptions } from "./stream_channel.ts";

/**
 * What a pipe channel promises.
 *
 * @example
 * ```ts
 * import { pipe } from "ipckit";
 * console.log(pipe.capabilities.ordered, pipe.capabilities.crossHost); // true false
 * ```
 */
export const capabilities: Capabilities = reliableCapabilities(false);

/** Options of {@linkcode spawn}. */
export interface PipeSpawnOptions extends StreamChannelOptions {
  /** Working directory of the child. */
  cwd?: string;
  /** Extra environment variables for the child. */
  env?: Record<string, string>;
  /** The child's stderr: inherited by default. */
  stderr?: "inherit" | "pipe" | "null";
  /**
   * Where the channel runs: the child's stdin/stdout (`"stdio"`, the default), or two extra pipes the child
   * inherits as fds 3 and 4 (`"fds"`; the child then calls `pipe.inherited()` and keeps its stdio).
   */
  over?: "stdio" | "fds";
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
 * @param argv The program and its arguments, e.g. `runtimeArgv("deno", "child.ts")`.
 * @throws {TypeError} when argv is empty.
 *
 * @example
 * ```ts
 * import { pipe, runtime, runtimeArgv } from "ipckit";
 * const rt = await runtime();
 * if (rt.args()[0] === "child") {
 *   // The child (here on Bun): its stdin and stdout are the channel; log with console.error.
 *   const parent = await pipe.stdio();
 *   for await (const message of parent) await parent.send(message.reverse());
 *   await parent.close();
 * } else {
 *   const { channel, child } = await pipe.spawn([...runtimeArgv("bun", rt.fromFileUrl(import.meta.url)), "child"]);
 *   await channel.send(new Uint8Array([1, 2, 3]));
 *   console.log(await channel.receive()); // Uint8Array [3, 2, 1]
 *   await channel.close();
 *   console.log((await child.exited).code); // 0
 * }
 * ```
 */
export async function spawn(argv: string[], options: PipeSpawnOptions = {}): Promise<SpawnedChannel> {
  checkFraming(options, "a pipe to a child");
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === "string")) {
    throw new TypeError("Cannot spawn a child: argv must be a non-empty array of strings");
  }
  const over = options.over ?? "stdio";
  if (over !== "stdio" && over !== "fds") {
    throw new TypeError(`Cannot spawn a child: over must be "stdio" or "fds", not ${JSON.stringify(over)}`);
  }
  await ready();
  const spawnOptions = {
    stdio: over === "stdio" ? "pipe" as const : "inherit" as const,
    stderr: options.stderr ?? "inherit",
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    ...(options.env === undefined ? {} : { env: options.env }),
  };
  if (over === "stdio") {
    const child = rt!.spawn(argv, spawnOptions);
    const channel = new StreamChannel(child.stdio!, `pipe to child ${child.pid}`, capabilities, options);
    return { channel, child };
  }
  const toChild = await create();
  const fromChild = await create().catch((e) => {
    toChild.close();
    throw e;
  });
  let child: ChildProcess;
  try {
    child = rt!.spawn(argv, { ...spawnOptions, fds: [toChild.read, fromChild.write] });
  } catch (e) {
    toChild.close();
    fromChild.close();
    throw e;
  }
  const stream = await adopt(fromChild.read, toChild.write, [toChild.read, fromChild.write]);
  return { channel: new StreamChannel(stream, `pipes to child ${child.pid}`, capabilities, options), child };
}

/** An anonymous pipe: bytes written to `write` come out of `read`. */
export interface PipeFds extends Disposable {
  /** The read end's file descriptor. */
  readonly read: number;
  /** The write end's file descriptor. */
  readonly write: number;
  /** Closes both ends that are still open here. Idempotent. */
  close(): void;
}

let ffiCache: Native | undefined;

async function ffi(what: string): Promise<Native> {
  if (ffiCache) return ffiCache;
  try {
    return (ffiCache = await native());
  } catch (e) {
    throw new UnsupportedError(`Cannot ${what}: anonymous pipes need FFI (${(e as Error).message})`, { cause: e });
  }
}

/**
 * Creates an anonymous pipe (`pipe2` with close-on-exec: only a child given the fds explicitly inherits them).
 * `pipe.spawn(argv, { over: "fds" })` uses two of them; use this one directly to hand pipes to programs you start
 * yourself (for instance through `node:child_process`'s `stdio` array).
 *
 * @example
 * ```ts
 * import { pipe } from "ipckit";
 * using fds = await pipe.create(); // closed again at the end of the scope
 * console.log(fds.read !== fds.write); // true: two descriptors, the read end and the write end
 * ```
 */
export async function create(): Promise<PipeFds> {
  const f = await ffi("create a pipe");
  const fds = new Int32Array(2);
  if (f.call.pipe2(fds, O_CLOEXEC) !== 0) throw errnoError(f.errno(), "create a pipe");
  const open = [true, true];
  const close = () => {
    for (const i of [0, 1]) {
      if (open[i]) f.call.close(fds[i]!);
      open[i] = false;
    }
  };
  return { read: fds[0]!, write: fds[1]!, close, [Symbol.dispose]: close };
}

/**
 * Opens fds `read` and `write` of this process as one stream (through `/proc/self/fd`, so every runtime can), then
 * closes them and the `others` (the child's ends, in the parent).
 */
async function adopt(read: number, write: number, others: number[] = []): Promise<ByteStream> {
  const f = await ffi("open inherited pipes");
  const r = await runtime();
  // Check before touching anything: fds 3 and 4 of a process started otherwise may be the runtime's own.
  for (const fd of [read, write]) {
    // /proc/self/fd/N of a pipe is a symlink to "pipe:[inode]".
    const target = new Uint8Array(64);
    const n = f.call.readlink(f.cstring(`/proc/self/fd/${fd}`), target, target.length);
    if (n < 0 || !new TextDecoder().decode(target.subarray(0, n)).startsWith("pipe:")) {
      for (const o of others) f.call.close(o);
      throw new UnsupportedError(
        `Cannot open the inherited pipes: fd ${fd} is ${
          n < 0 ? "not open" : "not a pipe"
        } (start this process with pipe.spawn(argv, { over: "fds" }))`,
      );
    }
  }
  try {
    const w = await r.openFifo(`/proc/self/fd/${write}`, "write");
    try {
      return duplex(await r.openFifo(`/proc/self/fd/${read}`, "read"), w);
    } catch (e) {
      w.close();
      throw e;
    }
  } finally {
    for (const fd of [read, write, ...others]) f.call.close(fd);
  }
}

let inheritedChannel: Channel | undefined;

/**
 * The child's side of `pipe.spawn(argv, { over: "fds" })`: a Channel over the pipes inherited as fds 3 (read) and
 * 4 (write). Returns the same Channel every time.
 *
 * @throws {UnsupportedError} when fds 3 and 4 are not pipes (the process was not started that way); they are left
 * untouched then.
 *
 * @example
 * ```ts
 * import { pipe, runtime, runtimeArgv, typed } from "ipckit";
 * const rt = await runtime();
 * if (rt.args()[0] === "child") {
 *   // The child keeps its stdio: console.log goes to the terminal, the channel runs on fds 3 and 4.
 *   const parent = typed<string>(await pipe.inherited());
 *   console.log(`child on ${rt.name}: got ${await parent.receive()}`);
 *   await parent.send("done");
 *   await parent.close();
 * } else {
 *   const argv = [...runtimeArgv("node", rt.fromFileUrl(import.meta.url)), "child"];
 *   const { channel, child } = await pipe.spawn(argv, { over: "fds" });
 *   const ch = typed<string>(channel);
 *   await ch.send("a job");
 *   console.log(await ch.receive()); // "done"
 *   await ch.close();
 *   await child.exited;
 * }
 * ```
 */
export async function inherited(options: StreamChannelOptions = {}): Promise<Channel> {
  checkFraming(options, "the pipes to the parent");
  if (inheritedChannel) return inheritedChannel;
  const stream = await adopt(3, 4);
  return (inheritedChannel ??= new StreamChannel(stream, "pipes to parent", capabilities, options));
}

let stdioChannel: Channel | undefined;

/**
 * The child's side: a Channel over this process's own stdin and stdout. Returns the same Channel every time.
 *
 * @example
 * ```ts
 * import { json, pipe, runtime, runtimeArgv, typed } from "ipckit";
 * const rt = await runtime();
 * if (rt.args()[0] === "child") {
 *   const parent = typed<number[]>(await pipe.stdio(), json); // stdin/stdout belong to the channel now
 *   console.error("the child logs to stderr"); // stdout would break the framing
 *   const numbers = await parent.receive();
 *   await parent.send([numbers.reduce((a, b) => a + b, 0)]);
 *   await parent.close();
 * } else {
 *   const { channel, child } = await pipe.spawn([...runtimeArgv("deno", rt.fromFileUrl(import.meta.url)), "child"]);
 *   const ch = typed<number[]>(channel, json);
 *   await ch.send([1, 2, 3]);
 *   console.log(await ch.receive()); // [6]
 *   await ch.close();
 *   await child.exited;
 * }
 * ```
 */
export async function stdio(options: StreamChannelOptions = {}): Promise<Channel> {
  checkFraming(options, "the pipe to the parent");
  await ready();
  return (stdioChannel ??= new StreamChannel(rt!.stdio(), "pipe to parent", capabilities, options));
}
