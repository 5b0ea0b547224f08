/**
 * The soak's tables (Markdown, one row per transport, to paste into docs/reliability.md) and the verdicts that
 * decide its exit code.
 *
 * @module
 */
import type { ChaosResult } from "./chaos.ts";
import type { SoakResult } from "./consume.ts";
import type { Leftovers } from "./run.ts";

/** A Markdown table with padded columns; `right` holds the indexes of right-aligned columns. */
export function table(rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = rows[0]!.map((_, i) => Math.max(3, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    `| ${r.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(" | ")} |`;
  const rule = `| ${widths.map((w, i) => (right.has(i) ? "-".repeat(w - 1) + ":" : "-".repeat(w))).join(" | ")} |`;
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join("\n");
}

const MiB = 1024 * 1024;
const mib = (b: number) => (b / MiB).toFixed(0);
const group = (n: number) => Math.round(n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, " ");

/** Whether a soak row failed, and why. */
export function soakVerdict(r: SoakResult): { ok: boolean; text: string } {
  const c = r.counts;
  const why: string[] = [...r.errors];
  if (c.corrupt > 0) why.push(`${c.corrupt} corrupt`);
  if (r.reliable) {
    if (c.lost > 0) why.push(`${c.lost} lost`);
    if (c.duplicated > 0) why.push(`${c.duplicated} duplicated`);
    if (c.reordered > 0) why.push(`${c.reordered} reordered`);
  }
  if (why.length > 0) return { ok: false, text: `FAIL: ${why.join("; ")}` };
  if (!r.reliable) {
    const pct = (100 * c.lost / r.expected).toFixed(1);
    const where = `${r.dropped} by the socket's highWaterMark, the rest by the kernel`;
    return { ok: true, text: `ok (reliable: false: ${pct} % lost (${where}), ${c.reordered} reordered: reported)` };
  }
  return { ok: true, text: "ok" };
}

/** The soak table. */
export function soakTable(results: readonly SoakResult[]): string {
  const rows = [[
    "transport",
    "producers -> consumer",
    "messages",
    "MB",
    "wall s",
    "msgs/s",
    "MB/s",
    "lost",
    "dup",
    "reord",
    "corrupt",
    "RSS MiB before/after/peak",
    "result",
  ]];
  for (const r of results) {
    const c = r.counts;
    const s = r.wallMs / 1000;
    rows.push([
      r.transport,
      `${[...new Set(r.producers)].join(",")} -> ${r.consumer}`,
      group(c.messages),
      (c.bytes / 1e6).toFixed(0),
      s.toFixed(1),
      s > 0 ? group(c.messages / s) : "-",
      s > 0 ? (c.bytes / 1e6 / s).toFixed(0) : "-",
      String(c.lost),
      String(c.duplicated),
      String(c.reordered),
      String(c.corrupt),
      `${mib(r.rss.before)} / ${mib(r.rss.after)} / ${mib(r.rss.peak)}`,
      soakVerdict(r).text,
    ]);
  }
  return table(rows, new Set([2, 3, 4, 5, 6, 7, 8, 9, 10]));
}

/** Whether a transport's chaos rounds passed, and why not. `boundMs`: the SIGKILL-to-error limit. */
export function chaosVerdict(r: ChaosResult, boundMs: number): { ok: boolean; text: string } {
  const why: string[] = [];
  for (const x of r.rounds) {
    if (!x.ok) why.push(`${x.kind} (${x.victim}${x.victimHosts ? " hosting" : ""}): ${x.error} ${x.note}`.trim());
    if (x.corrupt > 0) why.push(`${x.kind}: ${x.corrupt} corrupt messages before the kill`);
  }
  const max = killMax(r);
  if (max !== undefined && max > boundMs) {
    why.push(
      `SIGKILL noticed after ${max.toFixed(0)} ms: ${(max - boundMs).toFixed(0)} ms over the ${boundMs} ms bound`,
    );
  }
  return why.length > 0 ? { ok: false, text: `FAIL: ${why.join("; ")}` } : { ok: true, text: "ok" };
}

const killRounds = (r: ChaosResult) => r.rounds.filter((x) => x.kind !== "stop" && x.ok);
const datagram = (r: ChaosResult) => r.rounds.some((x) => x.note.includes("datagram"));

/** The longest SIGKILL-to-error time of a connected transport's rounds (datagram transports have none). */
function killMax(r: ChaosResult): number | undefined {
  const ms = killRounds(r).map((x) => x.ms);
  return ms.length === 0 || datagram(r) ? undefined : Math.max(...ms);
}

/** The chaos table. */
export function chaosTable(results: readonly ChaosResult[], boundMs: number): string {
  const rows = [[
    "transport",
    "survivor <- victims",
    "rounds",
    "SIGKILL -> error, max",
    "errors seen",
    "killed mid-message",
    "SIGSTOP",
    "result",
  ]];
  for (const r of results) {
    const kills = killRounds(r);
    const max = killMax(r);
    const large = r.rounds.filter((x) => x.kind === "large" && x.ok);
    const stop = r.rounds.find((x) => x.kind === "stop");
    const dg = datagram(r);
    rows.push([
      r.transport,
      `${r.survivor} <- ${[...new Set(r.rounds.map((x) => x.victim))].join(",")}`,
      String(r.rounds.length),
      dg
        ? `n/a (datagram: receive timeout after ${Math.max(0, ...kills.map((x) => x.ms)).toFixed(0)} ms)`
        : max === undefined
        ? "-"
        : `${max.toFixed(0)} ms (${kills.length} kills)`,
      [...new Set(kills.map((x) => x.error))].join(", ") || "-",
      dg ? "n/a (one datagram)" : large.length === 0 ? "-" : `${large.filter((x) => x.mid).length}/${large.length}`,
      stop === undefined
        ? "-"
        : stop.ok
        ? `${stop.error} after ${stop.ms.toFixed(0)} ms${stopNote(stop.note)}`
        : "FAIL",
      chaosVerdict(r, boundMs).text,
    ]);
  }
  return table(rows, new Set([2]));
}

const stopNote = (note: string) => note.startsWith("heartbeat") ? ` (${note})` : ", resumed, closed cleanly";

/** The leftovers section. */
export function leftoversText(l: Leftovers): string {
  const lines = [`ipckit clean removed ${l.cleaned.length} object(s) that killed processes left:`];
  for (const c of l.cleaned) lines.push(`  ${c}`);
  lines.push(
    l.left.length === 0
      ? "after it, nothing remained (registry, /dev/shm, POSIX and System V queues, files)"
      : `after it, ${l.left.length} thing(s) remained (now removed):`,
  );
  for (const x of l.left) lines.push(`  ${x}`);
  return lines.join("\n");
}

/** Minutes a soak of `target` messages per transport would take, from the measured rates (of messages sent). */
export function estimate(results: readonly SoakResult[], target: number): number {
  return results.reduce((m, r) => m + r.wallMs * target / r.expected, 0) / 60_000;
}
