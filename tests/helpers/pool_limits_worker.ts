/**
 * Worker module for tests/pool_memory.test.ts and tests/pool_transfer.test.ts (threads and processes of every
 * runtime): buffers received, memory held on purpose, and deaths.
 */
import type { CallContext } from "../../rpc/peer.ts";
import * as pool from "../../pool/worker.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
/** The last array `made` moved. */
let lastMoved: Uint8Array | undefined;
/** What `leak` keeps for ever (until the worker is replaced). */
const kept: number[][] = [];

/** What a worker saw of a buffer argument: its class, size, and its bytes summed (to compare with the sender's). */
function seen(b: unknown) {
  const bytes = b instanceof ArrayBuffer
    ? new Uint8Array(b)
    : ArrayBuffer.isView(b)
    ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength)
    : new Uint8Array(0);
  let sum = 0;
  // Every 4096th byte and the last: enough to tell the bytes came, cheap for 64 MiB.
  for (let i = 0; i < bytes.length; i += 4096) sum = (sum + bytes[i]!) % 1_000_000_007;
  if (bytes.length > 0) sum = (sum + bytes[bytes.length - 1]!) % 1_000_000_007;
  return { type: (b as object)?.constructor?.name ?? typeof b, byteLength: bytes.byteLength, sum };
}

await pool.worker({
  /** The class, size and byte sum of each argument. */
  bytes: (...args: unknown[]) => args.map(seen),
  /** Whether a typed array and a buffer given together still share their memory here (one buffer, moved once). */
  shared(o: { buffer: ArrayBuffer; view: Float64Array }) {
    return { same: o.view.buffer === o.buffer, first: o.view[0], length: o.view.length };
  },
  /** Holds a buffer until cancelled (or `ms` passes), then says how big it was. */
  async hold(this: CallContext, b: ArrayBuffer | Uint8Array, ms: number) {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(resolve, ms);
      this.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(this.signal.reason);
      });
    });
    return b.byteLength;
  },
  /** Dies with the buffer in hand: a process exits; a thread ends with an uncaught error. */
  die(_b: unknown) {
    if (rt.env("IPCKIT_POOL_WORKER") === "process") rt.exit(1);
    setTimeout(() => {
      throw new Error("the worker thread crashes on purpose");
    });
    return new Promise(() => {});
  },
  /** Keeps `mb` MiB more of JS heap (arrays of doubles, touched), then says what this worker holds. */
  leak(mb: number) {
    for (let i = 0; i < mb; i++) kept.push(new Array<number>(131_072).fill(i + 0.5));
    return { ...rt.memoryUsage(), kept: kept.length };
  },
  /** What this worker holds now. */
  memory: () => rt.memoryUsage(),
  /**
   * Makes `n` bytes counting up from `start` and moves them back (`pool.move`); `after` says whether this side's
   * array was detached once it went (the master reads it with `detachedHere`).
   */
  made(n: number, start: number) {
    const out = new Uint8Array(n).map((_, i) => (start + i) & 255);
    lastMoved = out;
    return pool.move(out, [out.buffer]);
  },
  /** The same, async, after `ms`. */
  async madeLater(n: number, ms: number) {
    await new Promise((r) => setTimeout(r, ms));
    const out = new Uint8Array(n).fill(7);
    lastMoved = out;
    return pool.move({ out, n }, [out.buffer]);
  },
  /** Whether the last array this worker moved is detached here now (0 bytes long). */
  detachedHere: () => lastMoved === undefined ? undefined : lastMoved.byteLength === 0,
  /** A result whose transfer list is wrong: `how` says how. */
  badMove(how: string) {
    const out = new Uint8Array(8);
    if (how === "typed") return pool.move(out, [out as unknown as ArrayBuffer]);
    if (how === "twice") return pool.move(out, [out.buffer, out.buffer]);
    return pool.move(out, "nope" as unknown as ArrayBuffer[]);
  },
  /** Moves a result, then dies before the master can have taken it (a thread: its answer never comes). */
  moveAndDie(n: number) {
    const out = new Uint8Array(n);
    setTimeout(() => {
      if (rt.env("IPCKIT_POOL_WORKER") === "process") rt.exit(1);
      throw new Error("the worker thread crashes on purpose");
    });
    return new Promise(() => void out);
  },
  /** Allocates until the engine gives up (a thread past its resourceLimits ends). */
  oom() {
    const hoard: number[][] = [];
    for (;;) hoard.push(new Array<number>(131_072).fill(hoard.length + 0.5));
  },
  run: (n: number) => n * n,
});
