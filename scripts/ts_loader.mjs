// A lean TypeScript loader for Node 20, for the test suite's many Node processes and worker threads (npm test sets
// IPCKIT_TS_LOADER to this file; see runtimes/argv.ts). `node --import ./scripts/ts_loader.mjs x.ts` runs x.ts.
//
// Why not tsx, which users run: tsx costs about 0.6 s of CPU per process before the first line of the program
// (it loads its whole bundle on the main thread and again on the hooks thread), and the suite starts hundreds of
// Node processes and threads. This loader does only what ipckit's tree needs: `.ts` modules (ESM, imports written
// with `.ts`) are compiled by esbuild — the compiler tsx uses, with the same settings — and the JavaScript is kept
// in node_modules/.cache/ipckit-ts by content hash, so each file is compiled once per change, by whichever process
// meets it first. Stack traces point at the `.ts` lines (inline source maps). The tsx path stays covered: tests that
// start children without IPCKIT_TS_LOADER, and every user, go through tsx.
import { register as registerHooks } from "node:module";
import process from "node:process";

const KEY = Symbol.for("ipckit.tsLoader");

/** Installs the hooks in this thread (once; a worker thread calls it for itself). */
export function register() {
  if (globalThis[KEY]) return;
  globalThis[KEY] = true;
  process.setSourceMapsEnabled(true);
  registerHooks("./ts_hooks.mjs", import.meta.url);
}

register();
