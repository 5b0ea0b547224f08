/**
 * The long fuzz run: every target of `tests/fuzz/targets.ts` (or the ones named) fed a million hostile inputs or
 * more, reporting per target the inputs tried, failures, the slowest input (its time and size) and the peak RSS.
 *
 *   npm run fuzz                         every target, 1 000 000 inputs each, on Node
 *   npm run fuzz -- --runs 10000 cbor    one target, fewer inputs
 *   deno run -A scripts/fuzz.ts / bun scripts/fuzz.ts   the same on Deno or Bun
 *
 * Exits 1 when any target broke its contract (the seed and the shrunk input are printed).
 */
import fc from "fast-check";
import { TARGETS } from "../tests/fuzz/targets.ts";

const argv = (globalThis as { process?: { argv: string[] } }).process?.argv.slice(2) ?? [];
let runs = 1_000_000;
const names: string[] = [];
for (let i = 0; i < argv.length; i++) {
  if (argv[i] === "--runs") runs = Number(argv[++i]);
  else names.push(argv[i]!);
}
const chosen = names.length > 0 ? names : Object.keys(TARGETS);
for (const n of chosen) {
  if (!TARGETS[n]) {
    console.error(`fuzz: no target "${n}" (targets: ${Object.keys(TARGETS).join(", ")})`);
    throw new Error("unknown target");
  }
}

const mem = (globalThis as unknown as { process: { memoryUsage(): { rss: number } } }).process;
const rss = () => mem.memoryUsage().rss;
const CHUNK = 10_000;

/** A short description of an input: its size where it has one. */
function sizeOf(input: unknown): string {
  if (input instanceof Uint8Array) return `${input.byteLength} bytes`;
  if (Array.isArray(input)) {
    const bytes = input.reduce((n: number, x) => n + (x instanceof Uint8Array ? x.byteLength : 0), 0);
    return `${input.length} parts, ${bytes} bytes`;
  }
  if (typeof input === "string") return `${input.length} chars`;
  const text = JSON.stringify(input, (_, v) => v instanceof Uint8Array ? `<${v.byteLength} bytes>` : v) ?? "";
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

let failed = false;
const rows: string[][] = [["target", "inputs", "failed", "slowest", "slowest input", "peak RSS", "time"]];
for (const name of chosen) {
  const target = await TARGETS[name]!();
  const seed = Date.now() ^ 0xf022;
  let slowest = 0;
  let slowestInput = "";
  let peak = rss();
  let tried = 0;
  const t0 = performance.now();
  let failure: string | undefined;
  try {
    for (let done = 0; done < runs && failure === undefined; done += CHUNK) {
      const n = Math.min(CHUNK, runs - done);
      const result = await fc.check(
        fc.asyncProperty(target.inputs, async (input) => {
          const t = performance.now();
          await target.run(input);
          const took = performance.now() - t;
          tried++;
          if (took > slowest) {
            slowest = took;
            slowestInput = sizeOf(input);
          }
        }),
        { numRuns: n, seed: seed + done, endOnFailure: true },
      );
      peak = Math.max(peak, rss());
      if (result.failed) {
        const error = result.errorInstance as Error | undefined;
        failure = `${fc.defaultReportMessage(result) ?? "failed"}\n${error?.stack ?? String(error)}`;
      }
    }
  } finally {
    await target.close?.();
  }
  const time = ((performance.now() - t0) / 1000).toFixed(1) + " s";
  rows.push([
    name,
    String(tried),
    failure ? "1" : "0",
    `${slowest.toFixed(2)} ms`,
    slowestInput,
    `${(peak / 2 ** 20).toFixed(0)} MiB`,
    time,
  ]);
  console.log(
    `${name}: ${tried} inputs, slowest ${slowest.toFixed(2)} ms (${slowestInput}), peak RSS ${
      (peak / 2 ** 20).toFixed(0)
    } MiB, ${time}`,
  );
  if (failure) {
    failed = true;
    console.error(`${name} FAILED:\n${failure}`);
  }
}

const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
console.log("\n" + rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ")).join("\n"));
if (failed) (globalThis as unknown as { process: { exitCode: number } }).process.exitCode = 1;
