// The module hooks of scripts/ts_loader.mjs (they run on Node's hooks thread): a `.ts` file's JavaScript comes from
// the content-addressed cache, or from esbuild on a miss (loaded only then, so a warm run never starts it).
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const cache = join(root, "node_modules", ".cache", "ipckit-ts");
// The compile settings are part of the key: a change of them (or of esbuild) is a new cache.
const SETTINGS = "esbuild-node20-esm-v1";
let esbuild;

async function compile(source, file) {
  esbuild ??= await import("esbuild");
  const out = await esbuild.transform(source, {
    loader: "ts",
    format: "esm",
    target: "node20",
    sourcemap: "inline",
    sourcefile: file,
    // tsconfig.json's target ES2022 means define semantics for class fields (as tsc and tsx compile them).
    tsconfigRaw: { compilerOptions: { useDefineForClassFields: true } },
  });
  return out.code;
}

// A relative `.ts` import from a file is that file's sibling: no need for Node's resolver (stat, realpath) on the
// hooks thread. Anything else (bare specifiers, directories, other extensions) goes to Node's.
export function resolve(specifier, context, nextResolve) {
  const parent = context.parentURL;
  if (parent?.startsWith("file:") && /^\.\.?\/.*\.ts$/.test(specifier)) {
    return { url: new URL(specifier, parent).href, format: "module", shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (!url.startsWith("file:") || !/\.m?ts$/.test(new URL(url).pathname)) return nextLoad(url, context);
  const file = fileURLToPath(url);
  const source = readFileSync(file, "utf8");
  const hash = createHash("sha1").update(SETTINGS).update("\0").update(file).update("\0").update(source).digest("hex");
  const cached = join(cache, `${hash}.js`);
  let code;
  try {
    code = readFileSync(cached, "utf8");
  } catch {
    code = await compile(source, file);
    mkdirSync(cache, { recursive: true });
    const tmp = `${cached}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, code);
    renameSync(tmp, cached); // atomic: a concurrent reader sees the whole file or none
  }
  return { format: "module", source: code, shortCircuit: true };
}
