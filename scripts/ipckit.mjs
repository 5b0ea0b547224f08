#!/usr/bin/env node
// The `ipckit` command of this repository (the root package.json "bin", so `npx ipckit ls` works here): runs the
// built CLI, npm/esm/cli/main.js (`npm run build:npm`), or before a build the source, cli/main.ts, through tsx.
// The published package's "bin" is the built CLI itself; this launcher does not ship.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";

const built = fileURLToPath(new URL("../npm/esm/cli/main.js", import.meta.url));
const source = fileURLToPath(new URL("../cli/main.ts", import.meta.url));

function tsxLoader() {
  try {
    return pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href;
  } catch {
    return undefined;
  }
}

let argv;
if (existsSync(built)) {
  argv = [built];
} else {
  const loader = tsxLoader();
  if (loader === undefined || !existsSync(source)) {
    console.error("ipckit: the CLI is not built: run `npm run build:npm` first (or `npm install` to run the source)");
    process.exit(1);
  }
  argv = ["--import", loader, source];
}

// A child, not an import: the CLI runs as its own main module, and its exit code and signals are its own.
const child = spawn(process.execPath, [...argv, ...process.argv.slice(2)], { stdio: "inherit" });
// Ctrl-C reaches the child from the terminal already; other signals sent to this process are passed on.
const forward = (signal) => child.kill(signal);
process.on("SIGINT", () => {});
for (const signal of ["SIGTERM", "SIGHUP"]) process.on(signal, forward);
child.on("exit", (code, signal) => {
  if (signal === null) process.exit(code ?? 1);
  process.removeAllListeners(signal);
  process.kill(process.pid, signal); // end the same way
});
