/**
 * `ipckit ls` and `ipckit clean`: the objects ipckit created, from the owner records (`resources.ts`).
 *
 * @module
 */
import * as resources from "../resources.ts";
import type { Resource } from "../resources.ts";
import { parse, type Spec } from "./args.ts";
import { columns } from "./format.ts";

const LS_SPEC: Spec = { json: "flag", all: "flag" };
const CLEAN_SPEC: Spec = { "dry-run": "flag", force: "flag", json: "flag" };

/** How long ago `t` was, shortly: `42s`, `7m`, `3h`, `12d`. */
export function age(t: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}

/** How a resource's name is shown: System V queues by id and key. */
export function shownName(r: Resource): string {
  if (r.kind !== "sysv") return r.name;
  const key = r.key === 0 || r.key === undefined ? "private" : `key 0x${(r.key >>> 0).toString(16).padStart(8, "0")}`;
  return `id ${r.id} (${key})`;
}

/**
 * A resource's status as the table shows it: `dead?` for a dead owner's object that cannot be verified, `replaced`
 * for a name that another object took (a stale record).
 */
export function shownStatus(r: Resource): string {
  if (r.object === "replaced") return "replaced";
  return r.object === "unverified" && r.status === "dead" ? "dead?" : r.status;
}

/** Where the records are; prints why there are none when they are off. */
async function registry(): Promise<string | undefined> {
  const where = await resources.location();
  if (where.dir === undefined) console.error(`ipckit: no records to read: ${where.reason}`);
  return where.dir;
}

/** `ipckit ls`: a table of recorded objects (or JSON). */
export async function ls(args: readonly string[]): Promise<number> {
  const opts = parse(args, LS_SPEC);
  const dir = await registry();
  const found = dir === undefined ? [] : await resources.list({ dir, all: opts.all === true });
  if (opts.json) {
    console.log(JSON.stringify(found, null, 2));
    return 0;
  }
  if (dir === undefined) return 0;
  if (found.length === 0) {
    console.log(`no ipckit objects recorded in ${dir}`);
    return 0;
  }
  const now = Date.now();
  console.log(`records in ${dir}\n`);
  console.log(columns(
    [
      ["KIND", "NAME", "PID", "RUNTIME", opts.all ? "STATUS" : "OWNER", "AGE"],
      ...found.map((r) => [r.kind, shownName(r), String(r.pid), r.runtime, shownStatus(r), age(r.created, now)]),
    ],
    new Set([2, 5]),
  ));
  const dead = found.filter((r) => r.status === "dead" && r.object === "same").length;
  if (dead > 0) console.log(`\n${dead} object(s) of dead processes: \`ipckit clean\` removes them`);
  const unverified = found.filter((r) => r.status === "dead" && r.object === "unverified").length;
  if (unverified > 0) {
    console.log(
      `\n${unverified} object(s) of dead processes marked "?" cannot be told from another program's object of the ` +
        "same name (their records hold no identity, or they cannot be examined): `ipckit clean` leaves them, " +
        "`ipckit clean --force` removes them",
    );
  }
  return 0;
}

/** `ipckit clean`: removes what dead processes left, and stale records. */
export async function clean(args: readonly string[]): Promise<number> {
  const opts = parse(args, CLEAN_SPEC);
  const dryRun = opts["dry-run"] === true;
  const force = opts.force === true;
  const dir = await registry();
  const report: resources.CleanReport = dir === undefined
    ? { removed: [], dropped: [], failed: [], kept: [], unverified: [] }
    : await resources.clean({ dir, dryRun, force });
  if (opts.json) {
    console.log(JSON.stringify({ dryRun, ...report }, null, 2));
    return report.failed.length > 0 ? 1 : 0;
  }
  if (dir === undefined) return 0;
  const verb = dryRun ? "would remove" : "removed";
  for (const r of report.removed) console.log(`${verb} ${r.kind} ${shownName(r)} (pid ${r.pid} ${r.runtime}, dead)`);
  for (const r of report.dropped) {
    const why = r.object === "replaced" ? "another object has that name now: left alone" : "already gone";
    console.log(`${dryRun ? "would drop" : "dropped"} stale record of ${r.kind} ${shownName(r)} (${why})`);
  }
  for (const r of report.unverified) {
    console.log(
      `left ${r.kind} ${shownName(r)} (pid ${r.pid} ${r.runtime}, dead) alone: it cannot be told from another ` +
        "program's object of that name (`--force` removes it)",
    );
  }
  for (const { resource: r, error } of report.failed) {
    console.error(`could not remove ${r.kind} ${shownName(r)}: ${error}`);
  }
  if (report.removed.length + report.dropped.length + report.failed.length + report.unverified.length === 0) {
    console.log("nothing to clean");
  }
  if (report.kept.length > 0) console.log(`left ${report.kept.length} object(s) of live processes alone`);
  return report.failed.length > 0 ? 1 : 0;
}
