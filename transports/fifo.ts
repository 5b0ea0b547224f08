/**
 * Named pipes (FIFOs): two FIFOs, one per direction, form a Channel between two processes that agree on a path.
 *
 * `fifo.create(path)` makes `<path>.in` and `<path>.out` (mode 0600) and waits for a peer; `fifo.open(path)` is
 * that peer. The creator reads `<path>.in` and writes `<path>.out`; the opener the other way round. Once both
 * ends are open the creator removes the two names, so a FIFO pair serves exactly one connection and nothing is
 * left in the file system even if a process dies later. If no peer comes, abort with `signal` (the names are
 * removed then too).
 *
 * @example
 * ```ts
 * import { fifo, runtime } from "ipckit";
 * const path = `/tmp/ipckit-demo-${(await runtime()).pid}`;
 * const [server, client] = await Promise.all([fifo.create(path), fifo.open(path, { wait: 5000 })]);
 * await client.send(new Uint8Array([42]));
 * console.log(await server.receive()); // Uint8Array [42]
 * await client.close();
 * await server.close();
 * ```
 *
 * @module
 */
import { Deadline, delay } from "../async/mod.ts";
import { native } from "../ffi/native.ts";
import { errnoError } from "../ffi/errno.ts";
import { runtime } from "../runtimes/detect.ts";
import { prepare, register, unregister } from "../registry.ts";
import { duplex } from "../runtimes/streams.ts";
import type { ByteStream } from "../runtimes/runtime.ts";
import { type Capabilities, type Channel, reliableCapabilities } from "./channel.ts";
import { checkFraming, StreamChannel, type StreamChannelOptions } from "./stream_channel.ts";

/**
 * What a FIFO channel promises.
 *
 * @example
 * ```ts
 * import { fifo } from "ipckit";
 * console.log(fifo.capabilities.reliable); // true
 * ```
 */
export const capabilities: Capabilities = reliableCapabilities(false);

/** Options of {@linkcode create} and {@linkcode open}. */
export interface FifoOptions extends StreamChannelOptions {
  /** Aborts waiting for the peer. */
  signal?: AbortSignal;
  /** Permission bits of the FIFOs (create only); 0o600 by default. */
  mode?: number;
  /**
   * open only: how long to wait, in milliseconds, for the creator to make the FIFOs before `NotFoundError`.
   * 0 (the default) fails at once when they do not exist.
   */
  wait?: number;
}

function checkPath(path: unknown): string {
  if (typeof path !== "string" || path.length === 0 || path.includes("\0")) {
    throw new TypeError(`Cannot use FIFO path ${JSON.stringify(path)}: it must be a non-empty string without NUL`);
  }
  return path;
}

async function openPair(
  readName: string,
  writeName: string,
  sequential: boolean,
  signal: AbortSignal | undefined,
): Promise<ByteStream> {
  const rt = await runtime();
  if (sequential) {
    // The opener opens its write end first: when the creator's write end opens, the opener holds both ends.
    const w = await rt.openFifo(writeName, "write", signal);
    try {
      return duplex(await rt.openFifo(readName, "read", signal), w);
    } catch (e) {
      w.close();
      throw e;
    }
  }
  const [r, w] = await Promise.allSettled([
    rt.openFifo(readName, "read", signal),
    rt.openFifo(writeName, "write", signal),
  ]);
  if (r.status === "fulfilled" && w.status === "fulfilled") return duplex(r.value, w.value);
  if (r.status === "fulfilled") r.value.close();
  if (w.status === "fulfilled") w.value.close();
  throw (r.status === "rejected" ? r.reason : (w as PromiseRejectedResult).reason);
}

/**
 * Creates the FIFO pair at `path` and waits for a peer to `open` it.
 *
 * @returns The Channel, once the peer opened both FIFOs.
 * @throws {AlreadyExistsError} when `<path>.in` or `<path>.out` exists.
 * @throws {NotFoundError} when the directory does not exist.
 *
 * @example
 * ```ts
 * import { fifo, runtime, runtimeArgv } from "ipckit";
 * const rt = await runtime();
 * const [role, path] = rt.args();
 * if (role === "child") {
 *   await using parent = await fifo.open(path!, { wait: 10_000 }); // waits for the FIFOs to appear
 *   await parent.send(new TextEncoder().encode(`hello from ${rt.name}`));
 * } else {
 *   const here = `/tmp/ipckit-fifo-${rt.pid}`;
 *   const child = rt.spawn([...runtimeArgv("bun", rt.fromFileUrl(import.meta.url)), "child", here], {
 *     stdio: "inherit",
 *   });
 *   // Makes here.in and here.out, waits for the child, then removes both names.
 *   await using channel = await fifo.create(here, { signal: AbortSignal.timeout(10_000) });
 *   console.log(new TextDecoder().decode(await channel.receive())); // "hello from bun"
 *   await child.exited;
 * }
 * ```
 */
export async function create(path: string, options: FifoOptions = {}): Promise<Channel> {
  checkFraming(options, `FIFO pair "${path}"`);
  checkPath(path);
  const mode = options.mode ?? 0o600;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new RangeError(`Cannot create FIFO "${path}": mode must be an integer from 0 to 0o777`);
  }
  const ffi = await native();
  const rt = await runtime();
  await prepare();
  const names = [`${path}.in`, `${path}.out`];
  const made: string[] = [];
  try {
    for (const name of names) {
      if (ffi.call.mkfifo(ffi.cstring(name), mode) !== 0) {
        throw errnoError(ffi.errno(), `create FIFO "${name}"`);
      }
      made.push(name);
      register("fifo", name);
    }
    const stream = await openPair(names[0]!, names[1]!, false, options.signal);
    return new StreamChannel(stream, `FIFO pair "${path}"`, capabilities, options);
  } finally {
    for (const name of made) {
      await rt.removeFile(name);
      unregister("fifo", name);
    }
  }
}

/**
 * Opens the FIFO pair a peer created at `path`.
 *
 * @throws {NotFoundError} when there is no FIFO pair at `path`.
 *
 * @example
 * ```ts
 * import { fifo, NotFoundError, runtime } from "ipckit";
 * const path = `/tmp/ipckit-fifo-open-${(await runtime()).pid}`;
 * try {
 *   await fifo.open(path); // wait 0: fails at once when there is no FIFO pair
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true
 * }
 * const [creator, opener] = await Promise.all([fifo.create(path), fifo.open(path, { wait: 5000 })]);
 * await opener.send(new Uint8Array([7]));
 * console.log(await creator.receive()); // Uint8Array [7]
 * await opener.close();
 * await creator.close();
 * ```
 */
export async function open(path: string, options: FifoOptions = {}): Promise<Channel> {
  checkFraming(options, `FIFO pair "${path}"`);
  checkPath(path);
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open FIFO "${path}": wait must be >= 0 milliseconds`);
  if (wait > 0) {
    const rt = await runtime();
    const deadline = Deadline.after(wait);
    while (!(await rt.exists(`${path}.in`)) && !deadline.passed) {
      options.signal?.throwIfAborted();
      await delay(Math.min(5, deadline.remaining), options.signal);
    }
  }
  const stream = await openPair(`${path}.out`, `${path}.in`, true, options.signal);
  return new StreamChannel(stream, `FIFO pair "${path}"`, capabilities, options);
}
