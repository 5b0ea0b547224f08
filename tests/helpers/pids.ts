/**
 * Hostile process situations for liveness tests, made with small Python programs (an independent peer, not ipckit):
 *
 * - {@linkcode spawnUnreaped}: a child whose parent never reaps it, so that once killed it stays a zombie (a
 *   runtime's own spawn reaps its children at once, which hides zombies);
 * - {@linkcode takePid}: a new, unrelated process that gets a given (free) pid, by writing
 *   `/proc/sys/kernel/ns_last_pid` as root and forking, retried until the pid is hit (other processes fork too: one
 *   that got it first is waited out, for up to 60 s).
 */
import type { ChildProcess } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const KEEPER = `
import os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)
with open(out + ".tmp", "w") as f:
    f.write(str(pid))
os.rename(out + ".tmp", out)
while True:
    time.sleep(3600)  # never waits: a killed child stays a zombie until this process ends
`;

const TAKER = `
import os, sys, time
target = int(sys.argv[1])
deadline = time.time() + 60
while time.time() < deadline:
    if os.path.exists(f"/proc/{target}"):
        # Another process got it first (the other runners fork too): wait until it is free again.
        time.sleep(0.005)
        continue
    try:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(target - 1))
    except OSError as e:
        print(f"cannot write ns_last_pid: {e}", file=sys.stderr)
        sys.exit(2)
    child = os.fork()
    if child == 0:
        os.setsid()
        os.execvp("sleep", ["sleep", "600"])
    if child == target:
        sys.exit(0)
    os.kill(child, 9)
    os.waitpid(child, 0)
sys.exit(3)
`;

/** A child that stays a zombie once killed, and its non-reaping parent. */
export interface Unreaped {
  /** The child's pid. */
  readonly pid: number;
  /** Kills the child (it becomes a zombie: its parent does not reap it). */
  kill(): void;
  /** Kills the child and its parent (the zombie goes with the parent). */
  cleanup(): Promise<void>;
}

/** Starts `argv` as the child of a Python parent that never reaps it. */
export async function spawnUnreaped(argv: string[], cwd?: string): Promise<Unreaped> {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-zombie-");
  const out = `${dir}/pid`;
  const keeper: ChildProcess = rt.spawn(["python3", "-c", KEEPER, out, ...argv], {
    stdio: "null",
    ...(cwd === undefined ? {} : { cwd }),
  });
  let pid = 0;
  try {
    for (let i = 0; pid === 0; i++) {
      if (i > 3000) throw new Error("the Python keeper never reported its child's pid");
      pid = Number(await rt.readTextFile(out).catch(() => "0"));
      if (pid === 0) await new Promise((r) => setTimeout(r, 10));
    }
  } catch (e) {
    keeper.kill("SIGKILL");
    await keeper.exited;
    await rt.removeDir(dir);
    throw e;
  }
  const child = pid;
  return {
    pid: child,
    kill: () => killQuietly(child),
    async cleanup() {
      killQuietly(child);
      keeper.kill("SIGKILL");
      await keeper.exited;
      await rt.removeDir(dir);
    },
  };
}

function killQuietly(pid: number): void {
  runtime().then((rt) => {
    try {
      rt.kill(pid, "SIGKILL");
    } catch { /* gone already */ }
  });
}

/** The state letter of `/proc/<pid>/stat` (`Z` for a zombie), or undefined when there is no such process. */
export async function procState(pid: number): Promise<string | undefined> {
  const rt = await runtime();
  const text = await rt.readTextFile(`/proc/${pid}/stat`).catch(() => undefined);
  return text?.slice(text.lastIndexOf(")") + 2).split(" ")[0];
}

/** Waits until `pid` is a zombie (or gone). */
export async function untilZombie(pid: number): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    const s = await procState(pid);
    if (s === "Z" || s === undefined) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`pid ${pid} never became a zombie`);
}

/** A process that took a pid, or why none could be made (not root). */
export type Taken = { pid: number; release(): Promise<void> } | { skip: string };

/**
 * Makes an unrelated process (`sleep 600`) take `pid`, which must be free (its process ended and was reaped).
 * Needs root (`ns_last_pid`); without it, says why instead.
 */
export async function takePid(pid: number): Promise<Taken> {
  const rt = await runtime();
  const taker = rt.spawn(["python3", "-c", TAKER, String(pid)], { stdio: "null", stderr: "null" });
  const { code } = await taker.exited;
  if (code === 2) return { skip: "writing /proc/sys/kernel/ns_last_pid needs root (CAP_SYS_ADMIN)" };
  if (code !== 0) throw new Error(`could not make a process take pid ${pid} (exit ${code})`);
  return {
    pid,
    release: () => Promise.resolve(killQuietly(pid)),
  };
}

/** Waits until process `pid` is gone (after a kill; its parent reaps it). */
export async function untilGone(pid: number): Promise<void> {
  for (let i = 0; i < 6000; i++) {
    if ((await procState(pid)) === undefined) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`pid ${pid} never went away`);
}
