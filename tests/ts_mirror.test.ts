// @test-once the compiled mirror is the test suite's own machinery, built and run by Node whatever the runner
/**
 * scripts/ts_mirror.mjs: the TypeScript of a repository compiled into plain ES modules that Node runs without module
 * hooks. Driven on a small repository made here: a copy must behave as its source (the same `import.meta.url`, the
 * same files found from it, one instance of each module however it is imported) and be rebuilt when its source
 * changes.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { buildMirror, mirrorPath } from "../scripts/ts_mirror.mjs";
import { runtimeBinary } from "../runtimes/argv.ts";

const dir = mkdtempSync(join(tmpdir(), "ipckit-mirror-test-"));
const repo = join(dir, "repo");
const out = join(dir, "out");
after(() => rmSync(dir, { recursive: true, force: true }));

const files: Record<string, string> = {
  "main.ts": [
    'import { readFileSync } from "node:fs";',
    'import { token, where } from "./lib/b.ts";',
    'import { fromC } from "./lib/c.ts";',
    'import { plain } from "./helper.mjs";',
    "// A table of specifiers, imported by a computed name (as the runtime adapters are).",
    'const TABLE: Record<string, string> = { b: "./lib/b.ts" };',
    'const key: string = process.argv[2] ?? "b";',
    "const viaTable = await import(TABLE[key]!) as { token: object };",
    "interface Out { url: string }",
    "const out: Out & Record<string, unknown> = {",
    "  url: import.meta.url,",
    '  data: readFileSync(new URL("./data.txt", import.meta.url), "utf8"),',
    "  where,",
    "  plain,",
    "  sameInstance: viaTable.token === token && fromC === token,",
    "  text: 'await import(\"./lib/b.ts\")',",
    "};",
    "console.log(JSON.stringify(out));",
  ].join("\n"),
  "lib/b.ts": "export const token: object = {};\nexport const where: string = import.meta.url;\n",
  "lib/c.ts": 'import { token } from "./b.ts";\nexport const fromC = token;\n',
  "helper.mjs": 'export const plain = "from the source directory";\n',
  "data.txt": "read next to the source",
  "node_modules/skipped.ts": "this is not TypeScript and is never compiled",
};
for (const [name, text] of Object.entries(files)) {
  mkdirSync(join(repo, name, ".."), { recursive: true });
  writeFileSync(join(repo, name), text);
}

function runCopy(): Record<string, unknown> {
  const r = spawnSync(runtimeBinary("node"), [mirrorPath(out, join(repo, "main.ts"))], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim()) as Record<string, unknown>;
}

test("a compiled copy runs on Node without a loader and behaves as its source", async () => {
  assert.deepEqual(await buildMirror(repo, out), { compiled: 3, total: 3 });
  const got = runCopy();
  assert.deepEqual(got, {
    url: pathToFileURL(join(repo, "main.ts")).href, // import.meta.url is the source's
    data: "read next to the source", // so files next to the source are found
    where: pathToFileURL(join(repo, "lib", "b.ts")).href,
    plain: "from the source directory", // a relative import of JavaScript loads the source directory's file
    sameInstance: true, // static, computed and indirect imports of b.ts load one module
    text: 'await import("./lib/b.ts")', // an import written inside a string is left alone
  });
});

test("code written elsewhere at run time imports the repository's copies by absolute URL", async () => {
  await buildMirror(repo, out);
  const later = join(dir, "later");
  mkdirSync(later);
  const b = pathToFileURL(join(repo, "lib", "b.ts")).href;
  writeFileSync(
    join(later, "x.ts"),
    `import { token } from ${JSON.stringify(b)};\nconst again = await import(${JSON.stringify(b)});\n` +
      "console.log(JSON.stringify({ same: again.token === token, where: again.where }));\n",
  );
  assert.deepEqual(await buildMirror(later, out), { compiled: 1, total: 1 });
  assert.match(readFileSync(mirrorPath(out, join(later, "x.ts")), "utf8"), /\/out\/.*\/lib\/b\.mjs/);
  const r = spawnSync(runtimeBinary("node"), [mirrorPath(out, join(later, "x.ts"))], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { same: true, where: b });
});

test("the mirror compiles again only what changed", async () => {
  await buildMirror(repo, out);
  assert.deepEqual(await buildMirror(repo, out), { compiled: 0, total: 3 });
  writeFileSync(join(repo, "lib", "b.ts"), 'export const token: object = {};\nexport const where = "changed";\n');
  const later = new Date(Date.now() + 5_000); // newer than its copy, whatever the file system's time resolution
  utimesSync(join(repo, "lib", "b.ts"), later, later);
  assert.deepEqual(await buildMirror(repo, out), { compiled: 1, total: 3 });
  assert.equal(runCopy().where, "changed");
  assert.match(readFileSync(mirrorPath(out, join(repo, "lib", "c.ts")), "utf8"), /from "\.\/b\.mjs"/);
});
