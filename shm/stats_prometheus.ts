/**
 * The stats segments (`shm/stats.ts`) in Prometheus's text exposition format (version 0.0.4): what `ipckit stats
 * --prometheus` prints, for node_exporter's textfile collector or any scraper. Every metric has the labels `pid`,
 * `runtime`, `name` (the object's) and `state` (`live` or `closed`); channels also `direction` (`out` or `in`).
 *
 * | metric                              | type    | what                                                      |
 * | ----------------------------------- | ------- | --------------------------------------------------------- |
 * | `ipckit_channel_messages_total`     | counter | messages sent (`direction="out"`) or received (`"in"`)    |
 * | `ipckit_channel_bytes_total`        | counter | their bytes                                               |
 * | `ipckit_channel_sleeps_total`       | counter | times this side parked, waiting for a message or for room |
 * | `ipckit_channel_wakes_total`        | counter | times this side woke its parked peer                      |
 * | `ipckit_channel_capacity_bytes`     | gauge   | the ring's size, each way                                 |
 * | `ipckit_pool_tasks_total`           | counter | tasks by `outcome`: submitted, done, failed, retried      |
 * | `ipckit_pool_restarts_total`        | counter | workers started again after dying                         |
 * | `ipckit_pool_tasks`                 | gauge   | tasks now, by `status`: queued, running                   |
 * | `ipckit_pool_workers`               | gauge   | workers ready now                                         |
 * | `ipckit_rpc_calls_total`            | counter | calls made, by `outcome`: made, failed, settled           |
 * | `ipckit_rpc_served_total`           | counter | calls served, by `outcome`: run, failed, done             |
 * | `ipckit_stats_unreadable_segments`  | gauge   | stats segments that could not be read                     |
 *
 * @module
 */
import type { ObjectStats, ProcessStats, Unreadable } from "./stats.ts";

interface Metric {
  readonly type: "counter" | "gauge";
  readonly help: string;
  readonly samples: string[];
}

/** A label value as the format wants it: backslash, double quote and newline escaped. */
function label(value: string): string {
  return value.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** A number as the format wants it. */
function number(v: number): string {
  return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf";
}

/**
 * The text of every readable segment in `all` (what {@linkcode listStats} returns), one metric family at a time.
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * const text = stats.prometheusText(await stats.listStats());
 * console.log(text.split("\n").find((l) => l.startsWith("# TYPE"))); // e.g. "# TYPE ipckit_channel_messages_total counter"
 * ```
 */
export function prometheusText(all: ReadonlyArray<ProcessStats | Unreadable>): string {
  const metrics = new Map<string, Metric>();
  const add = (name: string, type: Metric["type"], help: string, labels: string, value: number) => {
    let m = metrics.get(name);
    if (!m) metrics.set(name, m = { type, help, samples: [] });
    m.samples.push(`${labels === "" ? name : `${name}{${labels}}`} ${number(value)}`);
  };
  let unreadable = 0;
  for (const p of all) {
    if ("error" in p) {
      unreadable++;
      continue;
    }
    for (const o of p.objects) {
      const base = `pid="${p.pid}",runtime="${label(p.runtime)}",name="${label(o.name)}",state="${o.state}"`;
      samples(o, base, add);
    }
  }
  add("ipckit_stats_unreadable_segments", "gauge", "Stats segments that could not be read.", "", unreadable);
  const out: string[] = [];
  for (const [name, m] of metrics) {
    out.push(`# HELP ${name} ${m.help}`, `# TYPE ${name} ${m.type}`, ...m.samples);
  }
  return `${out.join("\n")}\n`;
}

function samples(
  o: ObjectStats,
  base: string,
  add: (name: string, type: Metric["type"], help: string, labels: string, value: number) => void,
): void {
  const c = o.counters;
  if (o.kind === "channel") {
    for (const [direction, messages, bytes] of [["out", "messagesOut", "bytesOut"], ["in", "messagesIn", "bytesIn"]]) {
      const labels = `${base},direction="${direction}"`;
      add("ipckit_channel_messages_total", "counter", "Messages sent (out) or received (in).", labels, c[messages!]!);
      add(
        "ipckit_channel_bytes_total",
        "counter",
        "Bytes of the messages sent (out) or received (in).",
        labels,
        c[bytes!]!,
      );
    }
    add("ipckit_channel_sleeps_total", "counter", "Times this side parked waiting.", base, c.sleeps!);
    add("ipckit_channel_wakes_total", "counter", "Times this side woke its parked peer.", base, c.wakes!);
    add("ipckit_channel_capacity_bytes", "gauge", "The ring's size, each way.", base, c.capacity!);
  } else if (o.kind === "pool") {
    for (const outcome of ["submitted", "done", "failed", "retried"]) {
      add("ipckit_pool_tasks_total", "counter", "Tasks by outcome.", `${base},outcome="${outcome}"`, c[outcome]!);
    }
    add("ipckit_pool_restarts_total", "counter", "Workers started again after dying.", base, c.restarts!);
    for (const status of ["queued", "running"]) {
      add("ipckit_pool_tasks", "gauge", "Tasks now, by status.", `${base},status="${status}"`, c[status]!);
    }
    add("ipckit_pool_workers", "gauge", "Workers ready now.", base, c.workers!);
  } else {
    const calls = { made: c.calls!, failed: c.callsFailed!, settled: c.callsSettled! };
    const served = { run: c.served!, failed: c.servedFailed!, done: c.servedDone! };
    for (const [outcome, v] of Object.entries(calls)) {
      add("ipckit_rpc_calls_total", "counter", "Calls made, by outcome.", `${base},outcome="${outcome}"`, v);
    }
    for (const [outcome, v] of Object.entries(served)) {
      add("ipckit_rpc_served_total", "counter", "Calls served, by outcome.", `${base},outcome="${outcome}"`, v);
    }
  }
}
