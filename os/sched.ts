/**
 * Where a peer process runs, from procfs: whether it is waiting for the very CPU this thread spins on while another
 * CPU sits idle.
 *
 * Why a channel asks: Linux places a task it wakes next to its waker when the machine looks busy (a wake-up through a
 * socket says the waker will sleep soon), and some kernels pack tasks onto few CPUs on purpose. Two processes that
 * took turns spinning on two CPUs can then end up queued on one: the woken peer waits for the CPU that this side
 * keeps spinning on, while the other CPU is idle, and every wait runs out and parks. Measured here (node-node, 8-byte
 * round trips, 2 CPUs): after a pause (a JIT compile, a log line) three runs in four fell into that state for
 * 100-300 ms, at 20-30 us a round trip instead of 0.7; with each side pinned to a CPU of its own, none did. The
 * kernel moves one of the two to the idle CPU when it sees both runnable on one CPU at a scheduler tick (4 ms at
 * 250 Hz), which a spin of 50 or 200 us rarely lasts: so a spin that finds its peer waiting here goes on for a few
 * ticks instead of giving up (`shm/ring_channel.ts`).
 *
 * Cost: three small procfs reads (a few microseconds each), made only when a spin runs out with the message it
 * sent still untaken.
 *
 * @module
 */
import { parseStat } from "./liveness.ts";

/** Reads a small procfs file: its text, `null` when it does not exist, `undefined` when it cannot tell. */
export type ProcReader = (path: string) => string | null | undefined;

/** Runnable tasks on the machine now: the count before the slash in `/proc/loadavg`, or undefined. */
export function runnableTasks(read: ProcReader): number | undefined {
  const text = read("/proc/loadavg");
  if (typeof text !== "string") return undefined;
  const running = Number(text.split(" ")[3]?.split("/")[0]);
  return Number.isSafeInteger(running) && running > 0 ? running : undefined;
}

/**
 * Whether process `peer` is runnable but queued on the CPU the calling thread runs on, while some CPU is idle (no
 * more runnable tasks than the `cpus` this process may use, the peer and this thread sharing one). False whenever
 * procfs cannot tell.
 */
export function waitsForMyCpu(read: ProcReader, peer: number, cpus: number): boolean {
  if (cpus < 2 || !Number.isSafeInteger(peer) || peer <= 0) return false;
  const theirs = stat(read, `/proc/${peer}/stat`);
  if (theirs === undefined || theirs.state !== "R" || theirs.cpu < 0) return false;
  const mine = stat(read, "/proc/thread-self/stat");
  if (mine === undefined || mine.cpu !== theirs.cpu) return false;
  const running = runnableTasks(read);
  return running !== undefined && running <= cpus;
}

function stat(read: ProcReader, path: string) {
  const text = read(path);
  return typeof text === "string" ? parseStat(text) : undefined;
}
