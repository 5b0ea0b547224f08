/**
 * The command-line flags of the benchmarks: `--name value` options and bare `--name` switches.
 *
 * @example
 * ```ts
 * import { flags } from "./args.ts";
 * const { opt, has } = flags(["--reps", "3", "--json"]);
 * console.log(opt("--reps", "5"), opt("--runtime", "node"), has("--json")); // 3 node true
 * ```
 *
 * @module
 */

/** Reads `args`: `opt(flag, default)` is the value after `flag` (or the default), `has(flag)` whether it is there. */
export function flags(
  args: readonly string[],
): { opt(flag: string, dflt: string): string; has(flag: string): boolean } {
  return {
    opt(flag, dflt) {
      const i = args.indexOf(flag);
      return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : dflt;
    },
    has: (flag) => args.includes(flag),
  };
}
