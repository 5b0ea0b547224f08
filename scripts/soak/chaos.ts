/**
 * The chaos run of one transport: a survivor process and, per round, a victim (a child of another runtime) joined
 * by one channel. The survivor SIGKILLs or SIGSTOPs the victim and measures what its own end does.
 *
 * Rounds:
 * - `kill`: the victim floods the survivor with soak messages (at most 64 unacknowledged, so a file queue's log
 *   stays small) while the survivor acknowledges; at a random moment the survivor SIGKILLs it and times how long
 *   its pending `receive()` takes to reject. Where the transport allows, the victim hosts every other round (the
 *   listener or creator dies instead of the client or opener).
 * - `large`: the victim sends one 4-64 MiB message (the transport's limit for shm and datagrams), once to time it,
 *   then again; the survivor SIGKILLs it at a random moment within that time, so mostly in the middle of the
 *   message (for mq/sysv/nats: in the middle of its pieces). `mid` says whether it was.
 * - `stop`: SIGSTOP, then `receive({ timeout })` must reject with `TimeoutError` (a stopped process is alive: not
 *   a `ClosedError`); SIGCONT, the ping sent meanwhile is answered, and the victim closes cleanly. Over NATS the
 *   heartbeat must declare the silent peer gone instead (`ClosedError` after about 3 beats); the victim is killed.
 *
 * A clear error is `ClosedError` or `ProtocolError`. Connectionless transports (`datagram: true`) cannot notice a
 * dead peer: for them a `receive({ timeout })` must reject with `TimeoutError`. Anything that does not end within
 * `HANG_MS` is a hang.
 *
 * Control messages between the two (all shorter than a soak header): survivor to victim `F` flood, `A<u32>`
 * acknowledged count, `L<u32>` send a large message of that size, `P` ping, `E` end; victim to survivor `R` ready,
 * `M` (a large message follows), `p` pong.
 *
 * @module
 */
import { ClosedError, TimeoutError } from "../../errors.ts";
import type { Channel, ChildProcess, RuntimeName } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { HEADER, intact } from "./message.ts";
import type { VictimJob } from "./victim.ts";
import { beforeExit, describe, peerArgv, reap, ROOT, sleep, spawnPeer, within } from "./proc.ts";
import { type Context, type Hosted, LARGE_MIN, type SoakTransport, transport, type Used } from "./transports.ts";

/** How long the survivor waits for an end before it calls the round a hang, in ms. */
export const HANG_MS = 15_000;
/** The unacknowledged messages a flooding victim may have in flight. */
export const WINDOW = 64;

export type RoundKind = "kill" | "large" | "stop";

/** One round, as the orchestrator plans it. */
export interface RoundSpec {
  kind: RoundKind;
  victim: RuntimeName;
  /** The victim creates / listens, the survivor opens / connects. */
  victimHosts: boolean;
}

/** What the orchestrator asks of a survivor. */
export interface ChaosJob {
  transport: string;
  rounds: RoundSpec[];
  seed: number;
  dir: string;
  tag: string;
  nats?: string;
  heartbeat: number;
  /** The `receive({ timeout })` of stop rounds and datagram transports, in ms. */
  timeout: number;
  out: string;
}

/** One round's outcome. */
export interface RoundResult extends RoundSpec {
  ok: boolean;
  /** The error the survivor got (its class name), or the failure. */
  error: string;
  /** kill/large: SIGKILL to that error; stop: SIGSTOP to the timeout (or, NATS, to the heartbeat's verdict). */
  ms: number;
  /** large: the kill landed before the message was complete. */
  mid?: boolean;
  /** large: the message's size. */
  size?: number;
  /** Data messages the survivor received in the round, and how many of them failed their CRC. */
  received: number;
  corrupt: number;
  note: string;
}

/** A survivor's report. */
export interface ChaosResult {
  transport: string;
  survivor: RuntimeName;
  rounds: RoundResult[];
  used: Used;
}

/** A control message: a letter and an optional u32. */
export const cmd = (letter: string, n?: number): Uint8Array => {
  const m = new Uint8Array(n === undefined ? 1 : 5);
  m[0] = letter.charCodeAt(0);
  if (n !== undefined) new DataView(m.buffer).setUint32(1, n);
  return m;
};
/** The letter of a control message ("" for data). */
export const letter = (
  m: Uint8Array,
): string => (m.byteLength > 0 && m.byteLength < HEADER ? String.fromCharCode(m[0]!) : "");
/** The u32 of a control message. */
export const arg = (m: Uint8Array): number => new DataView(m.buffer, m.byteOffset, m.byteLength).getUint32(1);

/** A process's Context for a job. */
export const context = (j: { dir: string; tag: string; nats?: string; heartbeat: number }): Context => ({
  dir: j.dir,
  tag: j.tag,
  heartbeat: j.heartbeat,
  used: { shm: [], mq: [], sysv: [] },
  ...(j.nats === undefined ? {} : { nats: j.nats }),
});

/** The survivor's end of one round: the channel, the victim, and what hosts it. */
interface Joined {
  channel: Channel;
  child: ChildProcess;
  hosted?: Hosted;
}

async function connect(t: SoakTransport, ctx: Context, job: ChaosJob, spec: RoundSpec): Promise<Joined> {
  const largest = t.largeMax;
  const vj = (role: "host" | "join", address: string): VictimJob => ({
    transport: t.name,
    role,
    address,
    seed: job.seed,
    dir: job.dir,
    tag: job.tag,
    heartbeat: job.heartbeat,
    largest,
    ...(job.nats === undefined ? {} : { nats: job.nats }),
  });
  if (t.spawn) return await t.spawn(peerArgv(spec.victim, "victim", vj("join", "-")), ROOT);
  if (spec.victimHosts) {
    const [address] = await t.pick(ctx, 1);
    const child = await spawnPeer(spec.victim, "victim", vj("host", address!));
    return { channel: await beforeExit(t.join(ctx, address!), [child], `${t.name} join`), child };
  }
  const hosted = await t.host(ctx, 1, { largest });
  const child = await spawnPeer(spec.victim, "victim", vj("join", hosted.addresses[0]!));
  try {
    return { channel: await beforeExit(hosted.accept(0), [child], `${t.name} accept`), child, hosted };
  } catch (e) {
    child.kill("SIGKILL");
    await hosted.close();
    throw e;
  }
}

/**
 * Reads the channel in the background: data messages are counted and checked, control messages queued for
 * `control()`; `ended` settles with the error that ended the channel and when it came.
 */
class Reader {
  received = 0;
  corrupt = 0;
  /** Sizes of the large (over 64 KiB) messages received complete. */
  readonly large: number[] = [];
  readonly ended: Promise<{ error: unknown; at: number }>;
  /** When the last data message and the last control message arrived (before any check of them). */
  dataAt = 0;
  /** Large-message markers (`M`) received. */
  markers = 0;
  #controls: Uint8Array[] = [];
  #wake: (() => void) | undefined;
  #onData: (() => void) | undefined;
  /** Datagram transports: after the kill, a receive that times out ends the reader. */
  timeoutEnds = false;

  constructor(channel: Channel, timeout: number | undefined, onData?: () => void) {
    this.#onData = onData;
    this.ended = (async () => {
      for (;;) {
        let m: Uint8Array;
        try {
          m = await channel.receive(timeout === undefined ? {} : { timeout });
        } catch (e) {
          if (e instanceof TimeoutError && !this.timeoutEnds) continue;
          return { error: e, at: performance.now() };
        }
        if (m.byteLength >= HEADER) {
          this.dataAt = performance.now();
          this.received++;
          if (!intact(m)) this.corrupt++;
          if (m.byteLength > 64 * 1024) this.large.push(m.byteLength);
          this.#onData?.();
        } else {
          if (letter(m) === "M") this.markers++;
          this.#controls.push(m);
        }
        this.#wake?.();
      }
    })();
  }

  /** The next control message (waits up to HANG_MS). */
  async control(): Promise<Uint8Array> {
    const deadline = performance.now() + HANG_MS;
    while (this.#controls.length === 0) {
      if (performance.now() > deadline) throw new Error("no control message from the victim");
      await Promise.race([new Promise<void>((r) => (this.#wake = r)), sleep(100), this.ended]);
      const end = await Promise.race([this.ended, Promise.resolve(undefined)]);
      if (end !== undefined && this.#controls.length === 0) {
        throw new Error(`the channel ended before the victim answered: ${describe(end.error)}`);
      }
    }
    return this.#controls.shift()!;
  }

  /** Resolves once `n` data messages came. */
  async data(n: number): Promise<void> {
    while (this.received < n) await Promise.race([new Promise<void>((r) => (this.#wake = r)), sleep(100)]);
  }
}

/** Whether `e` is an error a survivor may get when its peer dies. */
const clear = (e: unknown): boolean => e instanceof ClosedError || (e instanceof Error && e.name === "ProtocolError");

/** Kills the victim and waits for the survivor's end to notice. */
async function killAndWait(
  t: SoakTransport,
  child: ChildProcess,
  reader: Reader,
): Promise<Pick<RoundResult, "ok" | "error" | "ms" | "note">> {
  reader.timeoutEnds = t.datagram;
  const killed = performance.now();
  await signal(child, "SIGKILL");
  const end = await Promise.race([reader.ended, sleep(HANG_MS).then(() => undefined)]);
  if (end === undefined) return { ok: false, error: "hang", ms: HANG_MS, note: `no error ${HANG_MS} ms after SIGKILL` };
  if (end.at < killed) {
    // A live peer taken for dead (or any failure before the kill) is a failure, not a fast detection.
    return { ok: false, error: "early", ms: 0, note: `the channel ended before the kill: ${describe(end.error)}` };
  }
  const ms = end.at - killed;
  const name = end.error instanceof Error ? end.error.name : String(end.error);
  if (t.datagram) {
    const ok = end.error instanceof TimeoutError;
    return {
      ok,
      error: name,
      ms,
      note: ok ? "datagram: a dead peer is silence; receive timed out" : describe(end.error),
    };
  }
  return { ok: clear(end.error), error: name, ms, note: clear(end.error) ? "" : describe(end.error) };
}

async function killRound(t: SoakTransport, j: Joined, job: ChaosJob): Promise<Partial<RoundResult>> {
  let turn: Promise<unknown> = Promise.resolve();
  const reader = new Reader(j.channel, t.datagram ? job.timeout : undefined, () => {
    // Acknowledge every 16th message (queued behind earlier sends; a failing send is the reader's business).
    if (reader.received % 16 === 0) turn = turn.then(() => j.channel.send(cmd("A", reader.received))).catch(() => {});
  });
  await within(reader.control(), HANG_MS, "ready"); // R
  await j.channel.send(cmd("F"));
  await within(reader.data(1), HANG_MS, "first flood message");
  await sleep(50 + Math.random() * 450);
  const r = await killAndWait(t, j.child, reader);
  return { ...r, received: reader.received, corrupt: reader.corrupt };
}

async function largeRound(t: SoakTransport, j: Joined, job: ChaosJob): Promise<Partial<RoundResult>> {
  const reader = new Reader(j.channel, t.datagram ? job.timeout : undefined);
  await within(reader.control(), HANG_MS, "ready");
  const size = t.datagram ? t.largeMax : Math.floor(LARGE_MIN + Math.random() * (t.largeMax - LARGE_MIN));
  // Twice to time it (the victim builds the message once, the first transfer also pays for fresh pages)...
  let took = Infinity;
  for (let i = 0; i < 2; i++) {
    const sent = performance.now();
    await j.channel.send(cmd("L", size));
    await within(reader.control(), 120_000, "marker"); // M
    await within(reader.data(i + 1), 120_000, "a large message");
    took = Math.min(took, reader.dataAt - sent);
  }
  // ...then again, killed at a random moment within that time: log-uniform from 1 ms to 0.7 of it, so early kills
  // come too, where only the sender's part of the transfer can be cut (shm: its one copy into the ring).
  const markers = reader.markers;
  const complete = reader.large.length;
  await j.channel.send(cmd("L", size));
  const delay = Math.exp(Math.random() * Math.log(Math.max(1, 0.7 * took)));
  await sleep(delay);
  const r = await killAndWait(t, j.child, reader);
  const started = reader.markers > markers;
  const timing = `sent in ${took.toFixed(0)} ms, killed ${delay.toFixed(0)} ms after asking for it` +
    (started ? "" : ", before it started");
  const note = [t.datagram ? "one datagram cannot be cut" : "", timing, r.note].filter((x) => x).join("; ");
  const mid = t.datagram ? {} : { mid: started && reader.large.length === complete };
  return { ...r, note, ...mid, size, received: reader.received, corrupt: reader.corrupt };
}

async function stopRound(t: SoakTransport, j: Joined, job: ChaosJob): Promise<Partial<RoundResult>> {
  const expect = async (want: string, ms: number) => {
    const m = await j.channel.receive({ timeout: ms });
    if (letter(m) !== want) throw new Error(`expected "${want}" from the victim, got ${m.byteLength} bytes`);
  };
  await expect("R", HANG_MS);
  await j.channel.send(cmd("P"));
  await expect("p", HANG_MS);
  const stopped = performance.now();
  await signal(j.child, "SIGSTOP");
  try {
    if (t.family === "nats") {
      // The documented behaviour: a peer silent for 3 heartbeats is gone.
      try {
        await j.channel.receive({ timeout: HANG_MS });
        return { ok: false, error: "message", ms: 0, note: "a message came from a stopped peer" };
      } catch (e) {
        const ms = performance.now() - stopped;
        const ok = e instanceof ClosedError;
        return { ok, error: (e as Error).name, ms, note: ok ? `heartbeat ${job.heartbeat} ms` : describe(e) };
      }
    }
    await within(j.channel.send(cmd("P")), HANG_MS, "ping while stopped");
    let ms: number;
    try {
      await j.channel.receive({ timeout: job.timeout });
      return { ok: false, error: "message", ms: 0, note: "a message came from a stopped peer" };
    } catch (e) {
      ms = performance.now() - stopped;
      if (!(e instanceof TimeoutError)) {
        return { ok: false, error: (e as Error).name, ms, note: `a stopped peer is alive: ${describe(e)}` };
      }
    }
    await signal(j.child, "SIGCONT");
    await expect("p", HANG_MS); // the ping sent while it was stopped
    await j.channel.send(cmd("E"));
    let note = "resumed, then closed cleanly";
    if (!t.datagram) {
      try {
        await j.channel.receive({ timeout: HANG_MS });
        note = "a message after the end";
      } catch (e) {
        if (!(e instanceof ClosedError)) note = `no clean end: ${describe(e)}`;
      }
    }
    const status = await reap(j.child, HANG_MS);
    if (status.code !== 0) note = `the victim exited with ${JSON.stringify(status)}`;
    return { ok: note === "resumed, then closed cleanly", error: "TimeoutError", ms, note };
  } finally {
    await signal(j.child, "SIGCONT");
  }
}

/** A progress line on stderr, with SOAK_DEBUG=1 in the environment. */
function debug(line: string): void {
  void runtime().then((rt) => rt.env("SOAK_DEBUG") && rt.printError(`[soak ${rt.name} ${rt.pid}] ${line}\n`));
}

/**
 * Sends `sig` to the victim by pid, and only while it runs (its pid is not yet free for another process). Not
 * `child.kill()`: Deno's node:child_process treats any signal sent that way as the end of the child (it closes
 * the child's stdin, and later `kill()` calls do nothing), so a SIGSTOP there would break a pipe channel.
 */
async function signal(child: ChildProcess, sig: "SIGKILL" | "SIGSTOP" | "SIGCONT"): Promise<void> {
  const rt = await runtime();
  if (gone.has(child)) return;
  try {
    rt.kill(child.pid, sig);
  } catch {
    // it exited a moment ago
  }
}

/** Victims known to have exited. */
const gone = new WeakSet<ChildProcess>();
const watch = <T extends { child: ChildProcess }>(j: T): T => {
  void j.child.exited.then(() => gone.add(j.child), () => gone.add(j.child));
  return j;
};

/** Runs the survivor's rounds of one transport. */
export async function survive(job: ChaosJob): Promise<ChaosResult> {
  const rt = await runtime();
  const t = transport(job.transport);
  const ctx = context(job);
  const rounds: RoundResult[] = [];
  for (const spec of job.rounds) {
    const base: RoundResult = { ...spec, ok: false, error: "", ms: 0, received: 0, corrupt: 0, note: "" };
    let j: Joined | undefined;
    try {
      debug(`${t.name} ${spec.kind}: starting a ${spec.victim} victim`);
      j = watch(await connect(t, ctx, job, spec));
      debug(`${t.name} ${spec.kind}: connected to victim ${j.child.pid}`);
      const run = spec.kind === "kill" ? killRound : spec.kind === "large" ? largeRound : stopRound;
      rounds.push({ ...base, ...(await run(t, j, job)) });
      debug(`${t.name} ${spec.kind}: ${rounds.at(-1)!.ok ? "ok" : "FAIL"}`);
    } catch (e) {
      debug(`${t.name} ${spec.kind}: ${describe(e)}`);
      rounds.push({ ...base, error: "failed", note: describe(e) });
    } finally {
      if (j) {
        await signal(j.child, "SIGKILL");
        await within(j.channel.close(), HANG_MS, "close").catch((e) => {
          const last = rounds.at(-1)!;
          last.ok = false;
          last.note += `; close: ${describe(e)}`;
        });
        await j.hosted?.close().catch(() => {});
        await reap(j.child, HANG_MS);
      }
    }
  }
  return { transport: t.name, survivor: rt.name, rounds, used: ctx.used };
}
