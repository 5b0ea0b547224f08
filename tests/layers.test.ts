/**
 * Layers point down (DESIGN.md): a library file may import only files of its own layer or of a lower one. This
 * reads every library source's relative imports (static `import`/`export ... from`, side-effect `import "..."` and
 * dynamic `import("...")`, type-only ones included) and fails naming `file:line` for each import of a higher layer,
 * and for any import cycle between folders. The layers are data: a new file in a known folder is checked at once; a
 * new top-level folder or root file fails until it is placed in `LAYERS`.
 *
 * Lowest first. Units on one line share a layer (they may import each other, but never in a cycle):
 * - `errors.ts`: the error classes, imported by everything.
 * - `ffi/`: libc bindings and ALL constants. It tells the runtime apart by itself (`ffi/host.ts`), not through
 *   `runtimes/`.
 * - `runtimes/`: one adapter per runtime.
 * - `async/`, then `os/`: DESIGN's middle layer of OS objects and async helpers, ordered inside: OS objects may use
 *   the async toolkit (abortable waits, backoff), the toolkit knows nothing of OS objects. With them the root files
 *   that are OS-level: `registry.ts` (owner records of named objects: shm/, sync/ and transports/ register theirs),
 *   `liveness.ts` (the public face of `os/liveness.ts`) and `signals.ts` (sending and handling signals).
 * - `shm/`, then `sync/`: shared segments and rings, then the primitives placed in them (sync/ may import shm/).
 * - `transports/`, `rpc/`, `pool/`.
 * - `resources.ts`: `ipckit ls`/`clean`, the loop over every kind of named object (channels' included), so above
 *   the transports; only mod.ts and cli/ use it. With it `stats.ts`, the public face of `shm/stats.ts`.
 * - `mod.ts` (the public entry point), then `cli/` (which imports mod.ts).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, posix, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** The layers, lowest first; a unit is a top-level folder (`"ffi/"`) or a root file (`"mod.ts"`). */
const LAYERS: readonly (readonly string[])[] = [
  ["errors.ts"],
  ["ffi/"],
  ["runtimes/"],
  ["async/"],
  ["os/", "registry.ts", "liveness.ts", "signals.ts"],
  ["shm/"],
  ["sync/"],
  ["transports/"],
  ["rpc/"],
  ["pool/"],
  ["resources.ts", "stats.ts"],
  ["mod.ts"],
  ["cli/"],
];

/** Top-level folders that are not part of the library (web/: the page the monitor serves, browser code). */
const NOT_LIBRARY = new Set([
  "tests",
  "bench",
  "examples",
  "scripts",
  "npm",
  "coverage",
  "docs",
  "node_modules",
  "web",
]);
const SOURCE = /\.(?:ts|js|mjs)$/;

/** The unit of a path relative to ROOT (`"transports/unix.ts"` -> `"transports/"`, `"mod.ts"` -> `"mod.ts"`). */
function unitOf(path: string): string {
  const slash = path.indexOf("/");
  return slash < 0 ? path : path.slice(0, slash + 1);
}

/** The rank of each unit (its index in `layers`). */
function ranks(layers: readonly (readonly string[])[]): Map<string, number> {
  const map = new Map<string, number>();
  layers.forEach((units, i) => units.forEach((u) => map.set(u, i)));
  return map;
}

/** Library source files, relative to ROOT with `/` separators. */
function sources(dir = ROOT): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
      if (dir === ROOT && NOT_LIBRARY.has(entry.name)) continue;
      found.push(...sources(path));
    } else if (entry.isFile() && SOURCE.test(entry.name)) {
      found.push(relative(ROOT, path).split(sep).join("/"));
    }
  }
  return found;
}

/** One relative import: the line it is on and the imported file, relative to ROOT. */
interface Import {
  line: number;
  target: string;
}

// `import x from`, `import type { a } from`, `export * as ns from`, `import d, { a } from`: statements that start a
// line (a JSDoc example starts with ` * `, so it is not read as an import). The specifier may be lines below.
const STATIC =
  /^[ \t]*(?:import|export)\s+(?:type\s+)?(?:[\w$]+\s*,\s*)?(?:\{[^}]*\}|\*(?:\s+as\s+[\w$]+)?|[\w$]+)\s*from\s*(["'])([^"'\n]+)\1/gm;
const SIDE_EFFECT = /^[ \t]*import\s*(["'])([^"'\n]+)\1/gm;
const DYNAMIC = /\bimport\s*\(\s*(["'`])([^"'`\n]+)\1\s*[,)]/g;
const COMMENT_LINE = /^\s*(?:\/\/|\/\*|\*)/;

/** The relative imports of `file` (relative to ROOT), given its text. */
function importsOf(file: string, text: string): Import[] {
  const lineStarts = [0];
  for (let i = 0; i < text.length; i++) if (text[i] === "\n") lineStarts.push(i + 1);
  const lineAt = (index: number): number => {
    let lo = 0, hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const lines = text.split("\n");
  const out: Import[] = [];
  for (const pattern of [STATIC, SIDE_EFFECT, DYNAMIC]) {
    for (const m of text.matchAll(pattern)) {
      const specifier = m[2]!;
      if (!specifier.startsWith("./") && !specifier.startsWith("../")) continue;
      const line = lineAt(m.index! + m[0].lastIndexOf(specifier));
      if (pattern === DYNAMIC && COMMENT_LINE.test(lines[line - 1]!)) continue;
      out.push({ line, target: posix.normalize(posix.join(posix.dirname(file), specifier)) });
    }
  }
  return out.sort((a, b) => a.line - b.line);
}

/** `file:line: ...` for each import of `file` that points up, leaves the library, or comes from an unplaced unit. */
function violations(file: string, text: string, layers = LAYERS): string[] {
  const rank = ranks(layers);
  const from = unitOf(file);
  const own = rank.get(from);
  if (own === undefined) return [`${file}:1: ${from} has no layer: place it in LAYERS (tests/layers.test.ts)`];
  const out: string[] = [];
  for (const { line, target } of importsOf(file, text)) {
    if (target.startsWith("../")) {
      out.push(`${file}:${line}: imports ${target}, outside the library`);
      continue;
    }
    const to = unitOf(target);
    const theirs = rank.get(to);
    if (theirs === undefined) out.push(`${file}:${line}: imports ${target}, which has no layer`);
    else if (theirs > own) out.push(`${file}:${line}: imports ${target}: ${to} is a higher layer than ${from}`);
  }
  return out;
}

/** The import graph between units: unit -> unit -> one `file:line` that makes the edge. */
function unitGraph(files: ReadonlyMap<string, string>): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>();
  for (const [file, text] of files) {
    const from = unitOf(file);
    for (const { line, target } of importsOf(file, text)) {
      const to = unitOf(target);
      if (to === from) continue;
      const edges = graph.get(from) ?? new Map<string, string>();
      if (!edges.has(to)) edges.set(to, `${file}:${line}`);
      graph.set(from, edges);
    }
  }
  return graph;
}

/**
 * Each cycle through two or more folders, as `a/ -> b/ (file:line) -> a/ (file:line)` (root files on the way are
 * named too). A root file that shares a layer with a folder may import it and be imported by it (`registry.ts` and
 * `os/`): that is one layer, not a cycle between folders.
 */
function cycles(graph: ReadonlyMap<string, ReadonlyMap<string, string>>): string[] {
  const found = new Set<string>();
  const path: string[] = [];
  const visit = (unit: string) => {
    const at = path.indexOf(unit);
    if (at >= 0) {
      const loop = path.slice(at);
      if (loop.filter((u) => u.endsWith("/")).length < 2) return;
      // Name each cycle once, from its smallest unit.
      const start = loop.indexOf([...loop].sort()[0]!);
      const ordered = [...loop.slice(start), ...loop.slice(0, start)];
      found.add(
        ordered[0] +
          ordered.map((u, i) => {
            const next = ordered[(i + 1) % ordered.length]!;
            return ` -> ${next} (${graph.get(u)!.get(next)})`;
          }).join(""),
      );
      return;
    }
    path.push(unit);
    for (const next of graph.get(unit)?.keys() ?? []) visit(next);
    path.pop();
  };
  for (const unit of graph.keys()) visit(unit);
  return [...found];
}

test("the layer checker flags upward imports (static, multi-line, dynamic) at file:line, and not downward ones", () => {
  const upward = [
    'import { allocate } from "../transports/bytes.ts";',
    "import type { Channel } from '../transports/channel.ts';",
    'export * as rpc from "../rpc/rpc.ts";',
    'import "../pool/mod.ts";',
    'const { Pool } = await import("../pool/pool.ts");',
    'import {\n  a,\n  b,\n} from "../cli/main.ts";',
  ];
  for (const text of upward) {
    const found = violations("shm/ring.ts", text);
    assert.equal(found.length, 1, `${text} -> ${found.join("; ")}`);
    assert.match(found[0]!, new RegExp(`^shm/ring\\.ts:${text.split("\n").length}: imports .* is a higher layer`));
  }
  assert.deepEqual(violations("ffi/native.ts", 'import { runtimeName } from "../runtimes/detect.ts";'), [
    "ffi/native.ts:1: imports runtimes/detect.ts: runtimes/ is a higher layer than ffi/",
  ]);
  // A root file (`../` from a folder, `./` from the root), and the two orders inside the middle layers.
  assert.equal(violations("registry.ts", 'import { x } from "./resources.ts";').length, 1);
  assert.equal(violations("async/delay.ts", 'import { x } from "../os/liveness.ts";').length, 1);
  assert.equal(violations("shm/ring.ts", 'import { x } from "../sync/mutex.ts";').length, 1);
  const fine = [
    'import { ProtocolError } from "../errors.ts";',
    'import { allocate } from "../runtimes/bytes.ts";',
    'import { x } from "./segment.ts";',
    'import { register } from "../registry.ts";',
    'import { x } from "ipckit/runtime";',
    '/**\n * import { rpc } from "../rpc/rpc.ts";\n * await import("../pool/mod.ts");\n */',
    '// const { Pool } = await import("../pool/pool.ts");',
  ];
  for (const text of fine) assert.deepEqual(violations("shm/ring.ts", text), [], text);
  assert.deepEqual(violations("sync/mutex.ts", 'import { x } from "../shm/ring.ts";'), []);
  assert.deepEqual(violations("os/queue.ts", 'import { delay } from "../async/mod.ts";'), []);
  assert.deepEqual(violations("cli/main.ts", 'import { x } from "../mod.ts";'), []);
  // An unplaced folder, and an import leaving the library.
  assert.match(violations("widgets/a.ts", "")[0]!, /widgets\/ has no layer/);
  assert.match(violations("shm/ring.ts", 'import { x } from "../../elsewhere.ts";')[0]!, /outside the library/);
});

test("the cycle check names a cycle between folders once, with the imports that make it", () => {
  const files = new Map([
    ["os/a.ts", 'import { b } from "../registry.ts";'],
    ["registry.ts", '\nimport { a } from "./os/a.ts";\nimport { c } from "./shm/c.ts";'],
    ["shm/c.ts", 'import { a } from "../os/a.ts";'],
    ["sync/d.ts", 'import { c } from "../shm/c.ts";'],
  ]);
  assert.deepEqual(cycles(unitGraph(files)), [
    "os/ -> registry.ts (os/a.ts:1) -> shm/ (registry.ts:3) -> os/ (shm/c.ts:1)",
  ]);
  // A folder and a root file of its layer importing each other is not a cycle between folders.
  files.set("registry.ts", '\nimport { a } from "./os/a.ts";');
  assert.deepEqual(cycles(unitGraph(files)), []);
  files.set("os/a.ts", 'import { d } from "../sync/d.ts";');
  assert.deepEqual(cycles(unitGraph(files)), ["os/ -> sync/ (os/a.ts:1) -> shm/ (sync/d.ts:1) -> os/ (shm/c.ts:1)"]);
});

test("no library file imports a file of a higher layer", () => {
  const files = sources();
  // The scan must have seen the layers, or it would pass vacuously.
  for (const f of ["mod.ts", "ffi/native.ts", "shm/ring.ts", "transports/channel.ts", "cli/main.ts"]) {
    assert.ok(files.includes(f), `${f} not scanned (found: ${files.join(", ")})`);
  }
  assert.ok(!files.some((f) => /^(?:tests|bench|examples|scripts)\//.test(f)), "non-library folders were scanned");
  const found = files.flatMap((file) => violations(file, readFileSync(join(ROOT, file), "utf8")));
  assert.deepEqual(found, [], `layers point down (tests/layers.test.ts says which):\n${found.join("\n")}`);
});

test("no import cycle between library folders", () => {
  const files = new Map(sources().map((f) => [f, readFileSync(join(ROOT, f), "utf8")]));
  assert.ok(unitGraph(files).get("transports/")?.has("errors.ts"), "the graph was not built");
  const found = cycles(unitGraph(files));
  assert.deepEqual(found, [], `import cycles:\n${found.join("\n")}`);
});
