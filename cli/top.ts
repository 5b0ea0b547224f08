/**
 * `ipckit top`: a live terminal view of every ipckit process on this machine and its objects, from their stats
 * segments (`shm/stats.ts`), redrawn every second: rates from the counters' differences, the current values beside.
 * Keys: `s` changes the order (rate, name, pid), `q` (or Ctrl-C) quits. Plain ANSI: works over SSH and in tmux.
 *
 * @module
 */
import { runtime, stats } from "../mod.ts";
import { parse, type Spec, UsageError } from "./args.ts";
import { columns } from "./format.ts";
import { shownTime } from "./stats.ts";

const SPEC: Spec = { sort: "value", interval: "value" };
const SORTS = ["rate", "name", "pid"] as const;
type Sort = (typeof SORTS)[number];

/** One row of the view: an object of a process, with its rates over the last interval. */
export interface Row {
  pid: number;
  runtime: string;
  kind: string;
  name: string;
  state: string;
  /**
   * Per second: messages (channels), tasks done (pools), calls made and served (RPC), operations begun (latency),
   * acquisitions (locks, semaphores).
   */
  rate: number;
  /** Megabytes per second, both ways (channels). */
  mbps: number | undefined;
  /** Wake-ups of the peer per second (channels). */
  wakes: number | undefined;
  /**
   * Shm channels between two processes: bytes sent to this side and not read yet (the peer's `bytesOut` less this
   * side's `bytesIn`: the fill of the ring this side reads, payload bytes), from both processes' segments.
   */
  queued: number | undefined;
  /** Latency slots: p50 and p99 in microseconds over the last interval (since the slot began before that). */
  p50: number | undefined;
  p99: number | undefined;
  /** The current values, shortly. */
  now: string;
  /** The counters as read. */
  counters: Record<string, number>;
}

type Sample = Map<string, Record<string, number>>;

const keyOf = (p: stats.ProcessStats, o: stats.ObjectStats) => `${p.segment}\0${o.kind}\0${o.name}`;

/** The rows of one sample, with rates against the `previous` one taken `seconds` before (0: no rates yet). */
export function rows(
  all: Array<stats.ProcessStats | stats.Unreadable>,
  previous: Sample,
  seconds: number,
): { rows: Row[]; sample: Sample } {
  const sample: Sample = new Map();
  const out: Row[] = [];
  const peers = shmEnds(all);
  for (const p of all) {
    if ("error" in p) continue;
    for (const o of p.objects) {
      const c = o.counters;
      // A latency slot's buckets are kept with its counters, for the quantiles of the last interval.
      const kept = o.buckets ? { ...c, ...Object.fromEntries(o.buckets.map((n, k) => [`b${k}`, n])) } : c;
      sample.set(keyOf(p, o), kept);
      const before = previous.get(keyOf(p, o));
      const per = (k: string) => (before && seconds > 0 ? Math.max(0, (c[k]! - (before[k] ?? 0)) / seconds) : 0);
      const channel = o.kind === "channel";
      const queued = channel ? queuedFor(p.pid, o, peers) : undefined;
      out.push({
        pid: p.pid,
        runtime: p.runtime,
        kind: o.kind,
        name: o.name,
        state: o.state,
        rate: channel
          ? per("messagesOut") + per("messagesIn")
          : o.kind === "pool"
          ? per("done")
          : o.kind === "rpc"
          ? per("calls") + per("served")
          : o.kind === "latency"
          ? per("count")
          : o.kind === "nats"
          ? per("reconnects")
          : o.kind === "worker"
          ? per("done")
          : per("acquired"),
        mbps: channel ? (per("bytesOut") + per("bytesIn")) / 1e6 : undefined,
        wakes: channel ? per("wakes") : undefined,
        queued,
        ...(o.kind === "latency" ? recentQuantiles(o, before) : { p50: undefined, p99: undefined }),
        // Records a collector skipped (dead producers), messages a subscriber missed (lagging): shown once there are.
        now: shownNow(o, before) + (queued === undefined ? "" : ` queued ${queued} B`) +
          (channel && (c.lost ?? 0) > 0 ? ` lost ${c.lost}` : ""),
        counters: c,
      });
    }
  }
  return { rows: out, sample };
}

/** A worker slot's `state` counter, as a word. */
export const WORKER_STATES = ["none", "starting", "ready", "draining", "stopping", "dead"];

/** The live ends of shm channels (a capacity, a segment's name) by name, with their process. */
function shmEnds(
  all: Array<stats.ProcessStats | stats.Unreadable>,
): Map<string, { pid: number; o: stats.ObjectStats }[]> {
  const ends = new Map<string, { pid: number; o: stats.ObjectStats }[]>();
  for (const p of all) {
    if ("error" in p) continue;
    for (const o of p.objects) {
      if (o.kind !== "channel" || o.state !== "live" || !o.counters.capacity || !o.name.startsWith("/")) continue;
      const list = ends.get(o.name) ?? [];
      list.push({ pid: p.pid, o });
      ends.set(o.name, list);
    }
  }
  return ends;
}

/** Bytes waiting for `o` (of process `pid`) in its ring, when its channel has exactly one other end, elsewhere. */
function queuedFor(pid: number, o: stats.ObjectStats, ends: ReturnType<typeof shmEnds>): number | undefined {
  const list = ends.get(o.name);
  if (!list || list.length !== 2 || list[0]!.pid === list[1]!.pid) return undefined;
  const peer = list.find((e) => e.pid !== pid);
  if (!peer) return undefined;
  // Two segments read one after the other: a message counted by one and not yet by the other reads as 0, not < 0.
  return Math.max(0, peer.o.counters.bytesOut! - o.counters.bytesIn!);
}

/**
 * A latency slot's p50 and p99 (microseconds) of the operations timed since `before` (its counters and buckets,
 * `b0`...), or since it began when none were (NaN when none ever were).
 */
export function recentQuantiles(
  o: stats.ObjectStats,
  before: Record<string, number> | undefined,
): { p50: number; p99: number } {
  const all = o.buckets ?? [];
  const recent = before ? all.map((n, k) => n - (before[`b${k}`] ?? 0)) : all;
  const b = recent.some((n) => n > 0) ? recent : all;
  return { p50: stats.quantile(b, 0.5), p99: stats.quantile(b, 0.99) };
}

/** An object's current values, shortly; a latency slot's p50 and p99 over the last interval (else since it began). */
export function shownNow(o: stats.ObjectStats, before: Record<string, number> | undefined): string {
  const c = o.counters;
  switch (o.kind) {
    case "channel":
      return `out ${c.messagesOut} in ${c.messagesIn}`;
    case "pool":
      return `queued ${c.queued} running ${c.running} workers ${c.workers} done ${c.done} failed ${c.failed}`;
    case "rpc":
      return `in flight ${c.calls! - c.callsSettled! + c.served! - c.servedDone!} calls ${c.calls} failed ` +
        `${c.callsFailed} served ${c.served} failed ${c.servedFailed}`;
    case "latency": {
      const { p50, p99 } = recentQuantiles(o, before);
      return `p50 ${shownTime(p50)} p99 ${shownTime(p99)} count ${c.count} failed ${c.failed}`;
    }
    case "lock": {
      const held = c.holder
        ? `held here by ${c.holder} for ${shownTime((Date.now() - c.heldSince!) * 1000)}`
        : "not held here";
      return `${held} waiting ${c.waiting} contended ${c.contended} gave up ${c.gaveUp} owner died ${c.ownerDied} ` +
        `longest ${shownTime(c.longestHoldUs!)}`;
    }
    case "semaphore":
      return `value ${c.value} waiting ${c.waiting} acquired ${c.acquired} released ${c.released} gave up ${c.gaveUp}`;
    case "nats":
      return `${c.connected ? "connected" : "disconnected"} channels ${c.channels} disconnects ${c.disconnects} ` +
        `reconnects ${c.reconnects}`;
    case "worker":
      return `${WORKER_STATES[c.state!] ?? "?"} ${c.state ? `id ${c.id} ` : ""}running ${c.running} done ${c.done} ` +
        `restarts ${c.restarts}`;
  }
}

/** Orders rows: by rate (highest first), by name, or by pid. */
export function sorted(list: Row[], by: Sort): Row[] {
  const copy = [...list];
  if (by === "rate") copy.sort((a, b) => b.rate - a.rate || a.name.localeCompare(b.name));
  else if (by === "name") copy.sort((a, b) => a.name.localeCompare(b.name) || a.pid - b.pid);
  else copy.sort((a, b) => a.pid - b.pid || a.name.localeCompare(b.name));
  return copy;
}

const rate = (x: number | undefined, digits = 0) =>
  x === undefined ? "-" : x.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** One screen: a title line, then the table, cut to `size`. */
export function frame(
  list: Row[],
  processes: number,
  unreadable: number,
  by: Sort,
  size: { columns: number; rows: number },
  when = new Date(),
): string {
  const title = `ipckit top  ${when.toTimeString().slice(0, 8)}  ${processes} processes, ${list.length} objects` +
    (unreadable > 0 ? `, ${unreadable} unreadable` : "") + `  sort: ${by} (s: change, q: quit)`;
  const table = columns(
    [
      ["PID", "RUNTIME", "KIND", "NAME", "STATE", "RATE/S", "MB/S", "WAKES/S", "NOW"],
      ...list.map((r) => [
        String(r.pid),
        r.runtime,
        r.kind,
        r.name,
        r.state,
        rate(r.rate),
        rate(r.mbps, 2),
        rate(r.wakes),
        r.now,
      ]),
    ],
    new Set([5, 6, 7]),
  );
  const lines = [
    title,
    "",
    ...(list.length === 0 ? ["no ipckit process keeps stats on this machine"] : table.split("\n")),
  ];
  return lines.slice(0, Math.max(1, size.rows - 1)).map((l) => l.slice(0, size.columns)).join("\n");
}

/** `ipckit top [--sort rate|name|pid] [--interval MS]`. */
export async function top(args: readonly string[]): Promise<number> {
  const opts = parse(args, SPEC);
  let by = (opts.sort ?? "rate") as Sort;
  if (!SORTS.includes(by)) throw new UsageError(`--sort must be one of ${SORTS.join(", ")}, not "${opts.sort}"`);
  const interval = opts.interval === undefined ? 1000 : Number(opts.interval);
  if (!Number.isInteger(interval) || interval < 100) {
    throw new UsageError(`--interval must be an integer of at least 100 (ms), not "${opts.interval}"`);
  }
  const rt = await runtime();
  if (rt.terminalSize() === undefined || !rt.isTerminal(0)) {
    throw new UsageError("ipckit top needs a terminal; `ipckit stats --watch` prints the same for scripts");
  }
  const io = rt.stdio();
  const encoder = new TextEncoder();
  let quit!: () => void;
  const quitting = new Promise<void>((r) => (quit = r));
  let redraw = () => {};
  rt.setRawInput(true);
  io.start({
    data: (keys) => {
      for (const k of keys) {
        if (k === 0x71 || k === 0x51 || k === 0x03) quit(); // q, Q, Ctrl-C
        else if (k === 0x73 || k === 0x53) {
          by = SORTS[(SORTS.indexOf(by) + 1) % SORTS.length]!;
          redraw();
        }
      }
    },
    end: () => quit(),
  });
  io.write(encoder.encode("\x1b[?25l")); // hide the cursor
  try {
    let previous: Sample = new Map();
    let last = 0;
    let shown: { list: Row[]; processes: number; unreadable: number } = { list: [], processes: 0, unreadable: 0 };
    redraw = () => {
      const size = rt.terminalSize() ?? { columns: 120, rows: 40 };
      const text = frame(sorted(shown.list, by), shown.processes, shown.unreadable, by, size);
      io.write(encoder.encode(`\x1b[H\x1b[2J${text.replaceAll("\n", "\r\n")}\r\n`));
    };
    for (;;) {
      const all = await stats.listStats();
      const now = performance.now();
      const r = rows(all, previous, last === 0 ? 0 : (now - last) / 1000);
      previous = r.sample;
      last = now;
      const unreadable = all.filter((p) => "error" in p).length;
      shown = { list: r.rows, processes: all.length - unreadable, unreadable };
      redraw();
      const tick = new Promise<boolean>((res) => setTimeout(() => res(false), interval));
      if (await Promise.race([tick, quitting.then(() => true)])) break;
    }
  } finally {
    io.write(encoder.encode("\x1b[H\x1b[2J\x1b[?25h")); // clear, show the cursor
    rt.setRawInput(false);
    io.close();
  }
  return 0;
}
