/**
 * Plain-text output for the `ipckit` command: aligned columns, and a progress line on stderr that is rewritten in
 * place on a terminal and printed line by line otherwise.
 *
 * @module
 */
import type { Runtime } from "../runtimes/runtime.ts";

/** Rows as aligned columns (the first row is the header); columns in `right` are right-aligned. */
export function columns(rows: readonly (readonly string[])[], right: ReadonlySet<number> = new Set()): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows
    .map((r) => r.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join("  "))
    .map((line) => line.trimEnd())
    .join("\n");
}

/** A progress indicator on stderr. */
export interface Progress {
  /** Shows `text` as the current step. */
  step(text: string): void;
  /** Removes the indicator (on a terminal) before other output. */
  clear(): void;
}

/** A progress indicator: rewritten in place when stderr is a terminal, one line per step otherwise. */
export function progress(rt: Runtime): Progress {
  const tty = rt.isTerminal(2);
  let shown = false;
  return {
    step(text) {
      if (tty) {
        rt.printError(`\r\x1b[K${text}`);
        shown = true;
      } else {
        rt.printError(`${text}\n`);
      }
    },
    clear() {
      if (shown) rt.printError("\r\x1b[K");
      shown = false;
    },
  };
}
