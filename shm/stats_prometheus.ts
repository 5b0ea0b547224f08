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
 * | `ipckit_channel_capacity_bytes`     | gauge   | the ring's size, each way (shm)                           |
 * | `ipckit_channel_errors_total`       | counter | ends by an error (a broken frame, a silent peer...)       |
 * | `ipckit_channel_credit_bytes`       | gauge   | a NATS channel: bytes it may still send before a grant    |
 * | `ipckit_channel_lost_total`         | counter | a shm collector: records skipped, their producer died;    |
 * |                                     |         | a shm subscriber: messages missed by lagging              |
 * | `ipckit_pool_tasks_total`           | counter | tasks by `outcome`: submitted, done, failed, retried      |
 * | `ipckit_pool_restarts_total`        | counter | workers started again after dying                         |
 * | `ipckit_pool_tasks`                 | gauge   | tasks now, by `status`: queued, running                   |
 * | `ipckit_pool_workers`               | gauge   | workers ready now                                         |
 * | `ipckit_rpc_calls_total`            | counter | calls made, by `outcome`: made, failed, settled           |
 * | `ipckit_rpc_served_total`           | counter | calls served, by `outcome`: run, failed, done             |
 * | `ipckit_operations_total`           | counter | timed operations (latency slots), by `outcome`: begun,    |
 * |                                     |         | failed                                                    |
 * | `ipckit_latency_seconds`            | histogram | how long the timed ones took (one in 8 is timed):       |
 * |                                     |         | `_bucket{le}` (2 us doubling to 0.52 s, then +Inf),       |
 * |                                     |         | `_sum`, `_count`                                          |
 * | `ipckit_lock_acquisitions_total`    | counter | an observed mutex taken by this process                   |
 * | `ipckit_lock_contended_total`       | counter | of those, the ones that waited                            |
 * | `ipckit_lock_owner_died_total`      | counter | taken over from an owner that died holding it             |
 * | `ipckit_lock_gave_up_total`         | counter | waits that timed out or were aborted                      |
 * | `ipckit_lock_waiting`               | gauge   | callers of this process waiting now                       |
 * | `ipckit_lock_holder_thread`         | gauge   | the thread of this process holding it (tid), 0 for none   |
 * | `ipckit_lock_held_since_seconds`    | gauge   | when it took it (Unix time), 0 when none here holds it    |
 * | `ipckit_lock_longest_hold_seconds`  | gauge   | the longest hold by this process                          |
 * | `ipckit_semaphore_acquisitions_total` | counter | permits taken by this process (calls)                   |
 * | `ipckit_semaphore_contended_total`  | counter | of those, the ones that waited                            |
 * | `ipckit_semaphore_gave_up_total`    | counter | waits that timed out or were aborted                      |
 * | `ipckit_semaphore_releases_total`   | counter | permits given back by this process (calls)                |
 * | `ipckit_semaphore_waiting`          | gauge   | callers of this process waiting now                       |
 * | `ipckit_semaphore_value`            | gauge   | the count when this process last changed it               |
 * | `ipckit_nats_connected`             | gauge   | 1 while the NATS link is connected                        |
 * | `ipckit_nats_disconnects_total`     | counter | times it dropped                                          |
 * | `ipckit_nats_reconnects_total`      | counter | times it came back                                        |
 * | `ipckit_nats_channels`              | gauge   | channels on it now                                        |
 * | `ipckit_worker_state`               | gauge   | a pool's worker slot: 0 none, 1 starting, 2 ready,        |
 * |                                     |         | 3 draining, 4 stopping, 5 dead (label `name`: pool + slot) |
 * | `ipckit_worker_tasks`               | gauge   | tasks running on it now                                   |
 * | `ipckit_worker_tasks_done_total`    | counter | tasks its current worker finished                         |
 * | `ipckit_worker_restarts_total`      | counter | times the slot's worker was started again                 |
 * | `ipckit_stats_unreadable_segments`  | gauge   | stats segments that could not be read                     |
 *
 * @module
 */
import type { ObjectStats, ProcessStats, Unreadable } from "./stats.ts";
import { bucketCeilingUs } from "./stats_latency.ts";

interface Metric {
  readonly type: "counter" | "gauge" | "histogram";
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
    // A histogram's samples (_bucket, _sum, _count) are one family, named without the suffix.
    const family = type === "histogram" ? name.replace(/_(bucket|sum|count)$/, "") : name;
    let m = metrics.get(family);
    if (!m) metrics.set(family, m = { type, help, samples: [] });
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

/** Adds one sample: a histogram's `_bucket`, `_sum` and `_count` go to the family without the suffix. */
type Add = (name: string, type: Metric["type"], help: string, labels: string, value: number) => void;

function samples(o: ObjectStats, base: string, add: Add): void {
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
    add("ipckit_channel_errors_total", "counter", "Ends by an error.", base, c.errors ?? 0);
    add("ipckit_channel_credit_bytes", "gauge", "Bytes this side may still send (NATS credit).", base, c.credit ?? 0);
    add(
      "ipckit_channel_lost_total",
      "counter",
      "Records a shm collector skipped because their producer died; messages a shm subscriber missed by lagging.",
      base,
      c.lost ?? 0,
    );
  } else if (o.kind === "pool") {
    for (const outcome of ["submitted", "done", "failed", "retried"]) {
      add("ipckit_pool_tasks_total", "counter", "Tasks by outcome.", `${base},outcome="${outcome}"`, c[outcome]!);
    }
    add("ipckit_pool_restarts_total", "counter", "Workers started again after dying.", base, c.restarts!);
    for (const status of ["queued", "running"]) {
      add("ipckit_pool_tasks", "gauge", "Tasks now, by status.", `${base},status="${status}"`, c[status]!);
    }
    add("ipckit_pool_workers", "gauge", "Workers ready now.", base, c.workers!);
  } else if (o.kind === "lock") {
    add("ipckit_lock_acquisitions_total", "counter", "Times this process took the mutex.", base, c.acquired!);
    add("ipckit_lock_contended_total", "counter", "Of those, the ones that waited.", base, c.contended!);
    add("ipckit_lock_owner_died_total", "counter", "Taken over from an owner that died.", base, c.ownerDied!);
    add("ipckit_lock_gave_up_total", "counter", "Waits that timed out or were aborted.", base, c.gaveUp!);
    add("ipckit_lock_waiting", "gauge", "Callers of this process waiting now.", base, c.waiting!);
    add("ipckit_lock_holder_thread", "gauge", "The thread of this process holding it, 0 for none.", base, c.holder!);
    add(
      "ipckit_lock_held_since_seconds",
      "gauge",
      "When that thread took it (Unix time), 0.",
      base,
      c.heldSince! / 1000,
    );
    add("ipckit_lock_longest_hold_seconds", "gauge", "The longest hold by this process.", base, c.longestHoldUs! / 1e6);
  } else if (o.kind === "semaphore") {
    add("ipckit_semaphore_acquisitions_total", "counter", "Acquisitions by this process.", base, c.acquired!);
    add("ipckit_semaphore_contended_total", "counter", "Of those, the ones that waited.", base, c.contended!);
    add("ipckit_semaphore_gave_up_total", "counter", "Waits that timed out or were aborted.", base, c.gaveUp!);
    add("ipckit_semaphore_releases_total", "counter", "Releases by this process.", base, c.released!);
    add("ipckit_semaphore_waiting", "gauge", "Callers of this process waiting now.", base, c.waiting!);
    add("ipckit_semaphore_value", "gauge", "The count when this process last changed it.", base, c.value!);
  } else if (o.kind === "nats") {
    add("ipckit_nats_connected", "gauge", "1 while the NATS link is connected.", base, c.connected!);
    add("ipckit_nats_disconnects_total", "counter", "Times the NATS link dropped.", base, c.disconnects!);
    add("ipckit_nats_reconnects_total", "counter", "Times the NATS link came back.", base, c.reconnects!);
    add("ipckit_nats_channels", "gauge", "Channels on the NATS link now.", base, c.channels!);
  } else if (o.kind === "worker") {
    add("ipckit_worker_state", "gauge", "0 none, 1 starting, 2 ready, 3 draining, 4 stopping, 5 dead.", base, c.state!);
    add("ipckit_worker_tasks", "gauge", "Tasks running on the worker now.", base, c.running!);
    add("ipckit_worker_tasks_done_total", "counter", "Tasks the slot's current worker finished.", base, c.done!);
    add("ipckit_worker_restarts_total", "counter", "Times the slot's worker was started again.", base, c.restarts!);
  } else if (o.kind === "latency") {
    for (const [outcome, v] of [["begun", c.count!], ["failed", c.failed!]] as const) {
      add("ipckit_operations_total", "counter", "Timed operations, by outcome.", `${base},outcome="${outcome}"`, v);
    }
    const help = "How long the timed operations took (one in 8 is timed).";
    let below = 0;
    const buckets = o.buckets ?? [];
    buckets.forEach((n, k) => {
      below += n;
      const le = bucketCeilingUs(k);
      const bound = le === Infinity ? "+Inf" : String(le / 1e6);
      add("ipckit_latency_seconds_bucket", "histogram", help, `${base},le="${bound}"`, below);
    });
    add("ipckit_latency_seconds_sum", "histogram", help, base, c.sumUs! / 1e6);
    add("ipckit_latency_seconds_count", "histogram", help, base, below);
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
