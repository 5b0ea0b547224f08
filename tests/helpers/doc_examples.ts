/**
 * For tests/doc_examples.test.ts: finds ipckit's public exports (from the entry points in deno.json, with the
 * TypeScript compiler API), checks their JSDoc, and extracts the ```ts blocks of the `@example` tags in the files
 * those exports come from, with the `"ipckit"` / `"ipckit/<sub>"` specifiers rewritten to the local files.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

/** The repository root. */
export const ROOT: string = fileURLToPath(new URL("../..", import.meta.url));

/** The public entry points: import specifier (`ipckit`, `ipckit/runtime`, ...) -> file relative to the root. */
export function entryPoints(root: string = ROOT): Map<string, string> {
  const config = JSON.parse(readFileSync(join(root, "deno.json"), "utf8")) as { exports: Record<string, string> };
  const out = new Map<string, string>();
  for (const [key, file] of Object.entries(config.exports)) {
    const specifier = key === "." ? "ipckit" : `ipckit/${key.replace(/^\.\//, "")}`;
    out.set(specifier, file.replace(/^\.\//, ""));
  }
  return out;
}

/** One public export and what its JSDoc says. */
export interface ExportInfo {
  /** The public name: `unix.listen`, `Mutex`, `Mutex#lock`, `Mutex.from`. */
  name: string;
  /** `value` (function, class, constant), `type` (interface, type alias) or `member` (of an exported class). */
  kind: "value" | "type" | "member";
  /** The declaring file, relative to the root. */
  file: string;
  /** The one-line summary (the first line of the doc comment), or "" when there is none. */
  summary: string;
  /** Whether the JSDoc (of the declaration, or the class for a member) has an `@example`. */
  hasExample: boolean;
}

const rel = (root: string, file: string) => relative(root, file).split(sep).join("/");

/**
 * Every export reachable from the entry points, namespace members included (`export * as unix` gives `unix.*`),
 * and the public methods and accessors of exported classes. Sorted by name, one entry per name.
 */
export function publicExports(root: string = ROOT): ExportInfo[] {
  const files = [...entryPoints(root).values()].map((f) => resolve(root, f));
  const program = ts.createProgram(files, {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true,
    noEmit: true,
    skipLibCheck: true,
    noResolve: false,
    types: [],
    lib: ["lib.es2022.d.ts"],
  });
  const checker = program.getTypeChecker();
  const found = new Map<string, ExportInfo>();
  const seenModules = new Set<ts.Symbol>();

  const docOf = (symbol: ts.Symbol) => {
    const summary = ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim().split("\n")[0] ?? "";
    const tags = symbol.getJsDocTags(checker);
    const hasExample = tags.some((t) => t.name === "example");
    return { summary, hasExample, internal: tags.some((t) => t.name === "internal") };
  };
  const ours = (decl: ts.Declaration) => {
    const f = decl.getSourceFile().fileName;
    return !f.includes(`${sep}node_modules${sep}`) && !f.includes("/node_modules/") && f.startsWith(root);
  };

  const visitModule = (moduleSymbol: ts.Symbol, prefix: string) => {
    if (seenModules.has(moduleSymbol) && prefix === "") return;
    seenModules.add(moduleSymbol);
    for (const exported of checker.getExportsOfModule(moduleSymbol)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const decls = (symbol.getDeclarations() ?? []).filter(ours);
      const decl = decls[0];
      if (decl === undefined) continue;
      const name = prefix + exported.getName();
      if (ts.isSourceFile(decl)) {
        visitModule(symbol, `${name}.`); // export * as name from "./file.ts"
        continue;
      }
      const isValue = (symbol.flags & ts.SymbolFlags.Value) !== 0;
      const file = rel(root, decl.getSourceFile().fileName);
      const { summary, hasExample, internal } = docOf(symbol);
      if (internal) continue; // `@internal`: exported for ipckit's own modules, not for users
      if (!found.has(name)) found.set(name, { name, kind: isValue ? "value" : "type", file, summary, hasExample });
      if (symbol.flags & ts.SymbolFlags.Class) visitClass(symbol, name, hasExample);
    }
  };

  const isPublicMember = (member: ts.Symbol) => {
    const decl = member.getDeclarations()?.[0];
    if (decl === undefined || !ours(decl)) return false;
    if (member.getName().startsWith("_") || member.getName().startsWith("#")) return false;
    if (member.getName().startsWith("__@")) return false; // Symbol.dispose and friends
    if (ts.isPrivateIdentifier((decl as ts.NamedDeclaration).name ?? decl)) return false;
    const flags = ts.getCombinedModifierFlags(decl);
    return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0;
  };
  const isMethodLike = (member: ts.Symbol) =>
    (member.flags & (ts.SymbolFlags.Method | ts.SymbolFlags.GetAccessor | ts.SymbolFlags.SetAccessor)) !== 0;

  const visitClass = (classSymbol: ts.Symbol, name: string, classHasExample: boolean) => {
    const instance = checker.getDeclaredTypeOfSymbol(classSymbol);
    const members: [string, ts.Symbol][] = [];
    for (const m of checker.getPropertiesOfType(instance)) members.push([`${name}#${m.getName()}`, m]);
    for (const m of classSymbol.exports?.values() ?? []) {
      if (m.flags & ts.SymbolFlags.Prototype) continue;
      members.push([`${name}.${m.getName()}`, m]);
    }
    for (const [memberName, member] of members) {
      if (!isPublicMember(member) || !isMethodLike(member)) continue;
      const { summary, hasExample, internal } = docOf(member);
      if (internal) continue;
      const file = rel(root, member.getDeclarations()![0]!.getSourceFile().fileName);
      found.set(memberName, {
        name: memberName,
        kind: "member",
        file,
        summary,
        hasExample: hasExample || classHasExample,
      });
    }
  };

  for (const file of files) {
    const source = program.getSourceFile(file);
    const moduleSymbol = source && checker.getSymbolAtLocation(source);
    if (moduleSymbol === undefined) throw new Error(`Cannot read the exports of ${file}`);
    visitModule(moduleSymbol, "");
  }
  return [...found.values()].sort((a, b) => a.name.localeCompare(b.name));
}

/** The files whose JSDoc examples run: the entry points and every file a public export is declared in. */
export function documentedFiles(root: string = ROOT, exports: ExportInfo[] = publicExports(root)): string[] {
  const files = new Set([...entryPoints(root).values(), ...exports.map((e) => e.file)]);
  return [...files].sort();
}

/** One ```ts block of an `@example` tag. */
export interface DocExample {
  /** `file#name` (`transports/unix.ts#listen`), with `-2`, `-3` for further examples of the same name. */
  id: string;
  /** The file, relative to the root. */
  file: string;
  /** The line of the block's opening fence in the file (1-based). */
  line: number;
  /** The code as written. */
  code: string;
}

const DECLARATION =
  /^\s*(?:export\s+)?(?:default\s+)?(?:declare\s+)?(?:abstract\s+)?(?:async\s+)?(?:function\*?|class|const|let|var|interface|type|enum|namespace)\s+([\w$]+)/;
const MEMBER =
  /^\s*(?:(?:public|static|readonly|override|async|get|set|abstract|declare)\s+)*\*?\s*(\[[\w.]+\]|#?[\w$]+)\s*[<(:=?!;]/;

/** The name of what a doc comment documents: the first declaration after it, or `module`. */
function documentedName(comment: string, after: string): string {
  if (/@module\b/.test(comment)) return "module";
  const next = after.split("\n").find((l) => l.trim() !== "" && !l.trim().startsWith("//")) ?? "";
  const m = DECLARATION.exec(next) ?? MEMBER.exec(next);
  return m?.[1] ?? "anonymous";
}

/** The ```ts blocks inside the `@example` tags of a file's JSDoc comments. */
export function examplesIn(file: string, root: string = ROOT): DocExample[] {
  const text = readFileSync(join(root, file), "utf8");
  const out: DocExample[] = [];
  const ids = new Map<string, number>();
  const comment = /\/\*\*([\s\S]*?)\*\//g;
  for (let m; (m = comment.exec(text)) !== null;) {
    const body = m[1]!;
    if (!body.includes("@example")) continue;
    const startLine = text.slice(0, m.index).split("\n").length;
    const lines = body.split("\n").map((l) => l.replace(/^\s*\* ?/, ""));
    const name = documentedName(body, text.slice(m.index + m[0].length));
    let inExample = false;
    let fence: { line: number; lang: string; code: string[] } | undefined;
    lines.forEach((line, i) => {
      if (fence !== undefined) {
        if (/^\s*```\s*$/.test(line)) {
          if (inExample && /^(?:ts|typescript)$/.test(fence.lang)) {
            const n = (ids.get(name) ?? 0) + 1;
            ids.set(name, n);
            out.push({
              id: `${file}#${name}${n > 1 ? `-${n}` : ""}`,
              file,
              line: fence.line,
              code: fence.code.join("\n") + "\n",
            });
          }
          fence = undefined;
        } else fence.code.push(line);
        return;
      }
      const open = /^\s*```(\w*)/.exec(line);
      if (open) fence = { line: startLine + i, lang: open[1] ?? "", code: [] };
      else if (/^@\w+/.test(line.trim())) inExample = /^@example\b/.test(line.trim());
    });
  }
  return out;
}

/**
 * An example's code with `"ipckit"` and `"ipckit/<sub>"` import specifiers replaced by `file:` URLs of the local
 * entry files. Throws for an `ipckit/...` specifier that is no entry point (an example must use the public names).
 */
export function rewriteSpecifiers(code: string, root: string = ROOT): string {
  const entries = entryPoints(root);
  return code.replace(
    /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(ipckit(?:\/[\w./-]+)?)\2/g,
    (_, lead, q, spec) => {
      const file = entries.get(spec);
      if (file === undefined) throw new Error(`Cannot rewrite "${spec}": it is not an entry point in deno.json`);
      return `${lead}${q}${pathToFileURL(join(root, file)).href}${q}`;
    },
  );
}
