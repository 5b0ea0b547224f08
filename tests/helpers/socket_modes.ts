/**
 * For the socket-file permission tests (tests/unix.test.ts, tests/unix_dgram.test.ts): run code under another umask,
 * and try a socket as another user (a Python child that drops to nobody, 65534, when this process is root).
 */
import { execFile } from "node:child_process";
import { chmodSync, readdirSync } from "node:fs";
import { native } from "../../ffi/native.ts";
import { runtime } from "../../runtimes/detect.ts";

/** Runs `fn` with this process's umask set to `mask` (through FFI), and puts the old one back. */
export async function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const { call } = await native();
  const old = call.umask(mask);
  try {
    return await fn();
  } finally {
    call.umask(old);
  }
}

/** Why the other-user case cannot run here, or undefined when it can (root, with python3). */
export async function otherUserSkip(): Promise<string | undefined> {
  const { call } = await native();
  if (call.getuid() !== 0) return "needs root, to start a child as another user (nobody)";
  return undefined;
}

/** A fresh temporary directory that other users may enter (0755): only the socket's own mode decides. */
export async function openTempDir(): Promise<string> {
  const dir = await (await runtime()).makeTempDir("ipckit-mode-");
  chmodSync(dir, 0o755);
  return dir;
}

/** The names in `dir`: nothing may be left over from binding (the private `.ipk*` directory). */
export function names(dir: string): string[] {
  return readdirSync(dir).sort();
}

const PY_AS_NOBODY = `
import os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
kind = socket.SOCK_STREAM if sys.argv[1] == "stream" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_UNIX, kind)
try:
    if sys.argv[1] == "stream":
        s.connect(sys.argv[2]); s.sendall(b"\\0\\0\\0\\x06nobody")
    else:
        s.sendto(b"nobody", sys.argv[2])
    print("ok")
except PermissionError:
    print("EACCES")
`;

/** Connects (stream: then sends one frame "nobody") or sends "nobody" (dgram) to `path` as nobody: "ok" or "EACCES". */
export function asNobody(kind: "stream" | "dgram", path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("python3", ["-c", PY_AS_NOBODY, kind, path], { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error) reject(new Error(`python as nobody failed: ${error.message} ${stderr}`));
      else resolve(stdout.trim());
    });
  });
}
