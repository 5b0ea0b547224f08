/**
 * What the web monitor (`cli/monitor.ts`) shows, one sample at a time: every ipckit process's objects from their
 * stats segments, with rates from the counters' differences (the same as `ipckit top`'s, `cli/top.ts`), the few
 * numbers charted per kind, and what dead processes left behind (from the owner records, `resources.ts`).
 *
 * @module
 */
import { resources, stats } from "../mod.ts";
import { shownName } from "./records.ts";
import { type Row, rows } from "./top.ts";

/** The kinds of object the page shows. */
export type ShownKind = "channel" | "pool" | "rpc" | "latency" | "lock" | "semaphore" | "nats" | "worker";

/** The numbers charted for each kind of object the page shows: rates per second first, then current values. */
export const SERIES = {
  channel: ["msg/s", "MB/s"],
  pool: ["tasks/s", "queued", "running", "workers"],
  rpc: ["calls/s", "in flight"],
  latency: ["p50 us", "p99 us"],
  lock: ["acquired/s", "waiting"],
  semaphore: ["acquired/s", "value", "waiting"],
  nats: ["connected", "channels"],
  worker: ["tasks/s", "running"],
} as const satisfies Record<ShownKind, readonly string[]>;

/** One object of one process, as the page gets it. */
export interface MonitorObject {
  /** Unique in a sample, the same from one sample to the next while the object lives. */
  key: string;
  pid: number;
  runtime: string;
  kind: ShownKind;
  name: string;
  state: "live" | "closed";
  /** The charted numbers, named as in {@linkcode SERIES}. */
  series: Record<string, number>;
  /** The counters as read. */
  counters: Record<string, number>;
  /** Shm channels between two processes: bytes sent to this side not read yet (see cli/top.ts `Row.queued`). */
  queued?: number;
}

/** An object that a dead process left behind, from its owner record. */
export interface Leftover {
  kind: string;
  name: string;
  pid: number;
  runtime: string;
  created: number;
  /** Whether `clean` can tell it is still the object recorded (else only `ipckit clean --force` removes it). */
  verified: boolean;
}

/** One sample: what the page shows at time `t`. */
export interface MonitorSample {
  /** When it was read, ms since the epoch. */
  t: number;
  processes: { pid: number; runtime: string; since: number; objects: number }[];
  unreadable: { segment: string; error: string }[];
  objects: MonitorObject[];
  leftovers: Leftover[];
}

/** Reads samples one after another, each with rates against the one before. */
export class Sampler {
  #previous = new Map<string, Record<string, number>>();
  #last = 0;
  #leftovers: Leftover[] = [];
  #leftoversAt = -Infinity;

  /** Reads a sample now. Leftovers are read again at most once a second (they cost a look at every record). */
  async read(): Promise<MonitorSample> {
    const all = await stats.listStats();
    const now = performance.now();
    const r = rows(all, this.#previous, this.#last === 0 ? 0 : (now - this.#last) / 1000);
    this.#previous = r.sample;
    this.#last = now;
    if (now - this.#leftoversAt >= 1000) {
      this.#leftovers = await leftovers();
      this.#leftoversAt = now;
    }
    const seen = new Map<string, number>();
    const objects = r.rows.filter((row) => Object.hasOwn(SERIES, row.kind)).map((row): MonitorObject => {
      const base = `${row.pid}/${row.kind}/${row.name}/${row.state}`;
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      const c = row.counters;
      const kind = row.kind as ShownKind;
      return {
        key: n === 0 ? base : `${base}/${n}`,
        pid: row.pid,
        runtime: row.runtime,
        kind,
        name: row.name,
        state: row.state as "live" | "closed",
        series: seriesOf(kind, row),
        counters: c,
        ...(row.queued === undefined ? {} : { queued: row.queued }),
      };
    });
    const processes = all.flatMap((p) =>
      "error" in p ? [] : [{ pid: p.pid, runtime: p.runtime, since: p.since, objects: p.objects.length }]
    );
    const unreadable = all.flatMap((p) => ("error" in p ? [{ segment: p.segment, error: p.error }] : []));
    return { t: Date.now(), processes, unreadable, objects, leftovers: this.#leftovers };
  }

  /** Reads the leftovers again at the next sample (after a clean). */
  forget(): void {
    this.#leftoversAt = -Infinity;
  }
}

/** The charted numbers of one object (NaN where there is nothing to chart: a latency slot with nothing timed). */
function seriesOf(kind: ShownKind, row: Row): Record<string, number> {
  const c = row.counters;
  switch (kind) {
    case "channel":
      return { "msg/s": row.rate, "MB/s": row.mbps ?? 0 };
    case "pool":
      return { "tasks/s": row.rate, queued: c.queued!, running: c.running!, workers: c.workers! };
    case "rpc":
      return { "calls/s": row.rate, "in flight": c.calls! - c.callsSettled! + c.served! - c.servedDone! };
    case "latency":
      return { "p50 us": row.p50 ?? NaN, "p99 us": row.p99 ?? NaN, "ops/s": row.rate };
    case "lock":
      return { "acquired/s": row.rate, waiting: c.waiting! };
    case "semaphore":
      return { "acquired/s": row.rate, value: c.value!, waiting: c.waiting! };
    case "nats":
      return { connected: c.connected!, channels: c.channels! };
    case "worker":
      return { "tasks/s": row.rate, running: c.running! };
  }
}

/** The objects whose owner is dead and that are still there (what `ipckit ls` counts for `ipckit clean`). */
async function leftovers(): Promise<Leftover[]> {
  const found = await resources.list().catch(() => []);
  return found.filter((r) => r.status === "dead").map((r) => ({
    kind: r.kind,
    name: shownName(r),
    pid: r.pid,
    runtime: r.runtime,
    created: r.created,
    verified: r.object === "same",
  }));
}
