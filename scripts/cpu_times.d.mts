// Types of scripts/cpu_times.mjs.

/** The machine's CPU time so far, in clock ticks: all of it, and what the hypervisor stole. */
export interface CpuTimes {
  readonly total: number;
  readonly steal: number;
}

/** Parses /proc/stat's aggregate `cpu` line; undefined when there is none, or it gives no steal. */
export function parseCpuTimes(stat: string): CpuTimes | undefined;

/** The share (0-1) of the CPU time between two readings that was stolen; undefined without both, or no time passed. */
export function stolen(before: CpuTimes | undefined, after: CpuTimes | undefined): number | undefined;
