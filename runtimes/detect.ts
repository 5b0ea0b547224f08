/**
 * Finds the runtime this code runs on and loads its adapter. Deno and Bun are checked before Node because both
 * also look like Node (they define `process`). Adapters load by dynamic import: a static `import "bun:ffi"` or a
 * reference to `Deno` at load time would break the other runtimes.
 *
 * @module
 */
import { hostRuntime } from "../ffi/host.ts";
import type { Runtime, RuntimeName } from "./runtime.ts";

let cached: Promise<Runtime> | undefined;

/**
 * The name of the current runtime, without loading its adapter.
 *
 * @example
 * ```ts
 * import { runtimeName } from "ipckit/runtime";
 * console.log(runtimeName()); // "deno", "bun" or "node": synchronous, loads nothing
 * ```
 */
export function runtimeName(): RuntimeName {
  return hostRuntime();
}

/**
 * The adapter for the current runtime (loaded once).
 *
 * @example
 * ```ts
 * import { runtime } from "ipckit/runtime";
 * const rt = await runtime(); // the same object on every call
 * console.log(rt.name, rt.version, rt.pid, rt.args()); // e.g. "bun" "1.4.5" 4242 []
 * const child = rt.spawn(["true"], { stdio: "null" }); // the portable ways to spawn, listen, signal...
 * console.log(await child.exited); // { code: 0, signal: null }
 * ```
 */
export function runtime(): Promise<Runtime> {
  return (cached ??= load(runtimeName()));
}

// Specifiers in a table, not literals: a type checker for one runtime must not follow the import into another
// runtime's adapter (deno check knows no `Bun`, tsc with bun-types knows no `Deno`).
const ADAPTERS: Record<RuntimeName, string> = { deno: "./deno.ts", bun: "./bun.ts", node: "./node.ts" };

async function load(name: RuntimeName): Promise<Runtime> {
  return ((await import(ADAPTERS[name])) as { runtime: Runtime }).runtime;
}
