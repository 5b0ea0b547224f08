/**
 * Builds the npm package with tsc into dnt's layout (dnt itself is published only on JSR):
 *
 * ```text
 * <out>/esm/**.js, .d.ts       ES modules (esm/package.json: {"type": "module"})
 * <out>/script/**.js, .d.ts    CommonJS   (script/package.json: {"type": "commonjs"})
 * <out>/esm/web/, script/web/  the web monitor's page, as it is (cli/monitor finds it at ../web/ from its module)
 * <out>/package.json           from the root package.json; one export per deno.json export, import and require
 * <out>/README.md, LICENSE
 * ```
 *
 * Usage (Node, Deno or Bun):
 *
 * ```sh
 * npm run build:npm [-- --out <dir>] [--check]
 * deno run -A scripts/build_npm.ts --out /tmp/ipckit-npm
 * bun scripts/build_npm.ts
 * ```
 *
 * `--out` defaults to `npm/` (emptied first). `--check` then runs publint on the package and
 * `@arethetypeswrong/cli` on its tarball. Type errors are `npm run check`'s job: the build emits with `noCheck`,
 * which also lets the Deno adapters (that tsc has no types for) compile. The build fails when a relative import in
 * the output does not resolve, when a file from tests/, bench/, examples/ or scripts/ would ship, or when the
 * CommonJS output keeps an `import.meta` other than `import.meta.url` (which it shims).
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve, sep } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** The repository root. */
export const ROOT: string = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** Directories whose files never ship. */
const NOT_SHIPPED = ["tests", "bench", "examples", "scripts", "npm", "coverage", "node_modules"];

/** Directories of files that ship as they are, beside the compiled modules of each module system (not code). */
const ASSETS = ["web"];

/** Directories that ship as they are at the package's top: the native peers' C header and Python module. */
const NATIVE = ["include", "python"];

/** The npm `bin` commands: command name -> the export whose ESM module it runs. */
const BIN: Record<string, string> = { ipckit: "./cli" };

/** What the CommonJS output has instead of `import.meta.url`. */
const CJS_IMPORT_META_URL = `require("node:url").pathToFileURL(__filename).href`;

/** The fields of the root package.json copied as they are. */
const COPIED = [
  "name",
  "version",
  "description",
  "keywords",
  "homepage",
  "bugs",
  "license",
  "author",
  "contributors",
  "funding",
  "repository",
] as const;

interface RootPackage {
  [key: string]: unknown;
  exports?: Record<string, string>;
  engines?: Record<string, string>;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
  sideEffects?: boolean | string[];
}

/** What a build wrote. */
export interface BuildResult {
  /** The package directory. */
  out: string;
  /** The generated package.json. */
  packageJson: Record<string, unknown>;
  /** Source files compiled, relative to the root, sorted. */
  sources: string[];
}

const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, "utf8")) as T;
const posix = (p: string) => p.split(sep).join("/");
const fail = (message: string): never => {
  throw new Error(`Cannot build the npm package: ${message}`);
};

/** The public entry points from deno.json: export key (`.`, `./runtime`) -> source file relative to the root. */
export function entryPoints(root: string = ROOT): Map<string, string> {
  const { exports } = readJson<{ exports?: Record<string, string> | string }>(join(root, "deno.json"));
  if (typeof exports !== "object" || exports === null) fail("deno.json has no exports map");
  const map = new Map<string, string>();
  for (const [key, file] of Object.entries(exports as Record<string, string>)) {
    map.set(key, file.replace(/^\.\//, ""));
  }
  return map;
}

/** Checks that the root package.json exports the same entry points as deno.json. */
function checkRootExports(entries: Map<string, string>, pkg: RootPackage): void {
  const own = pkg.exports ?? {};
  const want = [...entries].map(([k, f]) => `${k} -> ./${f}`).sort();
  const have = Object.entries(own).map(([k, f]) => `${k} -> ${f}`).sort();
  if (want.join("\n") !== have.join("\n")) {
    fail(
      `package.json "exports" differ from deno.json "exports":\n  deno.json: ${want.join(", ")}\n  package.json: ${
        have.join(", ")
      }`,
    );
  }
}

const BASE_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  lib: ["lib.es2024.d.ts", "lib.dom.d.ts"],
  types: ["node"],
  strict: true,
  noUncheckedIndexedAccess: true,
  exactOptionalPropertyTypes: true,
  noImplicitOverride: true,
  esModuleInterop: true,
  skipLibCheck: true,
  noCheck: true,
  declaration: true,
  rewriteRelativeImportExtensions: true,
  newLine: ts.NewLineKind.LineFeed,
};

/** A relative module specifier (`./x.ts`, `../y.js`). */
const RELATIVE = /^\.\.?\//;
/** A relative specifier of a source module, as the adapter tables write them. */
const RELATIVE_MODULE = /^\.\.?\/[\w./-]+\.(?:[cm]?ts|[cm]?js)$/;

function walk(node: ts.Node, visit: (node: ts.Node) => void): void {
  visit(node);
  node.forEachChild((child) => walk(child, visit));
}

/**
 * The library's source files: the entry points, what they import, and the modules named by relative string
 * literals (the adapter tables that runtimes/detect.ts and ffi/native.ts import from), until nothing new is found.
 */
function sourceFiles(root: string, entries: string[]): string[] {
  const roots = new Set(entries.map((f) => resolve(root, f)));
  for (const f of roots) if (!existsSync(f)) fail(`the entry point ${relative(root, f)} does not exist`);
  for (;;) {
    const program = ts.createProgram([...roots], { ...BASE_OPTIONS, noLib: true, types: [] }); // imports only
    const ours = program.getSourceFiles().filter((sf) =>
      !sf.isDeclarationFile && !sf.fileName.includes("/node_modules/")
    );
    let grew = false;
    for (const sf of ours) {
      walk(sf, (node) => {
        if (!ts.isStringLiteralLike(node) || !RELATIVE_MODULE.test(node.text)) return;
        const target = resolve(dirname(sf.fileName), node.text);
        if (/\.[cm]?ts$/.test(target) && existsSync(target) && !roots.has(target)) {
          roots.add(target);
          grew = true;
        }
      });
    }
    if (!grew) return ours.map((sf) => resolve(sf.fileName)).sort();
  }
}

/** Replaces text ranges of `text`; edits are `[start, end, replacement]`, in any order, not overlapping. */
function splice(text: string, edits: Array<[number, number, string]>): string {
  let out = text;
  for (const [start, end, by] of edits.sort((a, b) => b[0] - a[0])) out = out.slice(0, start) + by + out.slice(end);
  return out;
}

/** The module specifier literals of a file: static imports and exports, `import()` with a literal, import types. */
function moduleSpecifiers(sf: ts.SourceFile): ts.StringLiteralLike[] {
  const found: ts.StringLiteralLike[] = [];
  walk(sf, (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteralLike(node.moduleSpecifier)) found.push(node.moduleSpecifier);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const lit = node.argument.literal;
      if (ts.isStringLiteralLike(lit)) found.push(lit);
    } else if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === "require") {
      const arg = node.arguments[0];
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg);
    }
  });
  return found;
}

/**
 * A declaration file with its relative `.ts` specifiers rewritten to `.js` (tsc rewrites them in JS only), and
 * without the shebang tsc copies from a bin's source.
 */
function fixDeclaration(fileName: string, source: string): string {
  const text = source.replace(/^#!.*\n/, "");
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const edits: Array<[number, number, string]> = [];
  for (const lit of moduleSpecifiers(sf)) {
    if (!RELATIVE.test(lit.text)) continue;
    const js = lit.text.replace(/\.([cm]?)ts$/, ".$1js");
    if (js !== lit.text) edits.push([lit.getStart(sf) + 1, lit.getEnd() - 1, js]);
  }
  return splice(text, edits);
}

/** CommonJS output with `import.meta.url` shimmed; any other `import.meta` fails the build. */
function fixCommonJs(fileName: string, text: string, root: string): string {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true);
  const edits: Array<[number, number, string]> = [];
  walk(sf, (node) => {
    if (!ts.isMetaProperty(node) || node.keywordToken !== ts.SyntaxKind.ImportKeyword) return;
    const parent = node.parent;
    if (ts.isPropertyAccessExpression(parent) && parent.expression === node && parent.name.text === "url") {
      edits.push([parent.getStart(sf), parent.getEnd(), CJS_IMPORT_META_URL]);
    } else {
      const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      fail(`${posix(relative(root, fileName))}:${line + 1} uses import.meta beyond import.meta.url in CommonJS`);
    }
  });
  return splice(text, edits);
}

/**
 * Every relative module that an output file names (imports, exports, `require`, `import()`, and the relative
 * strings of the adapter tables, which the output imports after rewriting `.ts` to `.js`) must exist in the output.
 */
function checkResolves(files: Map<string, string>, root: string): void {
  for (const [file, text] of files) {
    const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
    const declaration = file.endsWith(".d.ts");
    const names = new Set<string>(moduleSpecifiers(sf).map((l) => l.text).filter((s) => RELATIVE.test(s)));
    if (!declaration) {
      walk(sf, (node) => {
        if (ts.isStringLiteralLike(node) && RELATIVE_MODULE.test(node.text)) names.add(node.text);
      });
    }
    for (const name of names) {
      const js = resolve(dirname(file), name.replace(/\.([cm]?)ts$/, ".$1js"));
      const target = declaration ? js.replace(/\.([cm]?)js$/, ".d.$1ts") : js;
      if (!files.has(target)) fail(`${posix(relative(root, file))} imports ${name}, which is not in the package`);
    }
  }
}

/** Compiles `sources` for one module system into `dir`. Returns the written files (path -> text). */
function emit(
  sources: string[],
  root: string,
  dir: string,
  format: "esm" | "cjs",
): Map<string, string> {
  const options: ts.CompilerOptions = {
    ...BASE_OPTIONS,
    declaration: format === "esm", // the declarations do not depend on the module system: emitted once, copied
    rootDir: root,
    outDir: dir,
    ...(format === "esm"
      ? { module: ts.ModuleKind.ES2022, moduleResolution: ts.ModuleResolutionKind.Bundler }
      : { module: ts.ModuleKind.CommonJS, moduleResolution: ts.ModuleResolutionKind.Node10 }),
  };
  const program = ts.createProgram(sources, options);
  const written = new Map<string, string>();
  const result = program.emit(undefined, (fileName, text) => {
    let out = text;
    if (fileName.endsWith(".d.ts")) out = fixDeclaration(fileName, out);
    else if (format === "cjs") out = fixCommonJs(fileName, out, root);
    written.set(resolve(fileName), out);
  });
  const problems = result.diagnostics.filter((d) => d.category === ts.DiagnosticCategory.Error);
  if (problems.length > 0) {
    fail(ts.formatDiagnostics(problems, {
      getCanonicalFileName: (f) => f,
      getCurrentDirectory: () => root,
      getNewLine: () => "\n",
    }));
  }
  if (result.emitSkipped) fail(`tsc skipped the ${format} output`);
  for (const [file, text] of written) {
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, text);
    if (text.startsWith("#!") && !file.endsWith(".d.ts")) chmodSync(file, 0o755); // a bin: keep it runnable
  }
  return written;
}

/** `./cli` + `esm` + `.js` -> `./esm/cli/main.js`. */
function outPath(entries: Map<string, string>, key: string, dir: "esm" | "script", ext: ".js" | ".d.ts"): string {
  const file = entries.get(key);
  if (file === undefined) return fail(`no deno.json export "${key}"`);
  return `./${dir}/${file.replace(/\.ts$/, ext)}`;
}

/** The generated package.json. */
function packageJson(pkg: RootPackage, entries: Map<string, string>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of COPIED) if (pkg[field] !== undefined) out[field] = pkg[field];
  // dnt's layout: the package is CommonJS at its root; esm/package.json makes esm/ ES modules.
  out.type = "commonjs";
  out.main = outPath(entries, ".", "script", ".js");
  out.module = outPath(entries, ".", "esm", ".js");
  out.types = outPath(entries, ".", "script", ".d.ts");
  const exports: Record<string, unknown> = {};
  for (const key of entries.keys()) {
    exports[key] = {
      import: { types: outPath(entries, key, "esm", ".d.ts"), default: outPath(entries, key, "esm", ".js") },
      require: { types: outPath(entries, key, "script", ".d.ts"), default: outPath(entries, key, "script", ".js") },
    };
  }
  exports["./package.json"] = "./package.json";
  out.exports = exports;
  // TypeScript's old `moduleResolution: "node"` ignores exports: typesVersions points its subpaths at the types.
  const subpaths: Record<string, string[]> = {};
  for (const key of entries.keys()) {
    if (key !== ".") subpaths[key.slice(2)] = [outPath(entries, key, "script", ".d.ts")];
  }
  if (Object.keys(subpaths).length > 0) out.typesVersions = { "*": subpaths };
  const bin: Record<string, string> = {};
  for (const [name, key] of Object.entries(BIN)) bin[name] = outPath(entries, key, "esm", ".js");
  out.bin = bin;
  for (
    const field of [
      "engines",
      "dependencies",
      "optionalDependencies",
      "peerDependencies",
      "peerDependenciesMeta",
    ] as const
  ) {
    const value = pkg[field];
    if (value !== undefined && Object.keys(value).length > 0) out[field] = value;
  }
  if (pkg.sideEffects !== undefined) out.sideEffects = pkg.sideEffects;
  return out;
}

/**
 * Builds the npm package into `out` (emptied first).
 *
 * @throws {Error} when an entry point is missing, the exports of deno.json and package.json differ, a file that
 *   must not ship is reachable, an import in the output does not resolve, or the CommonJS output keeps `import.meta`.
 */
export function build(out: string, root: string = ROOT): BuildResult {
  const pkg = readJson<RootPackage>(join(root, "package.json"));
  const entries = entryPoints(root);
  checkRootExports(entries, pkg);
  const sources = sourceFiles(root, [...entries.values()]);
  for (const file of sources) {
    const top = posix(relative(root, file)).split("/")[0]!;
    if (NOT_SHIPPED.includes(top) || file.endsWith(".test.ts")) {
      fail(`${posix(relative(root, file))} would ship (it is reachable from an entry point)`);
    }
  }
  for (const [name, key] of Object.entries(BIN)) {
    const file = entries.get(key);
    if (file === undefined) fail(`the "${name}" command runs the export "${key}", which deno.json does not have`);
    if (!readFileSync(join(root, file!), "utf8").startsWith("#!/usr/bin/env node")) {
      fail(`${file}, the "${name}" command, does not start with #!/usr/bin/env node`);
    }
  }
  const target = resolve(out);
  if (target === root || root.startsWith(target + sep)) fail(`refusing to empty ${target}`);
  rmSync(target, { recursive: true, force: true });
  mkdirSync(target, { recursive: true });
  const esm = emit(sources, root, join(target, "esm"), "esm");
  const cjs = emit(sources, root, join(target, "script"), "cjs");
  for (const [file, text] of esm) {
    if (!file.endsWith(".d.ts")) continue;
    const copy = join(target, "script", relative(join(target, "esm"), file));
    writeFileSync(copy, text);
    cjs.set(copy, text);
  }
  checkResolves(esm, root);
  checkResolves(cjs, root);
  for (const dir of ASSETS) {
    if (!existsSync(join(root, dir))) fail(`${dir}/ is missing`);
    for (const system of ["esm", "script"]) cpSync(join(root, dir), join(target, system, dir), { recursive: true });
  }
  writeFileSync(join(target, "esm", "package.json"), `${JSON.stringify({ type: "module" }, null, 2)}\n`);
  writeFileSync(join(target, "script", "package.json"), `${JSON.stringify({ type: "commonjs" }, null, 2)}\n`);
  const manifest = packageJson(pkg, entries);
  writeFileSync(join(target, "package.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  for (const file of ["README.md", "LICENSE"]) {
    if (!existsSync(join(root, file))) fail(`${file} is missing`);
    copyFileSync(join(root, file), join(target, file));
  }
  for (const dir of NATIVE) {
    if (!existsSync(join(root, dir))) fail(`${dir}/ is missing`);
    cpSync(join(root, dir), join(target, dir), { recursive: true });
  }
  return { out: target, packageJson: manifest, sources: sources.map((f) => posix(relative(root, f))) };
}

/** Runs a command; throws with its output when it fails. */
function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, FORCE_COLOR: "0", NO_COLOR: "1" } });
  const output = `${r.stdout ?? ""}${r.stderr ?? ""}`;
  if (r.error) throw new Error(`Cannot run ${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`Cannot check the npm package: ${cmd} ${args.join(" ")} failed\n${output}`);
  return output;
}

/** `npm pack` of the package in `dir` into `destination`; returns the tarball's path. */
export function pack(dir: string, destination: string): string {
  const out = run("npm", ["pack", "--json", "--pack-destination", destination], dir);
  const list = JSON.parse(out.slice(out.indexOf("["))) as Array<{ filename: string }>;
  return join(destination, list[0]!.filename);
}

/** Runs publint on the package in `dir` and attw on the tarball `tgz`; throws when either reports a problem. */
export function lint(dir: string, tgz: string, root: string = ROOT): string {
  const bin = (name: string) => join(root, "node_modules", ".bin", name);
  const publint = run(bin("publint"), ["--strict", dir], root);
  const attw = run(bin("attw"), ["--no-definitely-typed", "--no-emoji", "--no-color", "--format", "ascii", tgz], root);
  return `${publint}${attw}`;
}

function main(argv: string[]): void {
  let out = join(ROOT, "npm");
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--out" && argv[i + 1] !== undefined) out = resolve(argv[++i]!);
    else if (arg === "--check") check = true;
    else {
      console.error(`usage: build_npm.ts [--out <dir>] [--check]\nunknown argument: ${arg}`);
      process.exit(2);
    }
  }
  const started = Date.now();
  const result = build(out);
  console.log(`built ${relative(process.cwd(), result.out) || "."} (${result.sources.length} modules, esm + script)`);
  if (check) {
    const tmp = mkdtempSync(join(tmpdir(), "ipckit-pack-"));
    try {
      console.log(lint(result.out, pack(result.out, tmp)).trim());
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  console.log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

const invoked = process.argv[1] === undefined ? "" : resolve(process.argv[1]);
if (invoked === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
