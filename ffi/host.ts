/**
 * Which runtime this code runs on, told from `globalThis` alone. `ffi/` is below `runtimes/` and must pick its
 * loader without importing it; `runtimes/detect.ts` asks here too, so the check is written once.
 *
 * @module
 */

/**
 * The name of the current runtime: Deno and Bun are checked before Node because both also look like Node (they
 * define `process`). Synchronous; loads nothing.
 *
 * @example
 * ```ts
 * import { hostRuntime } from "./host.ts";
 * console.log(hostRuntime()); // "deno", "bun" or "node"
 * ```
 */
export function hostRuntime(): "deno" | "bun" | "node" {
  const g = globalThis as Record<string, unknown>;
  if ("Deno" in g) return "deno";
  if ("Bun" in g) return "bun";
  return "node";
}
