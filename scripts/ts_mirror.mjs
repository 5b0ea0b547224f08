// The repository's TypeScript compiled once into plain ES modules, so the test suite's Node children and worker
// threads start without module hooks. Node 20 runs TypeScript only through a loader's hooks, and those cost a hooks
// thread plus a round trip per module: about 0.3 s of CPU per process, and the suite starts hundreds.
//
// `/repo/x/y.ts` compiles to `<out>/repo/x/y.mjs` (the absolute path under <out>), with
// - its relative `.ts` imports pointing at their `.mjs` copies, and other relative imports at the source files;
// - its absolute (`file:`) imports of `.ts` files that have copies pointing at those (code written at run time, such
//   as the JSDoc examples of tests/doc_examples.test.ts, compiled into the same directory);
// - `import.meta.url` kept as the source file's URL, so paths computed from it (fixtures, data files, the repository
//   root) are the same as from the source;
// - a relative `.ts` path that is a property's value (`{ node: "./node.ts" }`, the adapter tables that
//   runtimes/detect.ts and ffi/native.ts import by a computed name) pointing at its copy too. (Not symbolic links
//   `y.ts` -> `y.mjs`: Node 20's realpath stops early after the process has stat'ed a FIFO or a socket, and would
//   leave the `.ts` name.)
// runtimes/argv.ts starts the copy instead of the source when IPCKIT_TS_COMPILED names <out> (scripts/test.mjs sets
// it); a file without a copy starts through the loader as before. esbuild compiles it, with the settings of
// scripts/ts_hooks.mjs; es-module-lexer finds the import specifiers to rewrite (exactly, not by pattern: test files
// hold import statements in strings).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Directories of the repository never compiled. */
const SKIP = new Set(["node_modules", "coverage", "npm"]);
// A change of the settings, of this file's rewriting or of esbuild recompiles everything: the mirror's stamp.
const ESBUILD =
  JSON.parse(readFileSync(createRequire(import.meta.url).resolve("esbuild/package.json"), "utf8")).version;
const SETTINGS = `ts-mirror-v6 esbuild-${ESBUILD}-node20-esm`;

function* sources(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (entry.name.startsWith(".") || SKIP.has(entry.name)) continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* sources(path);
    else if (entry.isFile() && entry.name.endsWith(".ts") && !entry.name.endsWith(".d.ts")) yield path;
  }
}

/** Where the copy of the TypeScript file `file` (absolute) lives under `out`. */
export function mirrorPath(out, file) {
  return join(out, file).replace(/\.ts$/, ".mjs");
}

/**
 * Brings `out` up to date with the TypeScript files under `root`: a file is compiled again when its source is newer
 * than its copy or the settings changed. Returns how many files were compiled and how many there are.
 */
export async function buildMirror(root, out) {
  const stampFile = join(out, "stamp");
  let stamp = "";
  try {
    stamp = readFileSync(stampFile, "utf8");
  } catch {
    // a new mirror
  }
  const fresh = stamp !== SETTINGS;
  const todo = [];
  let total = 0;
  for (const file of sources(root)) {
    total++;
    const copy = mirrorPath(out, file);
    if (!fresh) {
      try {
        if (statSync(copy).mtimeMs >= statSync(file).mtimeMs) continue;
      } catch {
        // no copy yet
      }
    }
    todo.push([file, copy]);
  }
  if (todo.length > 0) {
    const esbuild = await import("esbuild");
    const lexer = await import("es-module-lexer");
    await lexer.init;
    await Promise.all(todo.map(async ([file, copy]) => {
      const source = readFileSync(file, "utf8");
      const url = pathToFileURL(file).href;
      const { code, map } = await esbuild.transform(source, {
        loader: "ts",
        format: "esm",
        target: "node20",
        sourcemap: "external",
        sourcesContent: false, // the source is beside it
        sourcefile: url,
        define: { "import.meta.url": JSON.stringify(url) },
        tsconfigRaw: { compilerOptions: { useDefineForClassFields: true } },
      });
      // The map is read only by a process with source maps enabled (the test runner's): stack traces at .ts lines.
      const js = `${rewriteImports(code, file, lexer.parse(code)[0], out)}//# sourceMappingURL=${basename(copy)}.map\n`;
      mkdirSync(dirname(copy), { recursive: true });
      const tmp = `${copy}.${process.pid}.tmp`;
      writeFileSync(`${copy}.map`, map);
      writeFileSync(tmp, js);
      renameSync(tmp, copy); // atomic: a process starting now reads the old copy or the new one
    }));
  }
  if (fresh) {
    mkdirSync(out, { recursive: true });
    writeFileSync(stampFile, SETTINGS);
  }
  return { compiled: todo.length, total };
}

/** The edit that puts `text` in place of an import's specifier. */
function specifierRange(code, imp, text) {
  // A static import's range is the bare specifier; a dynamic one's includes its quotes.
  const quoted = code[imp.start] === '"' || code[imp.start] === "'";
  return [quoted ? imp.start + 1 : imp.start, quoted ? imp.end - 1 : imp.end, text];
}

/**
 * `code` with each relative import of a `.ts` file pointing at its copy, and other relative imports at the source;
 * each absolute (`file:`) import of a `.ts` file that has a copy in `out` at that copy; and each relative `.ts` path
 * that is a property's value (a table of specifiers for a computed import) at its copy.
 */
function rewriteImports(code, file, imports, out) {
  const edits = []; // [start, end, text], the specifier without its quotes
  for (const imp of imports) {
    const spec = imp.specifier;
    if (spec?.startsWith("file:") && spec.endsWith(".ts")) {
      // An absolute import of a compiled file (code written at run time, pointed at the repository): its copy.
      const copy = mirrorPath(out, fileURLToPath(spec));
      if (existsSync(copy)) edits.push(specifierRange(code, imp, pathToFileURL(copy).href));
      continue;
    }
    if (spec === undefined || !/^\.\.?\//.test(spec)) continue; // bare, absolute, or computed
    const target = spec.endsWith(".ts") ? spec.replace(/\.ts$/, ".mjs") : pathToFileURL(join(dirname(file), spec)).href;
    edits.push(specifierRange(code, imp, target));
  }
  for (const m of code.matchAll(/([{,]\s*[\w$"']+\s*:\s*)(["'])(\.\.?\/[^"'\n]+)\.ts\2/g)) {
    const start = m.index + m[1].length + 1;
    edits.push([start, start + m[3].length + 3, `${m[3]}.mjs`]);
  }
  edits.sort((a, b) => a[0] - b[0]);
  let js = "";
  let at = 0;
  for (const [start, end, text] of edits) {
    js += code.slice(at, start) + text;
    at = end;
  }
  return js + code.slice(at);
}

/** For a quick look: `node scripts/ts_mirror.mjs <out>` builds the mirror of this repository. */
if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const root = join(dirname(new URL(import.meta.url).pathname), "..");
  const out = process.argv[2] ?? join(root, "node_modules", ".cache", "ipckit-mirror");
  const t0 = Date.now();
  const { compiled, total } = await buildMirror(root, out);
  console.log(
    `${compiled} of ${total} files compiled into ${relative(process.cwd(), out) || "."} in ${Date.now() - t0} ms`,
  );
}
