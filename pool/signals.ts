/**
 * The master's signal handling, shared by every pool created with `signals: true`: one handler per signal for the
 * whole process. SIGTERM and SIGINT drain every such pool (each bounded by its `drainTimeout`), then exit with
 * 128 + the signal number, as the default action would have; a second such signal exits at once. SIGHUP reloads
 * the workers of every pool (a rolling restart). Handlers are removed when the last pool closes.
 *
 * @module
 */
import { SIGHUP, SIGINT, SIGTERM } from "../ffi/constants.ts";
import { runtime } from "../runtimes/detect.ts";
import type { Runtime, SignalName } from "../runtimes/runtime.ts";

interface Registered {
  drain(): Promise<void>;
  reload(): Promise<void>;
}

const pools = new Map<object, Registered>();
let installed: Disposable[] = [];
let draining = false;
const NUMBERS: Partial<Record<SignalName, number>> = { SIGHUP, SIGINT, SIGTERM };

/** Registers a pool; dispose the result when the pool closes. */
export function installSignals(pool: object, actions: Registered): Disposable {
  pools.set(pool, actions);
  if (installed.length === 0) void install();
  return {
    [Symbol.dispose]() {
      pools.delete(pool);
      if (pools.size === 0) uninstall();
    },
  };
}

async function install(): Promise<void> {
  const rt = await runtime();
  if (pools.size === 0 || installed.length > 0) return;
  installed = [
    rt.onSignal("SIGTERM", () => void drain(rt, "SIGTERM")),
    rt.onSignal("SIGINT", () => void drain(rt, "SIGINT")),
    rt.onSignal("SIGHUP", () => {
      for (const p of pools.values()) p.reload().catch(() => {});
    }),
  ];
}

function uninstall(): void {
  for (const d of installed) d[Symbol.dispose]();
  installed = [];
}

async function drain(rt: Runtime, signal: SignalName): Promise<void> {
  const code = 128 + (NUMBERS[signal] ?? SIGTERM);
  if (draining) rt.exit(code); // asked twice: stop waiting
  draining = true;
  await Promise.allSettled([...pools.values()].map((p) => p.drain()));
  rt.exit(code);
}
