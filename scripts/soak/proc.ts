/**
 * Process helpers shared by the soak's programs: starting `scripts/soak_peer.ts` on a runtime, waiting for a child
 * with a deadline, this process's resident memory, and the JSON files the children report in.
 *
 * @module
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { ChildProcess, ExitStatus, RuntimeName } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";

/** The repository root: every child runs there. */
export const ROOT: string = fileURLToPath(new URL("../../", import.meta.url));
/** The program every soak child runs. */
export const PEER: string = fileURLToPath(new URL("../soak_peer.ts", import.meta.url));

/** The argv that runs `soak_peer.ts <mode> <job as JSON>` on `rtName`. */
export function peerArgv(rtName: RuntimeName, mode: string, job: unknown): string[] {
  return [...runtimeArgv(rtName, PEER), mode, JSON.stringify(job)];
}

/** Starts `soak_peer.ts` on `rtName` (stdout discarded, stderr shown). */
export async function spawnPeer(rtName: RuntimeName, mode: string, job: unknown): Promise<ChildProcess> {
  const rt = await runtime();
  return rt.spawn(peerArgv(rtName, mode, job), { cwd: ROOT, stdio: "null", stderr: "inherit" });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A promise that rejects after `ms` with `what`; `cancel()` it when the race is over. */
export function deadline(ms: number, what: string): { promise: Promise<never>; cancel(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing after ${ms} ms`)), ms);
  });
  promise.catch(() => {});
  return { promise, cancel: () => clearTimeout(timer) };
}

/** `p`, or a rejection after `ms` ms. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  const d = deadline(ms, what);
  try {
    return await Promise.race([p, d.promise]);
  } finally {
    d.cancel();
  }
}

/** Waits for `p`, but fails if one of `children` exits first (it could not connect) or nothing comes for `ms`. */
export async function beforeExit<T>(p: Promise<T>, children: ChildProcess[], what: string, ms = 120_000): Promise<T> {
  const exits = children.map((c) =>
    c.exited.then((s) => Promise.reject(new Error(`${what}: peer ${c.pid} exited first (${JSON.stringify(s)})`)))
  );
  for (const e of exits) e.catch(() => {});
  return await within(Promise.race([p, ...exits]), ms, what);
}

/** Waits for a child to exit; SIGKILLs it (by pid: see `signal` in chaos.ts) after `ms`. */
export async function reap(child: ChildProcess, ms = 30_000): Promise<ExitStatus> {
  const rt = await runtime();
  const timer = setTimeout(() => {
    try {
      rt.kill(child.pid, "SIGKILL");
    } catch {
      // it exited meanwhile
    }
  }, ms);
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** This process's resident memory now and its peak so far (VmRSS, VmHWM), in bytes. */
export async function memory(): Promise<{ rss: number; peak: number }> {
  const status = await (await runtime()).readTextFile("/proc/self/status");
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s*(\\d+) kB`, "m").exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb("VmRSS"), peak: kb("VmHWM") };
}

/** Samples VmRSS every 100 ms until `stop()`, which gives the highest sample. */
export function sampleRss(): { stop(): Promise<number> } {
  let peak = 0;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    memory().then((m) => (peak = Math.max(peak, m.rss)), () => {}).finally(() => (busy = false));
  }, 100);
  return {
    async stop() {
      clearInterval(timer);
      return Math.max(peak, (await memory()).rss);
    },
  };
}

/** Writes a child's report where its parent reads it. */
export function report(path: string, value: unknown): void {
  writeFileSync(path, JSON.stringify(value));
}

/** The name and message of an error, shortly. */
export function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
