/**
 * A small command-line parser for the `ipckit` subcommands: `--flag`, `--option value` and `--option=value`, no
 * positional arguments. Anything else is a {@linkcode UsageError}, which `main.ts` prints with the usage and exit
 * code 2.
 *
 * @module
 */

/** A bad command line: printed with the command's usage, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** What a command accepts: each option name (without `--`) takes nothing (`"flag"`) or a value (`"value"`). */
export type Spec = Record<string, "flag" | "value">;

/** The parsed options: flags as `true`, values as strings; absent ones are missing. */
export type Parsed = Record<string, string | true>;

/**
 * Parses `args` against `spec`.
 *
 * @throws {UsageError} for an unknown option, a missing or unexpected value, or a positional argument.
 */
export function parse(args: readonly string[], spec: Spec): Parsed {
  const out: Parsed = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (!arg.startsWith("--") || arg === "--") throw new UsageError(`unexpected argument "${arg}"`);
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const kind = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (kind === undefined) throw new UsageError(`unknown option "--${name}"`);
    if (kind === "flag") {
      if (eq >= 0) throw new UsageError(`option "--${name}" takes no value`);
      out[name] = true;
    } else {
      const value = eq >= 0 ? arg.slice(eq + 1) : args[++i];
      if (value === undefined || value === "") throw new UsageError(`option "--${name}" needs a value`);
      out[name] = value;
    }
  }
  return out;
}

/**
 * A positive integer option, or `fallback` when absent.
 *
 * @throws {UsageError} when the value is not a positive integer.
 */
export function positive(parsed: Parsed, name: string, fallback: number): number {
  const v = parsed[name];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (typeof v !== "string" || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`option "--${name}" must be a positive integer, got "${String(v)}"`);
  }
  return n;
}

/**
 * A comma-separated list option whose items must be among `allowed`, or `fallback` when absent.
 *
 * @throws {UsageError} for an item not allowed.
 */
export function listOf<T extends string>(
  parsed: Parsed,
  name: string,
  allowed: readonly T[],
  fallback: readonly T[],
): T[] {
  const v = parsed[name];
  if (v === undefined) return [...fallback];
  const items = String(v).split(",").map((s) => s.trim()).filter((s) => s !== "");
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new UsageError(`option "--${name}": unknown "${item}" (expected ${allowed.join(", ")})`);
    }
  }
  if (items.length === 0) throw new UsageError(`option "--${name}" needs at least one of ${allowed.join(", ")}`);
  return [...new Set(items)] as T[];
}
