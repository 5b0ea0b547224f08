/**
 * Whether the machine's CPUs are all taken: more runnable tasks than the CPUs this process may use, for some
 * milliseconds in a row. A side of a shared-memory channel asks before it spins (`shm/idle.ts`): a spin on a crowded
 * machine burns the time slice that a runnable task, perhaps its own peer, waits for, and parking costs nothing there
 * that the spin would have saved.
 *
 * The count is the kernel's `nr_running`: the number before the slash in `/proc/loadavg` (tasks running or waiting
 * for a CPU, the reader among them), read with one `pread` of a file the process keeps open, at most once a
 * millisecond for the whole process (a wait that starts within a millisecond of the last look uses its answer).
 * One look over the CPUs is not enough: a garbage collector's or a compiler's thread runs now and then beside a pair of
 * processes that take turns on two CPUs; so it takes {@linkcode CROWDED_LOOKS} looks in a row, a millisecond or more
 * apart: the CPUs all taken for 7 ms or more.
 *
 * Measured here (2 CPUs, node-node unless said; medians of 15 rounds of 50 000 tasks, 1000 at a time): a pool's master
 * and two process workers did 445-466 k tasks/s spinning whatever the load, 477-595 k parking while crowded (Bun
 * workers 413-553 k against 543-554 k, Deno 394-405 k against 418-488 k, with 4 looks); a pair beside one CPU-bound
 * process had a p99 round trip 1.75-1.91x the Unix socket's before, 0.68-1.27x after. Parking after one look cost a
 * free pair its tail (8-byte p99 7-21 us instead of 1.2), after 4 looks now and then (deno-deno 4.4 us), after 8 not in
 * 2 runs (1.2 us).
 *
 * Where there is no `/proc/loadavg` (macOS), or it cannot be read, the machine never counts as crowded. A channel
 * between processes always asks (it has FFI); one between threads asks when FFI was loaded in its thread before the
 * channel was made (a Pool's threads load it first).
 *
 * Measured with thread pools too (Node, two worker threads, 1000 trivial tasks at a time): 496-527 k tasks/s asking,
 * 442-465 k not.
 *
 * @module
 */
import { O_CLOEXEC, O_RDONLY } from "../ffi/constants.ts";
import type { Native } from "../ffi/native.ts";

/** How long one look at the count serves, in ms. */
export const LOOK_EVERY_MS = 1;
/** How many looks in a row must find the CPUs all taken. */
export const CROWDED_LOOKS = 8;

/** Runnable tasks in the text of `/proc/loadavg` (its fourth field, `running/total`), or undefined. */
export function runnableIn(text: string): number | undefined {
  const field = text.split(" ")[3];
  const slash = field === undefined ? -1 : field.indexOf("/");
  if (slash <= 0) return undefined;
  const n = Number(field!.slice(0, slash));
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

/** Reads `/proc/loadavg` again: its text, or undefined when it cannot. */
export type LoadReader = () => string | undefined;

/** Looks at the count at most once per `LOOK_EVERY_MS`, and tells how many looks in a row found more than `cpus`. */
export class LoadWatch {
  readonly #read: LoadReader;
  #lookedAt = -Infinity;
  #running: number | undefined;
  /** Looks in a row that found more runnable tasks than the CPUs, per CPU count asked about. */
  readonly #inARow = new Map<number, { look: number; count: number }>();
  #looks = 0;

  constructor(read: LoadReader) {
    this.#read = read;
  }

  /** Runnable tasks at the last look (made now when the last one is `LOOK_EVERY_MS` old), or undefined. */
  runnable(now: number = performance.now()): number | undefined {
    if (now - this.#lookedAt >= LOOK_EVERY_MS) {
      this.#lookedAt = now;
      this.#looks++;
      const text = this.#read();
      this.#running = text === undefined ? undefined : runnableIn(text);
    }
    return this.#running;
  }

  /** Whether the last {@linkcode CROWDED_LOOKS} looks in a row found more runnable tasks than `cpus`. */
  crowded(cpus: number, now: number = performance.now()): boolean {
    const running = this.runnable(now);
    let row = this.#inARow.get(cpus);
    if (row === undefined) this.#inARow.set(cpus, row = { look: -1, count: 0 });
    if (row.look !== this.#looks) {
      row.look = this.#looks;
      row.count = running !== undefined && running > cpus ? row.count + 1 : 0;
    }
    return row.count >= CROWDED_LOOKS;
  }
}

const latin1 = new TextDecoder("latin1");
let watch: LoadWatch | undefined;

/** The process's one watch over `/proc/loadavg` (kept open), read through `ffi`. */
export function loadWatch(ffi: Native): LoadWatch {
  if (watch !== undefined) return watch;
  const text = new Uint8Array(128);
  let fd: number | undefined;
  return watch = new LoadWatch(() => {
    if (fd === undefined) fd = ffi.call.open(ffi.cstring("/proc/loadavg"), O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return undefined;
    const n = ffi.call.pread(fd, text, text.byteLength, 0);
    return n > 0 ? latin1.decode(text.subarray(0, n)) : undefined;
  });
}

/** The check `shm/idle.ts` takes: whether the machine was crowded for `cpus` at the last looks (see the module doc). */
export function crowding(ffi: Native, cpus: number): () => boolean {
  const w = loadWatch(ffi);
  return () => w.crowded(cpus);
}
