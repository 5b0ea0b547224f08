/**
 * The native peers of `tests/native_peers.test.ts`: the C program (`tests/fixtures/native_peer.c`, built here with
 * cc against `include/ipckit_ring.h`) and the Python one (`tests/fixtures/native_peer.py` over
 * `python/ipckit_ring.py`), and one session with either of them over an shm channel, everything it made removed
 * however it ends.
 */
import assert from "node:assert/strict";
import { type ExitStatus, NotFoundError, SharedMemory, shm } from "../../mod.ts";
import type { Runtime } from "../../runtimes/runtime.ts";
import { type LineChild, spawnWithLines } from "./child_lines.ts";

/** How long a peer may take to attach, or to end, before it is killed (a watchdog, not a timing assertion). */
export const PEER_DEADLINE_MS = 90_000;

/** A native peer program: how to start it. */
export interface NativePeer {
  /** Its name in test titles. */
  readonly label: string;
  /** The argv that runs it with `args`. */
  argv(args: string[]): string[];
  /** Environment variables it runs with. */
  readonly env: Record<string, string>;
}

/** Which side of the channel the native peer takes: it opens what ipckit created, or creates what ipckit opens. */
export type NativeRole = "open" | "create";

/**
 * Message `i` of a sequence with messages up to `max` bytes: empty, maximal and in-between lengths, bytes from `i`.
 * The same as `message_of` in both fixtures.
 */
export function messageOf(i: number, max: number): Uint8Array {
  const k = i % 5;
  const length = k === 0 ? 0 : k === 1 ? max : k === 2 ? i % (max + 1) : k === 3 ? 1 : (i * 13) % (max + 1);
  const out = new Uint8Array(length);
  for (let j = 0; j < length; j++) out[j] = (i * 7 + j) & 255;
  return out;
}

/** Runs a command to its end; its exit status (stderr to ours). */
export async function run(rt: Runtime, argv: string[], cwd: string): Promise<ExitStatus> {
  const child = rt.spawn(argv, { cwd, stdio: "null", stderr: "inherit" });
  const timer = setTimeout(() => child.kill("SIGKILL"), PEER_DEADLINE_MS);
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Builds a C peer, `tests/fixtures/<peer>.c`, into `dir` with strict warnings; its path. */
export async function buildC(rt: Runtime, root: string, dir: string, peer = "native_peer"): Promise<string> {
  const out = `${dir}/${peer}`;
  const status = await run(rt, [
    "cc",
    "-std=c11",
    "-pedantic",
    "-Wall",
    "-Wextra",
    "-Wconversion",
    "-Werror",
    "-O2",
    "-I",
    `${root}/include`,
    `${root}/tests/fixtures/${peer}.c`,
    "-o",
    out,
  ], root);
  assert.deepEqual(status, { code: 0, signal: null }, `cc builds tests/fixtures/${peer}.c`);
  return out;
}

/** Removes the segment `name` if it is still there. */
export async function unlinkQuietly(name: string): Promise<void> {
  await SharedMemory.unlink(name).catch((e) => {
    if (!(e instanceof NotFoundError)) throw e;
  });
}

/** One session: the JS end, the native peer's lines, and how it exited. */
export interface Session {
  readonly channel: shm.ShmChannel;
  readonly peer: LineChild;
  /** The name the segment had (removed once both attached). */
  readonly name: string;
  /** The largest message of the channel, as the peer said it. */
  readonly maxMessage: number;
  /** Resolves with the peer's exit status; kills it after PEER_DEADLINE_MS. */
  exit(): Promise<ExitStatus>;
}

/**
 * Starts `peer` on a fresh segment `name` in `role` with `args` (its scenario), makes this side's end (shm.create
 * or shm.open) with rings of `capacity` bytes, and runs `fn`. Whatever happens, the channel is closed, the peer
 * killed and reaped if it still runs, and the segment's name removed.
 */
export async function session(
  rt: Runtime,
  peer: NativePeer,
  role: NativeRole,
  name: string,
  args: string[],
  capacity: number,
  fn: (s: Session) => Promise<void>,
): Promise<void> {
  const [scenario, count = "0"] = args;
  const child = spawnWithLines(rt, peer.argv([role, name, scenario!, count, String(capacity)]), peer.env);
  const ended = new AbortController();
  let exitedEarly = true;
  void child.child.exited.then(() => {
    if (exitedEarly) ended.abort(new Error(`the ${peer.label} peer exited before attaching`));
  });
  const watchdog = setTimeout(() => ended.abort(new Error(`no ${peer.label} peer attached in time`)), PEER_DEADLINE_MS);
  let channel: shm.ShmChannel | undefined;
  try {
    channel = role === "open"
      ? await shm.create(name, { capacity, signal: ended.signal })
      : await shm.open(name, { wait: PEER_DEADLINE_MS, signal: ended.signal });
    exitedEarly = false;
    clearTimeout(watchdog);
    const line = await child.line();
    const attached = /^attached (\d+)$/.exec(line);
    assert.ok(attached, `the ${peer.label} peer says it attached: ${line}`);
    const exit = async () => {
      const timer = setTimeout(() => child.child.kill("SIGKILL"), PEER_DEADLINE_MS);
      try {
        return await child.child.exited;
      } finally {
        clearTimeout(timer);
      }
    };
    await fn({ channel, peer: child, name, maxMessage: Number(attached[1]), exit });
  } finally {
    exitedEarly = false;
    clearTimeout(watchdog);
    await channel?.close();
    child.child.kill("SIGKILL"); // nothing once it exited
    await child.child.exited;
    await unlinkQuietly(name);
  }
}
