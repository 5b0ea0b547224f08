// The machine's CPU time and what a VM's hypervisor stole of it, from /proc/stat's aggregate `cpu` line (Linux): for
// `npm test`'s summary (scripts/test.mjs) and the benchmarks' notes (bench/steal.ts). Plain JavaScript, so that the
// test runner, which runs on plain Node, can use it too.

/**
 * Parses /proc/stat's `cpu` line (user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks):
 * `total` the first eight summed (guest time is already inside user and nice), `steal` the eighth. Undefined when the
 * text has no such line, or a kernel too old to give steal.
 */
export function parseCpuTimes(stat) {
  const line = stat.match(/^cpu +([\d ]+)$/m)?.[1];
  if (line === undefined) return undefined;
  const fields = line.trim().split(/ +/).map(Number);
  if (fields.length < 8 || !fields.every(Number.isSafeInteger)) return undefined;
  return { total: fields.slice(0, 8).reduce((a, b) => a + b, 0), steal: fields[7] };
}

/** The share (0-1) of the CPU time between two readings that was stolen; undefined without both, or no time passed. */
export function stolen(before, after) {
  if (before === undefined || after === undefined) return undefined;
  const total = after.total - before.total;
  const steal = after.steal - before.steal;
  return total > 0 && steal >= 0 ? steal / total : undefined;
}
