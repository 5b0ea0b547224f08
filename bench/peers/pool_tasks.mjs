// The tasks of bench/pool.ts, the same for every pool (plain JavaScript: tinypool's, piscina's, workerpool's and
// poolifier's workers load it themselves; ipckit's worker imports it): `trivial` squares a number, `cpu` burns about
// 1 ms of CPU first, `bytes` answers the length of the 64 KiB array it was sent.

/** Busy for `ms` milliseconds of wall time (this thread's CPU while it runs alone). */
function burn(ms) {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x++;
  return x;
}

export const tasks = {
  trivial: (n) => n * n,
  cpu: (n) => (burn(1), n * n),
  // A pool that serializes to JSON (workerpool) delivers the array as a plain object of its bytes.
  bytes: (b) => b.byteLength ?? Object.keys(b).length,
};

/** One entry for pools that take a single function: `{ kind, arg }`. */
export default ({ kind, arg }) => tasks[kind](arg);
