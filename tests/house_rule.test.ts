/**
 * The one rule of the house (DESIGN.md): only `ffi/` and `runtimes/` may touch a runtime. This scans every other
 * source file for `Deno.<name>`, `Bun.<name>` and imports of `bun:ffi` or `koffi`, in code and comments alike.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

/** Top-level folders allowed to touch a runtime, or not part of the library. */
const EXEMPT_TOP = new Set(["ffi", "runtimes", "tests", "bench", "examples", "scripts", "npm", "coverage"]);
/** Folders skipped at any depth. */
const SKIP_ANYWHERE = new Set(["node_modules"]);
const SOURCE = /\.(?:ts|js|mjs)$/;

const RULES: readonly { what: string; pattern: RegExp }[] = [
  { what: "Deno.*", pattern: /\bDeno\.[A-Za-z]/ },
  { what: "Bun.*", pattern: /\bBun\.[A-Za-z]/ },
  {
    what: 'import of "bun:ffi" or "koffi"',
    pattern: /(?:\bimport\b|\bfrom\b|\brequire\s*\()\s*\(?\s*["'`](?:bun:ffi|koffi)(?:\/[^"'`]*)?["'`]/,
  },
];

/** Source files under `dir`, as paths relative to ROOT with `/` separators. */
function sources(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    const rel = relative(ROOT, path).split(sep).join("/");
    if (entry.isDirectory()) {
      // Dot folders (.git, .ci) hold no library sources.
      if (entry.name.startsWith(".") || SKIP_ANYWHERE.has(entry.name)) continue;
      if (dir === ROOT && EXEMPT_TOP.has(entry.name)) continue;
      found.push(...sources(path));
    } else if (entry.isFile() && SOURCE.test(entry.name)) {
      found.push(rel);
    }
  }
  return found;
}

/** `file:line: rule: text` for each line of `text` that breaks a rule. */
function violations(file: string, text: string): string[] {
  const out: string[] = [];
  text.split("\n").forEach((line, i) => {
    for (const { what, pattern } of RULES) {
      if (pattern.test(line)) out.push(`${file}:${i + 1}: ${what}: ${line.trim()}`);
    }
  });
  return out;
}

test("the house-rule scanner flags Deno.*, Bun.* and bun:ffi/koffi imports, and not look-alikes", () => {
  const bad = [
    "const f = Deno.open(path);",
    "  if (Bun.version) {}",
    'import { dlopen } from "bun:ffi";',
    "import koffi from 'koffi';",
    'const k = await import("koffi");',
    'const k = require("koffi");',
    'export * from "bun:ffi";',
  ];
  for (const line of bad) assert.equal(violations("x.ts", line).length, 1, line);
  const fine = [
    'if ("Deno" in globalThis) return "deno";',
    "const isDeno.x = 1; // not a Deno access: no word boundary",
    "const denoName = myDeno.foo + Bun_.x;",
    'const name = "koffi loader";',
    "// Deno. alone, or Bun.5",
  ];
  for (const line of fine) assert.deepEqual(violations("x.ts", line), [], line);
});

test("no source outside ffi/ and runtimes/ touches Deno.*, Bun.*, bun:ffi or koffi", () => {
  const files = sources(ROOT);
  // The scan must have seen the core, or it would pass vacuously.
  assert.ok(files.includes("mod.ts"), `mod.ts not scanned (found: ${files.join(", ")})`);
  assert.ok(files.includes("transports/channel.ts"), `transports/channel.ts not scanned (found: ${files.join(", ")})`);
  assert.ok(!files.some((f) => /^(?:ffi|runtimes|tests)\//.test(f)), "exempt folders were scanned");
  const found = files.flatMap((file) => violations(file, readFileSync(join(ROOT, file), "utf8")));
  assert.deepEqual(found, [], `only ffi/ and runtimes/ may touch a runtime:\n${found.join("\n")}`);
});
