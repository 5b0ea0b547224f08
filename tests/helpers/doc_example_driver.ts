/**
 * For tests/doc_examples.test.ts: runs the extracted JSDoc examples one after another in this one process (so the
 * runtime starts once, not once per example) and appends one JSON line per example to the results file:
 * `{ id, ok, ms, error?, output }`. Its arguments come in environment variables, not argv, because the examples read
 * `runtime().args()` themselves:
 *
 * - `IPCKIT_DOC_MANIFEST`: a JSON file `[{ id, path }]` of example modules, in order
 * - `IPCKIT_DOC_RESULTS`: the JSON-lines file to append to
 * - `IPCKIT_DOC_TIMEOUT`: milliseconds per example (30 000 by default)
 *
 * What an example prints with console.log is collected per example (and still printed).
 *
 * @module
 */
import { appendFileSync, readFileSync } from "node:fs";
import process from "node:process";
import { pathToFileURL } from "node:url";
import { compiledCopy } from "../../runtimes/argv.ts";
import { runtimeName } from "../../runtimes/detect.ts";
import { format } from "node:util";

interface Entry {
  id: string;
  path: string;
}

const manifest = JSON.parse(readFileSync(process.env.IPCKIT_DOC_MANIFEST!, "utf8")) as Entry[];
const resultsFile = process.env.IPCKIT_DOC_RESULTS!;
const timeout = Number(process.env.IPCKIT_DOC_TIMEOUT ?? 30_000);

let current: { id: string; output: string[]; late: string[] } | undefined;
const log = console.log.bind(console);
console.log = (...args: unknown[]) => {
  current?.output.push(format(...args));
  log(...args);
};

const describe = (e: unknown) =>
  e instanceof Error
    ? `${e.name}: ${e.message}${e.stack ? `\n${e.stack.split("\n").slice(1, 6).join("\n")}` : ""}`
    : String(e);

// An error nobody awaited belongs to the example that is running (or the one that just ran).
const stray = (e: unknown) => {
  const text = `unhandled: ${describe(e)}`;
  if (current) current.late.push(text);
  else process.stderr.write(`doc example driver: ${text}\n`);
};
process.on("unhandledRejection", stray);
process.on("uncaughtException", stray);

const node = runtimeName() === "node";
let last: { id: string } | undefined;
for (const { id, path } of manifest) {
  current = { id, output: [], late: [] };
  const t0 = performance.now();
  let error: string | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      // On Node started from a compiled copy (no TypeScript loader), the example's copy.
      import(pathToFileURL((node ? compiledCopy(path) : undefined) ?? path).href),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms`)), timeout);
      }),
    ]);
  } catch (e) {
    error = describe(e);
  } finally {
    clearTimeout(timer);
  }
  // Let a stray rejection of this example surface before the next one starts.
  await new Promise((r) => setTimeout(r, 0));
  if (current.late.length > 0) error = [error, ...current.late].filter(Boolean).join("\n");
  const ms = Math.round(performance.now() - t0);
  appendFileSync(
    resultsFile,
    JSON.stringify({ id, ok: error === undefined, ms, error, output: current.output }) + "\n",
  );
  last = current;
}
// Examples must leave nothing running; exit anyway so one that did cannot hang the test. A stray error that comes
// after the last example is reported under "(after all examples)", naming the last one.
current = { id: "(after all examples)", output: [], late: [] };
await new Promise((r) => setTimeout(r, 100));
if (current.late.length > 0) {
  const error = `after ${last?.id}: ${current.late.join("\n")}`;
  appendFileSync(resultsFile, JSON.stringify({ id: current.id, ok: false, ms: 0, error, output: [] }) + "\n");
}
process.exit(0);
