/**
 * How to start a script on each runtime, from any runtime: so a Deno parent can start a Bun child.
 *
 * TypeScript runs as is on Deno and Bun; Node 20 needs tsx (`node --import <tsx loader>`). JavaScript runs on plain
 * Node: give the script to `runtimeArgv(name, script)` and tsx is added only for a TypeScript file, so a compiled
 * build (the npm package) starts its children without tsx installed. `scriptPath()` finds a file next to the calling
 * module whether that module runs from its `.ts` source or compiled to `.js`.
 *
 * The TypeScript loader for Node is tsx unless `IPCKIT_TS_LOADER` names another module (a path or `file:` URL): one
 * that installs its module hooks when imported (`node --import` it; a worker thread imports it, and calls its
 * `register()` export if it has one); unset, empty or `tsx` means tsx. The test suite uses it for a lean loader of its
 * own (scripts/ts_loader.mjs).
 *
 * `IPCKIT_TS_COMPILED` may name a directory of ahead-of-time compiled copies: a TypeScript file `/a/b.ts` that has
 * one at `<dir>/a/b.mjs` runs on Node from that copy, without a loader (a loader's hooks cost about 0.3 s of CPU per
 * process). The test suite compiles the repository so (scripts/ts_mirror.mjs); a file without a copy runs through
 * the loader as before.
 *
 * Binaries are found in this order: the `IPCKIT_DENO` / `IPCKIT_BUN` / `IPCKIT_NODE` environment variables, the
 * running process itself when it is that runtime, `node_modules/.bin` above this package or the working directory
 * (the `deno` and `bun` npm packages put them there), then the bare name on `PATH`.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath, pathToFileURL } from "node:url";
import { runtimeName } from "./detect.ts";
import type { RuntimeName } from "./runtime.ts";

// No directory when loaded from a URL (JSR): then only the working directory is searched.
const here = import.meta.url.startsWith("file:") ? dirname(fileURLToPath(import.meta.url)) : undefined;

function* ancestors(start: string): Generator<string> {
  for (let dir = start;;) {
    yield dir;
    const up = dirname(dir);
    if (up === dir) return;
    dir = up;
  }
}

function findUp(rel: string): string | undefined {
  for (const start of here === undefined ? [process.cwd()] : [here, process.cwd()]) {
    for (const dir of ancestors(start)) {
      const candidate = join(dir, "node_modules", rel);
      if (existsSync(candidate)) return candidate;
    }
  }
  return undefined;
}

/** The `file:` URL of the module named by `IPCKIT_TS_LOADER`, if it is set. */
function customLoader(): string | undefined {
  const named = process.env.IPCKIT_TS_LOADER;
  if (!named || named === "tsx") return undefined;
  return named.startsWith("file:") ? named : pathToFileURL(resolve(named)).href;
}

/**
 * The `file:` URL of the TypeScript loader for `node --import` (Node 20 cannot run TypeScript alone): tsx's, or the
 * module `IPCKIT_TS_LOADER` names.
 *
 * @throws {Error} when the tsx package cannot be found.
 */
export function tsxLoader(): string {
  return customLoader() ?? tsxFile(join("dist", "loader.mjs"));
}

/** The `file:` URL of a module whose `register()` installs the TypeScript loader in a worker thread. */
export function tsxApi(): string {
  return customLoader() ?? tsxFile(join("dist", "esm", "api", "index.mjs"));
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

/** Whether a script path names JavaScript (which Node runs without tsx). */
function isJavaScript(script: string): boolean {
  return /\.[cm]?js$/.test(script);
}

/**
 * The ahead-of-time compiled copy of the TypeScript file `file` (a path or `file:` URL) under the directory
 * `IPCKIT_TS_COMPILED` names, if it is set and has one: what Node runs instead of the source, without a loader.
 */
export function compiledCopy(file: string | URL): string | undefined {
  const dir = process.env.IPCKIT_TS_COMPILED;
  if (!dir) return undefined;
  const path = typeof file === "string" && !file.startsWith("file:") ? resolve(file) : fileURLToPath(file);
  if (!/\.[cm]?ts$/.test(path)) return undefined;
  const copy = join(dir, path).replace(/\.[cm]?ts$/, ".mjs");
  return existsSync(copy) ? copy : undefined;
}

/**
 * The argv that runs a script on runtime `name`. Without `script`, the prefix for a TypeScript module: append the
 * script path and its arguments. With `script`, the whole argv for that script (append its arguments), and for a
 * JavaScript file (`.js`, `.mjs`, `.cjs`), or a TypeScript file with a compiled copy (`IPCKIT_TS_COMPILED`), Node
 * runs it without tsx.
 *
 * - deno: `deno run -A --quiet` (ipckit needs `--allow-ffi`, `--allow-net`, `--allow-run` and file access)
 * - bun: `bun`
 * - node: `node --import <tsx loader>` for TypeScript (Node 20 cannot run it alone); `node` for JavaScript
 *
 * @example
 * ```ts
 * import { runtimeArgv } from "ipckit";
 * const argv = [...runtimeArgv("bun", "./worker.ts"), "--verbose"];
 * const js = runtimeArgv("node", "./worker.js"); // [node, "./worker.js"]: no tsx needed
 * ```
 * @throws {Error} for node and a TypeScript script (or none), when the tsx package cannot be found.
 */
export function runtimeArgv(name: RuntimeName, script?: string): string[] {
  if (script !== undefined) {
    if (name !== "node") return [...runtimeArgv(name), script];
    if (isJavaScript(script)) return [runtimeBinary("node"), script];
    const copy = compiledCopy(script);
    return copy === undefined ? [...runtimeArgv(name), script] : [runtimeBinary("node"), copy];
  }
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

/**
 * The path of the file `rel` next to the module `base` (its `import.meta.url`). `rel` is written with `.ts`; when
 * the calling module was compiled to `.js`, or the `.ts` file is not there, the same name with the other extension
 * is used if it exists. So `scriptPath(import.meta.url, "./peers/echo.ts")` works from the source and from a build.
 *
 * @throws {Error} when neither file exists.
 */
export function scriptPath(base: string | URL, rel: string): string {
  // Loaded from a URL (JSR, https): only a runtime that runs URLs (Deno) can start it; there is no file to look for.
  if (!String(base).startsWith("file:")) return new URL(rel, base).href;
  const file = fileURLToPath(new URL(rel, base));
  const compiled = isJavaScript(fileURLToPath(base));
  const swap = (f: string) => f.replace(/\.([cm]?)ts$/, ".$1js");
  const candidates = compiled ? [swap(file), file] : [file, swap(file)];
  const found = candidates.find((f) => existsSync(f));
  if (found === undefined) throw new Error(`Cannot find "${rel}" next to ${String(base)}`);
  return found;
}

/**
 * The nearest directory at or above the module `base` (an `import.meta.url`) that holds a package.json; the working
 * directory when `base` is not a file (a module loaded from JSR or https).
 */
export function packageRoot(base: string | URL): string {
  if (!String(base).startsWith("file:")) return process.cwd();
  const start = dirname(fileURLToPath(base));
  for (const dir of ancestors(start)) if (existsSync(join(dir, "package.json"))) return dir;
  return start;
}
