/**
 * How to start a TypeScript script on each runtime, from any runtime: so a Deno parent can start a Bun child.
 *
 * Binaries are found in this order: the `IPCKIT_DENO` / `IPCKIT_BUN` / `IPCKIT_NODE` environment variables, the
 * running process itself when it is that runtime, `node_modules/.bin` above this package or the working directory
 * (the `deno` and `bun` npm packages put them there), then the bare name on `PATH`.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runtimeName } from "./detect.ts";
import type { RuntimeName } from "./runtime.ts";

const here = dirname(fileURLToPath(import.meta.url));

function* ancestors(start: string): Generator<string> {
  for (let dir = start;;) {
    yield dir;
    const up = dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

function findUp(rel: string): string | undefined {
  for (const start of [here, process.cwd()]) {
    for (const dir of ancestors(start)) {
      const candidate = join(dir, "node_modules", rel);
      if (existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

/**
 * The `file:` URL of tsx's loader, for `node --import` (Node 20 cannot run TypeScript alone).
 *
 * @throws {Error} when the tsx package cannot be found.
 */
export function tsxLoader(): string {
  return tsxFile(join("dist", "loader.mjs"));
}

/** The `file:` URL of tsx's ESM API (`register()`), for worker threads. */
export function tsxApi(): string {
  return tsxFile(join("dist", "esm", "api", "index.mjs"));
}

function tsxFile(rel: string): string {
  const file = findUp(join("tsx", rel));
  if (!file) throw new Error("Cannot run TypeScript on node: the tsx package is not installed");
  return pathToFileURL(file).href;
}

const ENV: Record<RuntimeName, string> = { deno: "IPCKIT_DENO", bun: "IPCKIT_BUN", node: "IPCKIT_NODE" };
const cache = new Map<RuntimeName, string[]>();

/** The path of a runtime's executable. */
export function runtimeBinary(name: RuntimeName): string {
  const fromEnv = process.env[ENV[name]];
  if (fromEnv) return fromEnv;
  if (runtimeName() === name) return process.execPath;
  return findUp(join(".bin", name)) ?? name;
}

/**
 * The argv prefix that runs a TypeScript module on runtime `name`; append the script path and its arguments.
 *
 * - deno: `deno run -A --quiet` (ipckit needs `--allow-ffi`, `--allow-net`, `--allow-run` and file access)
 * - bun: `bun`
 * - node: `node --import <tsx loader>` (Node 20 cannot run TypeScript alone)
 *
 * @example
 * ```ts
 * import { runtimeArgv } from "ipckit";
 * const argv = [...runtimeArgv("bun"), "./worker.ts"];
 * ```
 * @throws {Error} for node, when the tsx package cannot be found.
 */
export function runtimeArgv(name: RuntimeName): string[] {
  const hit = cache.get(name);
  if (hit) return [...hit];
  let argv: string[];
  switch (name) {
    case "deno":
      argv = [runtimeBinary("deno"), "run", "-A", "--quiet"];
      break;
    case "bun":
      argv = [runtimeBinary("bun")];
      break;
    case "node":
      argv = [runtimeBinary("node"), "--import", tsxLoader()];
      break;
  }
  cache.set(name, argv);
  return [...argv];
}
