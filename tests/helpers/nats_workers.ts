/** Starting `ipckit worker --nats` processes for the NATS pool tests, and stopping them for sure. */
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";
import type { ChildProcess, RuntimeName } from "../../runtimes/runtime.ts";

const CLI = new URL("../../cli/main.ts", import.meta.url);

/**
 * The heartbeat (ms) of the NATS pool tests' masters and workers. A peer is declared dead after 3 missed beats, so a
 * short beat on a loaded 2-core machine (a process starved for a second) makes healthy workers leave, and a pool
 * whose workers all left waits for ever. Tests about noticing a death quickly set their own.
 */
export const HEARTBEAT = 1500;
export const POOL_WORKER = new URL("./pool_worker.ts", import.meta.url);

/** Starts a worker of `rt` joining the pool `subject` at `url`; `prefix` wraps the command (ip netns exec ...). */
export async function spawnWorker(
  rtName: RuntimeName,
  url: string,
  subject: string,
  options: {
    prefix?: string[];
    heartbeat?: number;
    module?: URL;
    extra?: string[];
    env?: Record<string, string>;
    stderr?: "pipe" | "inherit";
  } = {},
): Promise<ChildProcess> {
  const rt = await runtime();
  return rt.spawn(
    [
      ...(options.prefix ?? []),
      ...runtimeArgv(rtName, rt.fromFileUrl(CLI)),
      "worker",
      "--nats",
      url,
      "--subject",
      subject,
      "--heartbeat",
      String(options.heartbeat ?? HEARTBEAT),
      "--module",
      rt.fromFileUrl(options.module ?? POOL_WORKER),
      ...(options.extra ?? []),
    ],
    {
      stdio: "null",
      stderr: options.stderr ?? "inherit",
      cwd: rt.fromFileUrl(new URL("../../", import.meta.url)),
      ...(options.env === undefined ? {} : { env: options.env }),
    },
  );
}

/** SIGKILLs what is still running and waits for every exit. */
export async function killAll(children: Iterable<ChildProcess>): Promise<void> {
  const list = [...children];
  for (const c of list) c.kill("SIGKILL");
  await Promise.all(list.map((c) => c.exited.catch(() => {})));
}

/** A small seeded PRNG (mulberry32), so a failing run can be replayed from its printed seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Everything a child wrote to its piped stderr, once it ended. */
export async function stderrOf(child: ChildProcess): Promise<string> {
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stderr!) text += decoder.decode(chunk, { stream: true });
  return text;
}
