/**
 * The Deno adapter: `node:` modules where they work as well (sockets, and `node:net` Sockets over the fds of FIFOs
 * and pipes), Deno's own APIs for terminals, signals and the wait for a FIFO's other end.
 * Sockets stay on node:net: Deno.listen/Deno.connect measured slower (pinned 8-byte round trip, framed: Unix 43.0
 * vs 38.9 us, TCP 54.0 vs 49.3 us).
 *
 * @module
 */
import {
  AT_EMPTY_PATH,
  O_CLOEXEC,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  O_WRONLY,
  S_IFIFO,
  S_IFMT,
  STATX_SIZE,
  STATX_WANTED,
  STX_MODE,
} from "../ffi/constants.ts";
import { errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { UnsupportedError } from "../errors.ts";
import { fifoSocketStream, mapNodeError, nodeApi, worker } from "./node_api.ts";
import { duplex, webStream } from "./streams.ts";
import { detachStdout } from "./stdout.ts";
import { type ByteStream, type Runtime, type SignalName, WORKER_LIMITS_UNSUPPORTED } from "./runtime.ts";

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) off += await w.write(chunk.subarray(off));
}

/**
 * FIFOs, and the pipes a child inherits, as `node:net` Sockets over their fds, as on Node: Deno's own files read a
 * pipe on a blocking thread, a thread hop per read. An 8-byte round trip through a Deno echo over stdin and stdout
 * (both processes pinned to one CPU) took 36-39 us with `Deno.stdin` and `Deno.stdout`, 13-15 us with Sockets (a
 * Node echo: 11-14 us).
 *
 * The wait for the other end is Deno.open() (blocking on one of Deno's threads; a Socket over a FIFO nobody writes
 * yet would read its end at once). Such an open cannot be cancelled: to give up, this side opens the other end for a
 * moment, through an `O_PATH` handle on the FIFO (so that it works after the FIFO's name was removed). Once both
 * ends are open, the FIFO is opened again with `O_NONBLOCK` for the Socket, and the first file closed.
 */
async function openFifo(path: string, mode: "read" | "write", signal?: AbortSignal): Promise<ByteStream> {
  signal?.throwIfAborted();
  const ffi = await native();
  const handle = ffi.call.open(ffi.cstring(path), O_PATH | O_CLOEXEC, 0);
  if (handle < 0) throw errnoError(ffi.errno(), `open FIFO "${path}"`);
  try {
    if (!isFifo(ffi, handle)) throw new TypeError(`Cannot open FIFO "${path}": it is not a FIFO`);
    const at = `/proc/self/fd/${handle}`;
    const file = await bothEnds(at, path, mode, signal);
    try {
      const fd = ffi.call.open(ffi.cstring(at), (mode === "read" ? O_RDONLY : O_WRONLY) | O_NONBLOCK | O_CLOEXEC, 0);
      if (fd < 0) throw errnoError(ffi.errno(), `open FIFO "${path}"`);
      return fifoSocketStream(fd, mode);
    } finally {
      file.close();
    }
  } finally {
    ffi.call.close(handle);
  }
}

/**
 * Opens `at`, the FIFO at `path` (blocking on a Deno thread until the other end is open), or gives up when `signal`
 * aborts.
 */
async function bothEnds(
  at: string,
  path: string,
  mode: "read" | "write",
  signal?: AbortSignal,
): Promise<Deno.FsFile> {
  let aborted = false;
  const pending = Deno.open(at, mode === "read" ? { read: true } : { write: true });
  const onAbort = async () => {
    aborted = true;
    try {
      // Opening the other end completes the waiting open (which is then closed below).
      const other = await Deno.open(at, mode === "read" ? { write: true } : { read: true });
      other.close();
    } catch { /* the pending open failed on its own */ }
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  let file: Deno.FsFile;
  try {
    file = await pending;
  } catch (e) {
    throw mapNodeError(e, `Cannot open FIFO "${path}"`);
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (aborted || signal?.aborted) {
    file.close();
    signal?.throwIfAborted();
  }
  return file;
}

/** Whether fd `fd` (of this process) is a pipe or a socket: what a `node:net` Socket can take over. */
function pipeOrSocket(fd: number): boolean {
  try {
    return /^(pipe|socket):/.test(Deno.readLinkSync(`/proc/self/fd/${fd}`));
  } catch {
    return false;
  }
}

/** Whether fd `fd` is a FIFO or a pipe (`statx`: a FIFO's /proc link is its path, not "pipe:"). */
function isFifo(ffi: Native, fd: number): boolean {
  const stx = new Uint8Array(STATX_SIZE);
  if (ffi.call.statx(fd, new Uint8Array(1), AT_EMPTY_PATH, STATX_WANTED, stx) !== 0) return false;
  return (new DataView(stx.buffer).getUint16(STX_MODE, true) & S_IFMT) === S_IFIFO;
}

let stdioStream: ByteStream | undefined;

/**
 * Deno's `node:child_process` tells a child started with extra fds to take them over (`DENO_EXTRA_STDIO_FDS`): a
 * Deno child keeps copies of its fds 3 and 4 then, and reads from them by itself now and then (seen with strace: a
 * copy of fd 3 read on one of its threads, taking a frame of a pool's task off the pipe, and the pool hung). So a
 * command given fds runs through `env -u DENO_EXTRA_STDIO_FDS` (which execs it: the same pid), unless it cannot be
 * found, where it is started as it is for the usual error.
 */
function withoutExtraStdio(argv: string[], fds: number[] | undefined): string[] {
  const file = argv[0];
  if (fds === undefined || fds.length === 0 || file === undefined || !executable(file)) return argv;
  return [ENV, "-u", "DENO_EXTRA_STDIO_FDS", ...argv];
}

const ENV = "/usr/bin/env";

/** Whether `file` (a path, or a name looked up on PATH) is an executable file; false when `env` itself is not. */
function executable(file: string): boolean {
  const runs = (path: string) => {
    try {
      const info = Deno.statSync(path);
      return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
    } catch {
      return false;
    }
  };
  if (!runs(ENV)) return false;
  if (file.includes("/")) return runs(file);
  return (Deno.env.get("PATH") ?? "").split(":").some((dir) => dir !== "" && runs(`${dir}/${file}`));
}

/** The Runtime for Deno. */
export const runtime: Runtime = {
  ...nodeApi,
  name: "deno",
  spawn: (argv, options) => nodeApi.spawn(withoutExtraStdio(argv, options?.fds), options),
  version: Deno.version.deno,
  worker(url, options) {
    if (options?.resourceLimits !== undefined) {
      throw new UnsupportedError(`Cannot limit a worker thread's resources on Deno: ${WORKER_LIMITS_UNSUPPORTED.deno}`);
    }
    return worker(url, options);
  },
  pid: Deno.pid,
  args: () => [...Deno.args],
  env: (name) => Deno.env.get(name),
  exit: (code) => Deno.exit(code),
  onProcessExit: (fn) => globalThis.addEventListener("unload", () => fn(), { once: true }),
  ffiAllowed: () => Deno.permissions.querySync({ name: "ffi" }).state === "granted",
  terminalSize: () => (Deno.stdout.isTerminal() ? Deno.consoleSize() : undefined),
  setRawInput: (on) => {
    if (!Deno.stdin.isTerminal()) throw new Error("Cannot read keys: stdin is not a terminal");
    Deno.stdin.setRaw(on);
  },
  stdio() {
    if (stdioStream) return stdioStream;
    if (pipeOrSocket(0) && pipeOrSocket(1)) {
      const s = duplex(fifoSocketStream(0, "read"), fifoSocketStream(1, "write"));
      return (stdioStream = {
        ...s,
        async end() {
          await s.end();
          await detachStdout();
        },
      });
    }
    return (stdioStream = webStream({
      readable: Deno.stdin.readable,
      write: (c) => writeAll(Deno.stdout, c),
      endWrite: detachStdout,
    }));
  },
  printError: (text) => void Deno.stderr.writeSync(new TextEncoder().encode(text)),
  onSignal(signal: SignalName, fn: () => void): Disposable {
    Deno.addSignalListener(signal as Deno.Signal, fn);
    return { [Symbol.dispose]: () => Deno.removeSignalListener(signal as Deno.Signal, fn) };
  },
  kill: (pid, signal) => Deno.kill(pid, signal as Deno.Signal),
  openFifo,
};
