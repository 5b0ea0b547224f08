// The one fixture list (tests/conformance/registry.ts) is complete and instantiated where it says: every fixture
// module is on it, every line loads a fixture of its name, and the test file each line names runs its suites.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ENTRIES, entry } from "./conformance/registry.ts";

const TESTS = fileURLToPath(new URL("./", import.meta.url));
const source = (file: string) => readFileSync(`${TESTS}${file}.test.ts`, "utf8");

test("every line loads a fixture of its own name, and names are unique", async () => {
  assert.equal(new Set(ENTRIES.map((e) => e.name)).size, ENTRIES.length);
  for (const e of ENTRIES) assert.equal((await e.load()).name, e.name);
});

test("the file each line names instantiates its channel suite and its RPC suite", () => {
  for (const e of ENTRIES) {
    assert.ok(source(e.file).includes(`await conformance("${e.name}");`), `tests/${e.file}.test.ts runs ${e.name}`);
    if (e.rpc !== undefined) {
      const file = e.rpc.file ?? "rpc";
      assert.ok(source(file).includes(`await rpcConformanceFor("${file}");`), `tests/${file}.test.ts runs RPC`);
    }
  }
});

test("no fixture module is left off the list, and no test file calls a suite with a fixture of its own", () => {
  const listed = new Set(ENTRIES.map((e) => e.name));
  for (const f of readdirSync(`${TESTS}conformance`)) {
    const m = /^fixtures_(\w+)\.ts$/.exec(f);
    if (m && m[1] !== "datagram") assert.ok(listed.has(m[1]!), `${f} is on the list`);
  }
  for (const f of readdirSync(TESTS).filter((f) => f.endsWith(".test.ts"))) {
    const text = readFileSync(`${TESTS}${f}`, "utf8");
    assert.doesNotMatch(text, /^(channel|datagram|rpc)Conformance\(/m, `${f} goes through the registry`);
  }
});

test("an unknown name is refused with the list", () => {
  assert.throws(() => entry("carrier-pigeon"), /No fixture "carrier-pigeon".*unix,tcp/);
});
