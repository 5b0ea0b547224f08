/**
 * Ending this process's stdout for real. None of the runtimes closes fd 1 when its stdout stream is ended (Deno's
 * `Deno.stdout.close()`, Bun's `FileSink.end()`, Node's `process.stdout.end()` under some parents), and Deno keeps
 * a duplicate of fd 1, so the parent would see EOF only when the child exits. So: `shutdown(SHUT_WR)` when stdout
 * is a socket (node:child_process gives children socketpairs; it ends every duplicate at once), and for a pipe,
 * every descriptor of this process that refers to the same pipe is pointed at /dev/null with dup2 (Linux, through
 * /proc/self/fd), which closes our end and keeps the descriptors valid for stray writes.
 *
 * @module
 */
import { readdirSync, readlinkSync } from "node:fs";
import { native } from "../ffi/native.ts";
import { O_WRONLY, SHUT_WR } from "../ffi/constants.ts";

/** What fd 1 is, from /proc/self/fd ("pipe:[123]", "socket:[45]", a path), or undefined without /proc. */
function describe(fd: number | string): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** Every descriptor of this process that refers to the same open pipe as fd 1. */
function samePipe(target: string): number[] {
  const fds: number[] = [];
  for (const name of readdirSync("/proc/self/fd")) if (describe(name) === target) fds.push(Number(name));
  return fds;
}

/** Ends fd 1 for the reader; does nothing when FFI is not available (the reader then sees EOF at exit). */
export async function detachStdout(): Promise<void> {
  try {
    const ffi = await native();
    const target = describe(1);
    if (target === undefined || target.startsWith("socket:")) {
      ffi.call.shutdown(1, SHUT_WR); // ends the socket for every duplicate (ENOTSOCK on a pipe without /proc)
    }
    if (target !== undefined && !target.startsWith("pipe:")) return; // a socket (done) or a file/tty
    const devNull = ffi.call.open(ffi.cstring("/dev/null"), O_WRONLY, 0);
    if (devNull < 0) return;
    for (const fd of target === undefined ? [1] : samePipe(target)) ffi.call.dup2(devNull, fd);
    ffi.call.close(devNull);
  } catch {
    // No FFI (e.g. Deno without --allow-ffi): the parent sees the end when this process exits.
  }
}
