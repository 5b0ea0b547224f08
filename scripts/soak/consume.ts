/**
 * The soak of one transport: a consumer process hosts n producers (child processes of other runtimes), tells them
 * all to go at once, and checks every message they send (`Tally`: lost, duplicated, reordered, corrupt), timing
 * the run and sampling its own resident memory.
 *
 * @module
 */
import { TimeoutError } from "../../errors.ts";
import type { Channel, ChildProcess, RuntimeName } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { type Counts, DONE, done, GO, HELLO, MessageWriter, split, Tally } from "./message.ts";
import { beforeExit, describe, memory, peerArgv, reap, ROOT, sampleRss, spawnPeer, within } from "./proc.ts";
import { type Context, type Hosted, transport, type Used } from "./transports.ts";

/** What the orchestrator asks of a consumer. */
export interface SoakJob {
  transport: string;
  /** Messages in all, split among the producers. */
  messages: number;
  /** One runtime per producer. */
  producers: RuntimeName[];
  seed: number;
  dir: string;
  tag: string;
  nats?: string;
  heartbeat: number;
  /** Where the consumer writes its {@linkcode SoakResult}. */
  out: string;
  /** Give up when no message came for this long, in ms. */
  stall: number;
}

/** What a consumer asks of a producer. */
export interface ProduceJob {
  transport: string;
  address: string;
  id: number;
  count: number;
  seed: number;
  dir: string;
  tag: string;
  nats?: string;
  heartbeat: number;
}

/** A consumer's report. */
export interface SoakResult {
  transport: string;
  consumer: RuntimeName;
  producers: RuntimeName[];
  reliable: boolean;
  expected: number;
  counts: Counts;
  /** From "go" to the last message, in ms. */
  wallMs: number;
  /** Datagrams the consumer's socket discarded (udp: beyond its highWaterMark). */
  dropped: number;
  /** The consumer's resident memory, in bytes. */
  rss: { before: number; after: number; peak: number };
  /** What went wrong beside the counts (a channel's error, a producer's exit code, a stall). */
  errors: string[];
  used: Used;
}

const context = (j: { dir: string; tag: string; nats?: string; heartbeat: number }): Context => ({
  dir: j.dir,
  tag: j.tag,
  heartbeat: j.heartbeat,
  used: { shm: [], mq: [], sysv: [] },
  ...(j.nats === undefined ? {} : { nats: j.nats }),
});

/** Runs the consumer side of one transport's soak. */
export async function consume(job: SoakJob): Promise<SoakResult> {
  const rt = await runtime();
  const t = transport(job.transport);
  const ctx = context(job);
  const n = job.producers.length;
  const counts = split(job.messages, n);
  const tally = new Tally(counts);
  const errors: string[] = [];
  const children: ChildProcess[] = [];
  const channels: Channel[] = [];
  let hosted: Hosted | undefined;
  let wallMs = 0;
  let before = 0, after = 0, peak = 0;
  try {
    if (!t.spawn) hosted = await t.host(ctx, n);
    for (let i = 0; i < n; i++) {
      const pj: ProduceJob = {
        transport: t.name,
        address: hosted?.addresses[i] ?? "-",
        id: i,
        count: counts[i]!,
        seed: job.seed,
        dir: job.dir,
        tag: job.tag,
        heartbeat: job.heartbeat,
        ...(job.nats === undefined ? {} : { nats: job.nats }),
      };
      if (t.spawn) {
        const { channel, child } = await t.spawn(peerArgv(job.producers[i]!, "produce", pj), ROOT);
        channels.push(channel);
        children.push(child);
      } else {
        children.push(await spawnPeer(job.producers[i]!, "produce", pj));
      }
    }
    if (hosted && !t.datagram) {
      for (let i = 0; i < n; i++) channels.push(await beforeExit(hosted.accept(i), children, `${t.name} accept`));
    }
    const peers = hosted?.socket ? await hellos(hosted, children, n) : [];
    before = (await memory()).rss;
    const sampler = sampleRss();
    let last = performance.now();
    const progress = () => (last = performance.now());
    const t0 = performance.now();
    // Go, all at once: the producers were started one by one, the clock starts now.
    if (hosted?.socket) { for (const p of peers) await hosted.socket.send(GO, p); }
    else await Promise.all(channels.map((c) => c.send(GO)));
    const finished = hosted?.socket
      ? receiveDatagrams(hosted, children, n, tally, t.reliable, progress)
      : Promise.all(channels.map(async (c, i) => {
        try {
          for await (const m of c) {
            tally.add(m);
            progress();
          }
        } catch (e) {
          errors.push(`channel ${i}: ${describe(e)}`);
        }
      })).then(() => {});
    let watchdog: ReturnType<typeof setInterval> | undefined;
    const stalled = new Promise<void>((resolve) => {
      watchdog = setInterval(() => {
        if (performance.now() - last > job.stall) {
          errors.push(`stalled: no message for ${job.stall} ms`);
          resolve();
        }
      }, 500);
    });
    await Promise.race([finished, stalled]);
    clearInterval(watchdog);
    wallMs = last - t0;
    peak = await sampler.stop();
    after = (await memory()).rss;
    for (const [i, c] of children.entries()) {
      const status = await reap(c, 60_000);
      if (status.code !== 0) errors.push(`producer ${i} (${job.producers[i]}) exited with ${JSON.stringify(status)}`);
    }
  } catch (e) {
    errors.push(describe(e));
  } finally {
    for (const c of children) c.kill("SIGKILL"); // nothing once it exited
    await Promise.all(channels.map((c) => within(c.close(), 10_000, "close").catch(() => {})));
    await hosted?.close().catch(() => {});
    await Promise.all(children.map((c) => c.exited.catch(() => {})));
  }
  return {
    transport: t.name,
    consumer: rt.name,
    producers: job.producers,
    reliable: t.reliable,
    expected: job.messages,
    counts: tally.result(),
    wallMs,
    dropped: hosted?.socket?.dropped ?? 0,
    rss: { before, after, peak: Math.max(peak, after) },
    errors,
    used: ctx.used,
  };
}

/** Datagram transports: waits for a hello from each producer; returns their addresses. */
async function hellos(hosted: Hosted, children: ChildProcess[], n: number): Promise<unknown[]> {
  const socket = hosted.socket!;
  const from = new Map<string, unknown>();
  while (from.size < n) {
    const d = await beforeExit(socket.receive(), children, "hello");
    if (d.data.byteLength === 2 && d.data[0] === HELLO) from.set(JSON.stringify(d.from), d.from);
  }
  return [...from.values()];
}

/**
 * Datagram transports: counts data until every producer said done (reliable, ordered: nothing can follow), or
 * (udp) until every producer exited and nothing came for a second.
 */
async function receiveDatagrams(
  hosted: Hosted,
  children: ChildProcess[],
  n: number,
  tally: Tally,
  reliable: boolean,
  progress: () => void,
): Promise<void> {
  const socket = hosted.socket!;
  const dones = new Set<number>();
  let exited = 0;
  for (const c of children) void c.exited.then(() => exited++);
  for (;;) {
    if (dones.size === n && reliable) return;
    try {
      const { data, from } = await socket.receive({ timeout: 1000 });
      if (data.byteLength === 2 && data[0] === DONE) dones.add(data[1]!);
      else if (data.byteLength === 2 && data[0] === HELLO) await socket.send(GO, from); // a resent hello (udp)
      else {
        tally.add(data);
        progress();
      }
    } catch (e) {
      if (!(e instanceof TimeoutError)) throw e;
      if (dones.size === n || exited === n) return;
    }
  }
}

/** Runs one producer: joins, waits for go, sends its messages, closes. */
export async function produce(job: ProduceJob): Promise<void> {
  const t = transport(job.transport);
  const channel = await t.join(context(job), job.address);
  if (t.datagram) {
    // The hello may be lost (udp): say it again until the go comes.
    for (;;) {
      try {
        const m = await channel.receive({ timeout: 500 });
        if (m.byteLength === 1 && m[0] === GO[0]) break;
      } catch (e) {
        if (!(e instanceof TimeoutError)) throw e;
        await channel.send(new Uint8Array([HELLO, job.id]));
      }
    }
  } else {
    const m = await channel.receive();
    if (m.byteLength !== 1 || m[0] !== GO[0]) {
      throw new Error(`producer ${job.id}: expected go, got ${m.byteLength} bytes`);
    }
  }
  const writer = new MessageWriter(job.id, job.seed, t.soakMax);
  for (let i = 0; i < job.count; i++) await channel.send(writer.next());
  if (t.datagram) { for (let k = 0; k < (t.reliable ? 1 : 3); k++) await channel.send(done(job.id)); }
  await channel.close();
}
