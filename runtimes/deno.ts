/**
 * The Deno adapter: `node:` modules where they work as well, Deno's own APIs for stdio, FIFOs and signals.
 * Sockets stay on node:net: Deno.listen/Deno.connect measured slower (pinned 8-byte round trip, framed: Unix 43.0
 * vs 38.9 us, TCP 54.0 vs 49.3 us).
 *
 * @module
 */
import { O_CLOEXEC, O_PATH } from "../ffi/constants.ts";
import { native } from "../ffi/native.ts";
import { UnsupportedError } from "../errors.ts";
import { mapNodeError, nodeApi, worker } from "./node_api.ts";
import { webStream } from "./streams.ts";
import { detachStdout } from "./stdout.ts";
import { type ByteStream, type Runtime, type SignalName, WORKER_LIMITS_UNSUPPORTED } from "./runtime.ts";

async function writeAll(w: { write(p: Uint8Array): Promise<number> }, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.byteLength) off += await w.write(chunk.subarray(off));
}

function fileStream(file: Deno.FsFile, mode: "read" | "write" | "both"): ByteStream {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    try {
      file.close();
    } catch { /* already closed */ }
  };
  return webStream({
    readable: mode === "write" ? null : file.readable,
    write: mode === "read" ? null : (c) => writeAll(file, c),
    endWrite: mode === "write" ? release : undefined,
    release,
  });
}

/**
 * Deno.open() on a FIFO blocks (on a thread) until the other end opens, and cannot be cancelled. To give up, open
 * the other end ourselves for a moment: the pending open then completes and we close both.
 */
/**
 * A handle on the FIFO itself that is neither a reader nor a writer (`O_PATH`), so that a waiting open can be ended
 * through `/proc/self/fd/N` even after the FIFO's name was removed (opening the other end by name would then fail,
 * and the open, blocked on one of Deno's threads, would wait for ever). Undefined without FFI (the name is used).
 */
async function fifoHandle(path: string): Promise<{ path: string; close(): void } | undefined> {
  try {
    const ffi = await native();
    const fd = ffi.call.open(ffi.cstring(path), O_PATH | O_CLOEXEC, 0);
    return fd < 0 ? undefined : { path: `/proc/self/fd/${fd}`, close: () => void ffi.call.close(fd) };
  } catch {
    return undefined;
  }
}

async function openFifo(path: string, mode: "read" | "write", signal?: AbortSignal): Promise<ByteStream> {
  signal?.throwIfAborted();
  let aborted = false;
  const handle = signal === undefined ? undefined : await fifoHandle(path);
  const pending = Deno.open(path, mode === "read" ? { read: true } : { write: true });
  const onAbort = async () => {
    aborted = true;
    try {
      // Opening the other end completes the waiting open (which is then closed below).
      const other = await Deno.open(handle?.path ?? path, mode === "read" ? { write: true } : { read: true });
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
    handle?.close();
  }
  if (aborted || signal?.aborted) {
    file.close();
    signal?.throwIfAborted();
  }
  if (!(await file.stat()).isFifo) {
    file.close();
    throw new TypeError(`Cannot open FIFO "${path}": it is not a FIFO`);
  }
  return fileStream(file, mode);
}

let stdioStream: ByteStream | undefined;

/** The Runtime for Deno. */
export const runtime: Runtime = {
  ...nodeApi,
  name: "deno",
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
    return (stdioStream ??= webStream({
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
