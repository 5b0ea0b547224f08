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
// @ts-types="../scripts/cpu_times.d.mts"
import { type CpuTimes, parseCpuTimes, stolen } from "../scripts/cpu_times.mjs";

export { type CpuTimes, parseCpuTimes, stolen };

/** This machine's CPU times now (/proc/stat), or undefined where there is none (not Linux). */
export async function cpuTimes(): Promise<CpuTimes | undefined> {
  const rt = await runtime();
  return parseCpuTimes(await rt.readTextFile("/proc/stat").catch(() => ""));
}

/** A line saying how much CPU time was stolen between two readings (for a bench's output and its chart's notes). */
export function stolenNote(before: CpuTimes | undefined, after: CpuTimes | undefined): string {
  const share = stolen(before, after);
  return share === undefined
    ? "CPU time stolen by the hypervisor during the run: unknown (no /proc/stat)"
    : `CPU time stolen by the hypervisor during the run: ${(share * 100).toFixed(1)} % (/proc/stat steal)`;
}
