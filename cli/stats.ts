/**
 * `ipckit stats`: the live counters of every ipckit process on this machine, read from their stats segments
 * (`shm/stats.ts`), once or every second (`--watch`); `--json` prints one JSON array per sample, for scripts, and
 * `--prometheus` the Prometheus text format (`shm/stats_prometheus.ts`).
 *
 * @module
 */
import { stats } from "../mod.ts";
import { parse, type Spec, UsageError } from "./args.ts";
import { columns } from "./format.ts";
import { age } from "./records.ts";

const SPEC: Spec = { json: "flag", prometheus: "flag", watch: "flag", interval: "value" };

/** The counters of one object, shortly: `messagesOut=12 bytesOut=96 ...`, the zero ones left out. */
export function shownCounters(counters: Record<string, number>): string {
  return Object.entries(counters).filter(([, v]) => v !== 0).map(([k, v]) => `${k}=${v}`).join(" ") || "-";
}

/** A time in microseconds, shortly: `3.1us`, `61us`, `1.2ms`, `2.5s`. */
export function shownTime(us: number): string {
  if (Number.isNaN(us)) return "-";
  if (us < 10) return `${us.toFixed(1)}us`;
  if (us < 1000) return `${Math.round(us)}us`;
  if (us < 1e4) return `${(us / 1000).toFixed(1)}ms`;
  if (us < 1e6) return `${Math.round(us / 1000)}ms`;
  return `${(us / 1e6).toFixed(us < 1e7 ? 1 : 0)}s`;
}

/** An object's counters, shortly; a latency slot's with the p50 and p99 of its timed operations. */
function shownObject(o: stats.ObjectStats, now = Date.now()): string {
  if (o.kind === "lock") {
    const { heldSince, longestHoldUs, ...counters } = o.counters;
    const held = heldSince ? ` heldFor=${shownTime((now - heldSince!) * 1000)}` : "";
    const longest = longestHoldUs ? ` longestHold=${shownTime(longestHoldUs)}` : "";
    return `${shownCounters(counters)}${held}${longest}`;
  }
  const { sumUs: _, ...counters } = o.counters;
  if (o.kind !== "latency" || !o.buckets) return shownCounters(o.counters);
  const timed = o.buckets.reduce((a, b) => a + b, 0);
  const text = shownCounters(counters);
  if (timed === 0) return text;
  return `${text} p50=${shownTime(stats.quantile(o.buckets, 0.5))} p99=${shownTime(stats.quantile(o.buckets, 0.99))}`;
}

/** The text of one sample: a table per process, and the segments that could not be read. */
export function render(all: Array<stats.ProcessStats | stats.Unreadable>, now = Date.now()): string {
  if (all.length === 0) return "no ipckit process keeps stats on this machine";
  const out: string[] = [];
  for (const p of all) {
    if ("error" in p) {
      out.push(`${p.segment}: unreadable: ${p.error}`, "");
      continue;
    }
    out.push(`pid ${p.pid} (${p.runtime}), up ${age(p.since, now)}, ${p.objects.length} objects`);
    const rows = [["kind", "name", "state", "counters"]];
    for (const o of p.objects) rows.push([o.kind, o.name, o.state, shownObject(o, now)]);
    if (p.objects.length > 0) out.push(columns(rows));
    out.push("");
  }
  return out.join("\n").trimEnd();
}

/** `ipckit stats [--json | --prometheus] [--watch] [--interval MS]`. */
export async function statsCommand(args: readonly string[]): Promise<number> {
  const opts = parse(args, SPEC);
  if (opts.json && opts.prometheus) throw new UsageError("--json and --prometheus: choose one");
  const interval = opts.interval === undefined ? 1000 : Number(opts.interval);
  if (!Number.isInteger(interval) || interval < 100) {
    throw new UsageError(`--interval must be an integer of at least 100 (ms), not "${opts.interval}"`);
  }
  for (;;) {
    const all = await stats.listStats();
    if (opts.prometheus) console.log(stats.prometheusText(all).trimEnd());
    else console.log(opts.json ? JSON.stringify(all) : render(all));
    if (!opts.watch) return 0;
    await new Promise((r) => setTimeout(r, interval));
    if (!opts.json) console.log("");
  }
}
