/**
 * The orchestrator of `npm run soak`: runs each transport's soak (a consumer child and its producers) and chaos
 * rounds (a survivor child and its victims) on rotating runtimes, then checks that `ipckit clean` leaves nothing.
 * `scripts/soak.ts` is the command line; `tests/soak.test.ts` calls these at a tiny size.
 *
 * Runtimes rotate so that every pair appears: the transport at position k of the run has its consumer on
 * deno, bun, node (k mod 3) and its producers alternate between the two others, so any three consecutive
 * transports cover the six (producer, consumer) pairs. The survivor of the chaos run is shifted by one, and its
 * victims alternate between the two runtimes it is not.
 *
 * @module
 */
import { MessageQueue, NotFoundError, type RuntimeName, SysvQueue } from "../../mod.ts";
import { RUNTIMES } from "../../runtimes/runtime.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";
import type { ChaosJob, ChaosResult, RoundKind, RoundSpec } from "./chaos.ts";
import type { SoakJob, SoakResult } from "./consume.ts";
import { peerArgv, reap, ROOT } from "./proc.ts";
import type { SoakTransport, Used } from "./transports.ts";

/** What a run needs. */
export interface RunOptions {
  transports: readonly SoakTransport[];
  /** Messages per transport, in all (split among the producers). */
  messages: number;
  /** Producers per transport. */
  producers: number;
  /** Chaos rounds of each kind per transport (in a SIGKILL round, the victim hosts every other time where it can). */
  rounds: RoundCounts;
  seed: number;
  /** The run's directory (sockets, FIFOs, file queues, reports); the caller removes it. */
  dir: string;
  /** Prefix of the run's POSIX names. */
  tag: string;
  /** The run's own owner-record registry (IPCKIT_REGISTRY of every child). */
  registry: string;
  nats?: string;
  /** NATS heartbeats: the soak's (a loaded machine must not look dead) and the chaos run's (detection). */
  heartbeat: { soak: number; chaos: number };
  /** `receive({ timeout })` of the stop rounds and datagram transports, in ms. */
  timeout: number;
  /** The soak gives up when no message came for this long, in ms. */
  stall: number;
  /** Progress lines. */
  log(line: string): void;
}

const others = (r: RuntimeName): RuntimeName[] => RUNTIMES.filter((x) => x !== r);

/** Runs `soak_peer.ts <mode>` as the run's child and reads its report; SIGKILLs it after `ms` (a hang). */
async function child<T>(
  o: RunOptions,
  rtName: RuntimeName,
  mode: string,
  job: { out: string },
  ms: number,
): Promise<T> {
  const rt = await runtime();
  const c = rt.spawn(peerArgv(rtName, mode, job), {
    cwd: ROOT,
    stdio: "null",
    stderr: "inherit",
    env: { IPCKIT_REGISTRY: o.registry },
  });
  const status = await reap(c, ms);
  try {
    return JSON.parse(await rt.readTextFile(job.out)) as T;
  } catch {
    throw new Error(`${mode} on ${rtName} left no report (exit ${JSON.stringify(status)})`);
  } finally {
    await rt.removeFile(job.out).catch(() => {});
  }
}

/** The soak of every transport, one after the other. */
export async function runSoak(o: RunOptions): Promise<SoakResult[]> {
  const results: SoakResult[] = [];
  for (const [k, t] of o.transports.entries()) {
    const consumer = RUNTIMES[k % 3]!;
    const pair = others(consumer);
    const producers = Array.from({ length: o.producers }, (_, i) => pair[i % 2]!);
    o.log(`soak ${t.name}: ${o.messages} messages, producers ${producers.join(",")} -> consumer ${consumer}`);
    const job: SoakJob = {
      transport: t.name,
      messages: o.messages,
      producers,
      seed: o.seed + k,
      dir: o.dir,
      tag: o.tag,
      heartbeat: o.heartbeat.soak,
      out: `${o.dir}/soak-${t.name}.json`,
      stall: o.stall,
      ...(o.nats === undefined ? {} : { nats: o.nats }),
    };
    try {
      // A hang guard only: the consumer gives up by itself when no message came for `stall` ms.
      const ms = 10 * 60_000 + o.messages;
      results.push(await child<SoakResult>(o, consumer, "consume", job, ms));
    } catch (e) {
      results.push(failedSoak(t, consumer, producers, o.messages, e));
    }
  }
  return results;
}

function failedSoak(t: SoakTransport, c: RuntimeName, p: RuntimeName[], n: number, e: unknown): SoakResult {
  return {
    transport: t.name,
    consumer: c,
    producers: p,
    reliable: t.reliable,
    expected: n,
    counts: { messages: 0, bytes: 0, lost: n, duplicated: 0, reordered: 0, corrupt: 0 },
    wallMs: 0,
    dropped: 0,
    rss: { before: 0, after: 0, peak: 0 },
    errors: [String(e)],
    used: { shm: [], mq: [], sysv: [] },
  };
}

/** How many chaos rounds of each kind. */
export type RoundCounts = Readonly<Record<RoundKind, number>>;

/** The chaos rounds of a transport at position k, and the survivor's runtime. */
export function planRounds(t: SoakTransport, k: number, counts: RoundCounts): {
  survivor: RuntimeName;
  rounds: RoundSpec[];
} {
  const survivor = RUNTIMES[(k + 1) % 3]!;
  const victims = others(survivor);
  const kinds = (["kill", "large", "stop"] as const).flatMap((kind) => Array<RoundKind>(counts[kind]).fill(kind));
  let kills = 0;
  const rounds = kinds.map((kind, i) => ({
    kind,
    victim: victims[i % 2]!,
    victimHosts: t.swappable && kind === "kill" && kills++ % 2 === 1,
  }));
  return { survivor, rounds };
}

/** The chaos rounds of every transport. */
export async function runChaos(o: RunOptions): Promise<ChaosResult[]> {
  const results: ChaosResult[] = [];
  for (const [k, t] of o.transports.entries()) {
    const { survivor, rounds } = planRounds(t, k, o.rounds);
    o.log(`chaos ${t.name}: survivor ${survivor}, ${rounds.map((r) => `${r.kind}(${r.victim})`).join(" ")}`);
    const job: ChaosJob = {
      transport: t.name,
      rounds,
      seed: o.seed + k,
      dir: o.dir,
      tag: o.tag,
      heartbeat: o.heartbeat.chaos,
      timeout: o.timeout,
      out: `${o.dir}/chaos-${t.name}.json`,
      ...(o.nats === undefined ? {} : { nats: o.nats }),
    };
    try {
      results.push(await child<ChaosResult>(o, survivor, "survive", job, 5 * 60_000 + rounds.length * 120_000));
    } catch (e) {
      const failed = rounds.map((r) => ({ ...r, ok: false, error: "failed", ms: 0, received: 0, corrupt: 0 }));
      results.push({
        transport: t.name,
        survivor,
        rounds: failed.map((r) => ({ ...r, note: String(e) })),
        used: {
          shm: [],
          mq: [],
          sysv: [],
        },
      });
    }
  }
  return results;
}

/** What `ipckit clean` removed, and what was still there after it (should be nothing). */
export interface Leftovers {
  cleaned: string[];
  left: string[];
}

/** Runs a command to its end; resolves with its stdout. */
async function capture(
  argv: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; out: string }> {
  const rt = await runtime();
  const c = rt.spawn(argv, { cwd: ROOT, stdio: "pipe", stderr: "inherit", env });
  const chunks: Uint8Array[] = [];
  const ended = new Promise<void>((resolve) =>
    c.stdio!.start({ data: (d) => chunks.push(d.slice()), end: () => resolve() })
  );
  void c.stdio!.end().catch(() => {});
  const status = await reap(c, 60_000);
  await Promise.race([ended, new Promise((r) => setTimeout(r, 1000))]);
  return { code: status.code, out: new TextDecoder().decode(await new Blob(chunks as BlobPart[]).arrayBuffer()) };
}

/**
 * Runs `ipckit clean` on the run's registry, then looks for anything the run made that is still there: records
 * (`ipckit ls --all`), /dev/shm entries with the run's tag, POSIX queues (mq_open of every name used: /dev/mqueue
 * may not be mounted), System V queues (`ipcs -q` and msgget of every key used), and files in the run's directory.
 * Whatever is found is reported, then removed, so a failed run leaves the machine clean too.
 */
export async function checkLeftovers(o: RunOptions, used: Used): Promise<Leftovers> {
  const rt = await runtime();
  const cli = runtimeArgv(rt.name, `${ROOT}cli/main.ts`);
  const env = { IPCKIT_REGISTRY: o.registry };
  const cleaned: string[] = [];
  const left: string[] = [];
  const clean = await capture([...cli, "clean", "--json"], env);
  try {
    const r = JSON.parse(clean.out) as { removed: { kind: string; name: string; pid: number }[] };
    for (const x of r.removed) cleaned.push(`${x.kind} ${x.name} (pid ${x.pid}, dead)`);
  } catch {
    left.push(`ipckit clean printed no JSON (exit ${clean.code})`);
  }
  const ls = await capture([...cli, "ls", "--json", "--all"], env);
  try {
    for (const x of JSON.parse(ls.out) as { kind: string; name: string; status: string }[]) {
      left.push(`record: ${x.kind} ${x.name} (${x.status})`);
    }
  } catch {
    left.push(`ipckit ls printed no JSON (exit ${ls.code})`);
  }
  for (const name of await rt.readDir("/dev/shm").catch(() => [] as string[])) {
    if (name.includes(o.tag)) {
      left.push(`/dev/shm/${name}`);
      await rt.removeFile(`/dev/shm/${name}`).catch(() => {});
    }
  }
  for (const base of new Set(used.mq)) {
    for (const name of [`${base}-0`, `${base}-1`]) {
      try {
        const q = await MessageQueue.open(name);
        left.push(`POSIX queue ${name}`);
        q.unlink();
        q.close();
      } catch (e) {
        if (!(e instanceof NotFoundError)) left.push(`POSIX queue ${name}: ${e}`);
      }
    }
  }
  const keys = new Set(used.sysv);
  const ipcs = await capture(["ipcs", "-q"]).catch(() => ({ code: null, out: "" }));
  for (const line of ipcs.out.split("\n")) {
    const key = /^0x([0-9a-f]+)\s+(\d+)/.exec(line);
    if (key && keys.has(parseInt(key[1]!, 16))) left.push(`System V queue key 0x${key[1]} id ${key[2]} (ipcs -q)`);
  }
  for (const k of keys) {
    try {
      const q = await SysvQueue.open(k);
      if (!left.some((l) => l.includes(`0x${k.toString(16).padStart(8, "0")}`))) left.push(`System V queue key ${k}`);
      q.remove();
    } catch (e) {
      if (!(e instanceof NotFoundError)) left.push(`System V queue key ${k}: ${e}`);
    }
  }
  for (const name of await rt.readDir(o.dir).catch(() => [] as string[])) left.push(`${o.dir}/${name}`);
  return { cleaned, left };
}

/** The named objects all reports used. */
export function allUsed(reports: readonly { used: Used }[]): Used {
  return {
    shm: reports.flatMap((r) => r.used.shm),
    mq: reports.flatMap((r) => r.used.mq),
    sysv: reports.flatMap((r) => r.used.sysv),
  };
}
