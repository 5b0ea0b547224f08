/**
 * Live counters of every ipckit process on this machine: each keeps them in a shared memory segment of its own
 * (`shm/stats.ts` has the layout), written with plain stores as messages pass, readable by anyone while it runs.
 * `ipckit stats` prints them. Stats are on by default; `IPCKIT_STATS=off` (or {@linkcode setStats}) turns them off.
 *
 * @example
 * ```ts
 * import { runtime, shm, stats } from "ipckit";
 * stats.setStats(true); // on by default, unless IPCKIT_STATS=off
 * const [a, handle] = shm.pair();
 * const b = shm.fromHandle(handle);
 * await a.send(new Uint8Array(3));
 * await b.receive();
 * await new Promise((r) => setTimeout(r, 500)); // the segment is made in the background
 * const me = (await stats.listStats()).find((p) => "pid" in p && p.pid === (await runtime()).pid);
 * const sent = me && "objects" in me ? me.objects.find((o) => o.name === "thread pair, side 0") : undefined;
 * console.log(sent?.counters.messagesOut, sent?.counters.bytesOut); // 1 3
 * await a.close();
 * await b.close();
 * ```
 *
 * @module
 */
export {
  COUNTERS,
  listStats,
  type ObjectStats,
  type ProcessStats,
  readStats,
  setStats,
  STATS_VERSION,
  type StatsKind,
  type Unreadable,
} from "./shm/stats.ts";
export {
  bucketCeilingUs,
  bucketFloorUs,
  LATENCY_BUCKETS,
  type LatencySummary,
  quantile,
  SAMPLE_EVERY,
} from "./shm/stats_latency.ts";
export { prometheusText } from "./shm/stats_prometheus.ts";
