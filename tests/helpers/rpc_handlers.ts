/**
 * The handlers of the RPC conformance suite, served in-process and by child peers of each runtime
 * (`peer.ts <transport> <address> --rpc`).
 */
import type { CallContext } from "../../mod.ts";

/** What the server saw, for the tests to query over RPC. */
const stats = { cancelled: 0, produced: 0, notified: [] as unknown[] };

export const handlers = {
  add: (a: number, b: number) => a + b,
  echo: (x: unknown) => x,
  concat: (...parts: string[]) => parts.join(""),
  /** Streams 0..n-1, counting what it produced (to check backpressure). */
  async *count(this: CallContext, n: number) {
    for (let i = 0; i < n; i++) {
      stats.produced++;
      yield i;
    }
  },
  fail(message: string) {
    const e = new RangeError(message) as RangeError & { data: unknown };
    e.data = { detail: [1, 2, 3] };
    throw e;
  },
  /** Waits `ms` or until cancelled; counts cancellations. */
  sleep(this: CallContext, ms: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve("slept"), ms);
      this.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        stats.cancelled++;
        reject(this.signal.reason);
      }, { once: true });
    });
  },
  record(x: unknown) {
    stats.notified.push(x);
  },
  stats: () => ({ ...stats }),
  reset() {
    stats.cancelled = 0;
    stats.produced = 0;
    stats.notified = [];
  },
  /** Whether Object.prototype was polluted by anything decoded so far. */
  polluted: () => ({} as Record<string, unknown>).polluted !== undefined,
};
