/**
 * How much of the machine's CPU time the hypervisor gave to other guests while a benchmark ran: the `steal` column
 * of /proc/stat's `cpu` line (Linux), as a share of all CPU time between two readings. On this VM a run can lose a
 * tenth of its CPU that way, and its figures then drift 2x from one run to the next with nothing on the machine; a
 * bench prints the share beside its figures, so that a slow run says why.
 *
 * @example
 * ```ts
 * import { cpuTimes, stolenNote } from "./steal.ts";
 *
 * const before = await cpuTimes();
 * // ... measure ...
 * console.log(stolenNote(before, await cpuTimes()));
 * ```
 *
 * @module
 */
import { runtime } from "../mod.ts";

/** The machine's CPU time so far, in clock ticks: all of it, and what the hypervisor stole. */
export interface CpuTimes {
  readonly total: number;
  readonly steal: number;
}

/**
 * Parses /proc/stat's aggregate `cpu` line (user nice system idle iowait irq softirq steal guest guest_nice); guest
 * time is already counted in user and nice, so it is not added. Undefined when the text has no such line, or a kernel
 * too old to give steal.
 */
export function parseCpuTimes(stat: string): CpuTimes | undefined {
  const line = stat.match(/^cpu +([\d ]+)$/m)?.[1];
  if (line === undefined) return undefined;
  const fields = line.trim().split(/\s+/).map(Number);
  if (fields.length < 8 || !fields.every(Number.isSafeInteger)) return undefined;
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, steal: fields[7]! };
}

/** This machine's CPU times now (/proc/stat), or undefined where there is none (not Linux). */
export async function cpuTimes(): Promise<CpuTimes | undefined> {
  const rt = await runtime();
  return parseCpuTimes(await rt.readTextFile("/proc/stat").catch(() => ""));
}

/** The share (0-1) of the CPU time between two readings that was stolen; undefined without both, or no time passed. */
export function stolen(before: CpuTimes | undefined, after: CpuTimes | undefined): number | undefined {
  if (before === undefined || after === undefined) return undefined;
  const total = after.total - before.total;
  const steal = after.steal - before.steal;
  return total > 0 && steal >= 0 ? steal / total : undefined;
}

/** A line saying how much CPU time was stolen between two readings (for a bench's output and its chart's notes). */
export function stolenNote(before: CpuTimes | undefined, after: CpuTimes | undefined): string {
  const share = stolen(before, after);
  return share === undefined
    ? "CPU time stolen by the hypervisor during the run: unknown (no /proc/stat)"
    : `CPU time stolen by the hypervisor during the run: ${(share * 100).toFixed(1)} % (/proc/stat steal)`;
}
