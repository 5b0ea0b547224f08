/**
 * `SharedStruct` (sync/shared_struct.ts) and its layout (sync/struct_layout.ts): C-compatible offsets (by hand, by
 * property, and by a C compiler), reads and writes of every type, atomics, bad input, and peers: worker threads,
 * deno, bun and node children mapping the same segment, and Python's `multiprocessing.shared_memory` with
 * `struct.unpack_from`.
 *
 * Every segment gets a unique name `/ipckit-test-ss-<pid>-<random>` and is removed in a `finally`; the last test
 * checks that none is left in /dev/shm.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { type ChildProcess, ClosedError, type ExitStatus, NotFoundError, type RuntimeName } from "../mod.ts";
import { type FieldSpec, type Schema, SharedStruct, type StructLayout } from "../sync/shared_struct.ts";
import { SharedMemory } from "../shm/segment.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import {
  ADDS,
  BASE,
  HITS_START,
  mismatches,
  SCHEMA,
  type Values,
  valuesFor,
  WORKER_SCHEMA,
  type WorkerReport,
  writeValues,
} from "./helpers/shared_struct_layout.ts";

const rt = await runtime();
const RUNTIMES: readonly RuntimeName[] = ["deno", "bun", "node"];
const ROOT = rt.fromFileUrl(new URL("..", import.meta.url));
const CHILD = rt.fromFileUrl(new URL("./helpers/shared_struct_child.ts", import.meta.url));
const WORKER = new URL("./helpers/shared_struct_worker.ts", import.meta.url);
const OK: ExitStatus = { code: 0, signal: null };
/** A child still running after this long is killed (a watchdog, not a timing assertion). */
const CHILD_DEADLINE_MS = 90_000;
/** fast-check runs per property; a failure prints its seed, and IPCKIT_FC_SEED replays it. */
const NUM_RUNS = 200;

const BRIEF = {
  count: "i32",
  total: "u64",
  ratio: "f64",
  ready: "bool",
  name: { type: "string", capacity: 32 },
  samples: { type: "f64", length: 8 },
} as const;

/** Every name this file hands out, for the final leftover check. */
const allNames = new Set<string>();

function uniqueName(): string {
  const name = `/ipckit-test-ss-${rt.pid}-${Math.random().toString(36).slice(2, 10)}`;
  allNames.add(name);
  return name;
}

/** Runs `fn` with a new segment of `size` bytes, closed and unlinked afterwards. */
async function withSegment(size: number, fn: (shm: SharedMemory) => Promise<void> | void): Promise<void> {
  const shm = await SharedMemory.create(uniqueName(), { size });
  try {
    await fn(shm);
  } finally {
    shm.close();
    await SharedMemory.unlink(shm.name).catch((e) => {
      if (!(e instanceof NotFoundError)) throw e;
    });
  }
}

/** Waits for a child, killing it if it runs past the watchdog deadline (then its status shows the signal). */
async function exitStatus(child: ChildProcess): Promise<ExitStatus> {
  const timer = setTimeout(() => child.kill("SIGKILL"), CHILD_DEADLINE_MS);
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Runs children to their end (stderr to ours); if anything throws, they are killed and reaped first. */
async function runChildren(argvs: string[][], stderr: "inherit" | "null" = "inherit"): Promise<ExitStatus[]> {
  const children: ChildProcess[] = [];
  let done = false;
  try {
    for (const argv of argvs) children.push(rt.spawn(argv, { cwd: ROOT, stdio: "null", stderr }));
    const statuses = await Promise.all(children.map(exitStatus));
    done = true;
    return statuses;
  } finally {
    if (!done) {
      for (const child of children) child.kill("SIGKILL");
      await Promise.allSettled(children.map((c) => c.exited));
    }
  }
}

/** The struct's bytes, copied. */
function bytesOf(s: SharedStruct<Schema>): Uint8Array {
  return new Uint8Array(s.buffer, s.offset, s.size).slice();
}

/** Asserts that `fn` throws `type` with `message` and leaves the struct's bytes as they were. */
function assertRejected(
  s: SharedStruct<Schema>,
  fn: () => unknown,
  type: typeof TypeError | typeof RangeError,
  message: string | RegExp,
): void {
  const before = bytesOf(s);
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof type, `${String(e)} is a ${type.name}`);
    if (typeof message === "string") assert.equal(e.message, message);
    else assert.match(e.message, message);
    return true;
  });
  assert.deepEqual(bytesOf(s), before, `nothing written by a call that threw "${String(message)}"`);
}

/** The fast-check seed: IPCKIT_FC_SEED to replay one, a fresh one otherwise. */
function seed(): number {
  const fixed = rt.env("IPCKIT_FC_SEED");
  return fixed === undefined ? (Date.now() ^ (Math.random() * 2 ** 31)) | 0 : Number(fixed);
}

/** Runs a property, naming its seed when it fails. */
function checkProperty<T>(arb: fc.Arbitrary<T>, predicate: (value: T) => void, numRuns = NUM_RUNS): void {
  const s = seed();
  try {
    fc.assert(fc.property(arb, predicate), { numRuns, seed: s });
  } catch (e) {
    throw new Error(`Property failed with seed ${s} (replay: IPCKIT_FC_SEED=${s}): ${(e as Error).message}`);
  }
}

const NUMERIC = ["i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64", "f32", "f64"] as const;
const fieldArb: fc.Arbitrary<FieldSpec> = fc.oneof(
  fc.constantFrom(...NUMERIC, "bool"),
  fc.record({ type: fc.constant("string" as const), capacity: fc.integer({ min: 1, max: 70 }) }),
  fc.record({ type: fc.constantFrom(...NUMERIC), length: fc.integer({ min: 1, max: 12 }) }),
);
const schemaArb: fc.Arbitrary<Schema> = fc.array(fieldArb, { minLength: 1, maxLength: 14 }).map((specs) =>
  Object.fromEntries(specs.map((spec, i) => [`f${i}`, spec]))
);

const ELEMENT_SIZE: Record<string, number> = { i8: 1, u8: 1, bool: 1, i16: 2, u16: 2, i32: 4, u32: 4, f32: 4 };

/** Size and alignment of a spec, computed here independently of the library. */
function expectedSize(spec: FieldSpec): [size: number, align: number] {
  if (typeof spec === "string") return [ELEMENT_SIZE[spec] ?? 8, ELEMENT_SIZE[spec] ?? 8];
  if (spec.type === "string") return [Math.ceil((4 + spec.capacity) / 4) * 4, 4];
  const e = ELEMENT_SIZE[spec.type] ?? 8;
  return [e * spec.length, e];
}

/** Bytes a Python struct format describes (standard sizes, no alignment: what `=` means). */
function formatSize(format: string): number {
  assert.equal(format[0], "=");
  const sizes: Record<string, number> = { x: 1, b: 1, B: 1, "?": 1, h: 2, H: 2, i: 4, I: 4, f: 4, q: 8, Q: 8, d: 8 };
  let total = 0;
  for (const [, count, code] of format.slice(1).matchAll(/(\d*)([a-zA-Z?])/g)) {
    total += (count === "" ? 1 : Number(count)) * (code === "s" ? 1 : sizes[code!]!);
  }
  return total;
}

// Layout

test("SharedStruct.layout() puts fields at the offsets a C compiler gives on x86-64 and arm64", () => {
  const cases: [Schema, Record<string, number>, number, number][] = [
    [BRIEF, { count: 0, total: 8, ratio: 16, ready: 24, name: 28, samples: 64 }, 128, 8],
    [{ a: "u8", b: "u16", c: "u8", d: "u32", e: "u8" }, { a: 0, b: 2, c: 4, d: 8, e: 12 }, 16, 4],
    [{ flag: "bool", big: "i64", tail: "i8" }, { flag: 0, big: 8, tail: 16 }, 24, 8],
    [{ x: "u8" }, { x: 0 }, 1, 1],
    [{ s: { type: "string", capacity: 5 }, b: "u8" }, { s: 0, b: 12 }, 16, 4],
    [{ s: { type: "string", capacity: 30 }, d: "f64" }, { s: 0, d: 40 }, 48, 8],
    [
      { a: { type: "u8", length: 3 }, b: { type: "i16", length: 3 }, c: { type: "f32", length: 1 }, d: "u8" },
      { a: 0, b: 4, c: 12, d: 16 },
      20,
      4,
    ],
    [{ h: "i16", f: "f32", q: { type: "u64", length: 2 }, z: "bool" }, { h: 0, f: 4, q: 8, z: 24 }, 32, 8],
  ];
  for (const [schema, offsets, size, align] of cases) {
    const layout = SharedStruct.layout(schema);
    const got = Object.fromEntries(layout.fields.map((f) => [f.name, f.offset]));
    assert.deepEqual(got, offsets, JSON.stringify(schema));
    for (const name of Object.keys(offsets)) assert.equal(layout.offsetOf(name), offsets[name]);
    assert.equal(layout.size, size, `size of ${JSON.stringify(schema)}`);
    assert.equal(layout.align, align, `alignment of ${JSON.stringify(schema)}`);
  }
  const layout = SharedStruct.layout(BRIEF);
  assert.deepEqual(layout.field("name"), {
    name: "name",
    offset: 28,
    type: "string",
    kind: "string",
    size: 36,
    align: 4,
    length: 1,
    capacity: 32,
  });
  assert.throws(() => layout.offsetOf("nope" as never), /^TypeError: Cannot find field "nope": the struct has count,/);
  // The layout keeps a frozen copy: changing the schema object afterwards changes nothing.
  const schema: Record<string, FieldSpec> = { a: "u8", b: { type: "u16", length: 2 } };
  const copy = SharedStruct.layout(schema);
  schema.a = "f64";
  (schema.b as { length: number }).length = 100;
  assert.deepEqual(copy.schema, { a: "u8", b: { type: "u16", length: 2 } });
  assert.equal(copy.size, 6);
  assert.ok(Object.isFrozen(copy.schema) && Object.isFrozen(copy.fields));
  assert.equal(new SharedStruct(copy).size, 6, "a layout can stand for its schema");
});

test("SharedStruct.layout() of random schemas: fields aligned, in order, not overlapping, C's padding only", () => {
  checkProperty(schemaArb, (schema) => {
    const layout = SharedStruct.layout(schema);
    const specs = Object.values(schema);
    assert.deepEqual(layout.fields.map((f) => f.name), Object.keys(schema), "declaration order");
    let end = 0;
    let maxAlign = 1;
    layout.fields.forEach((f, i) => {
      const [size, align] = expectedSize(specs[i]!);
      assert.equal(f.size, size, `${f.name} size`);
      assert.equal(f.align, align, `${f.name} alignment`);
      assert.equal(f.offset % align, 0, `${f.name} at ${f.offset} is aligned to ${align}`);
      assert.ok(f.offset >= end, `${f.name} at ${f.offset} does not overlap the field ending at ${end}`);
      assert.ok(f.offset < end + align, `${f.name} at ${f.offset}: no more padding than alignment needs`);
      end = f.offset + f.size;
      maxAlign = Math.max(maxAlign, align);
    });
    assert.equal(layout.align, maxAlign);
    assert.equal(layout.size % maxAlign, 0, "the size is a multiple of the alignment");
    assert.ok(layout.size >= end && layout.size < end + maxAlign, "tail padding only up to the alignment");
    assert.equal(formatSize(layout.structFormat()), layout.size, "the Python format covers every byte");
  });
});

test("SharedStruct: values written to each field of a random schema read back, and no write touches another field", () => {
  const valueArb = (spec: FieldSpec): fc.Arbitrary<unknown> => {
    const type = typeof spec === "string" ? spec : spec.type;
    const one: fc.Arbitrary<unknown> = type === "bool"
      ? fc.boolean()
      : type === "string"
      ? fc.string({ unit: "grapheme", maxLength: 8 }).filter((t) =>
        new TextEncoder().encode(t).length <= (spec as { capacity: number }).capacity
      )
      : type === "f32"
      ? fc.float({ noNaN: true }).map(Math.fround)
      : type === "f64"
      ? fc.double({ noNaN: true })
      : type === "i64"
      ? fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n })
      : type === "u64"
      ? fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })
      : fc.integer({
        min: type[0] === "u" ? 0 : -(2 ** (Number(type.slice(1)) - 1)),
        max: type[0] === "u" ? 2 ** Number(type.slice(1)) - 1 : 2 ** (Number(type.slice(1)) - 1) - 1,
      });
    return typeof spec === "object" && "length" in spec
      ? fc.array(one, { minLength: spec.length, maxLength: spec.length })
      : one;
  };
  const caseArb = schemaArb.chain((schema) =>
    fc.tuple(fc.constant(schema), fc.tuple(...Object.values(schema).map(valueArb)))
  );
  checkProperty(caseArb, ([schema, values]) => {
    const s = new SharedStruct(schema);
    const names = Object.keys(schema);
    names.forEach((name, i) => s.set(name, values[i] as never));
    names.forEach((name, i) => {
      const got = s.get(name);
      const want = values[i];
      if (ArrayBuffer.isView(got)) assert.deepEqual(Array.from(got as Float64Array), want, name);
      else assert.ok(Object.is(got, want), `${name}: ${String(got)} !== ${String(want)}`);
    });
  }, 100);
});

test("layout.structFormat() gives Python's struct format: padding as x, strings as I + bytes, arrays counted", () => {
  assert.equal(SharedStruct.layout(BRIEF).structFormat(), "=i4xQd?3xI32s8d");
  assert.equal(SharedStruct.layout({ x: "u8", y: "u32", z: "u8" }).structFormat(), "=B3xIB3x");
  assert.equal(SharedStruct.layout({ s: { type: "string", capacity: 30 }, b: "i8" }).structFormat(), "=I30s2xb3x");
  assert.equal(
    SharedStruct.layout({ a: "i16", b: { type: "u16", length: 3 }, c: "f32", d: "i64" }).structFormat(),
    "=h3Hf4xq",
  );
});

test("layout.describe() shows size, alignment, a table with padding rows and the C declaration", () => {
  const text = SharedStruct.layout(BRIEF).describe("stats");
  assert.equal(SharedStruct.describe(BRIEF, "stats"), text);
  const lines = text.split("\n");
  assert.equal(lines[0], "struct stats: 128 bytes, aligned to 8");
  for (
    const row of [
      /^\s*0\s+4\s+4\s+count\s+i32$/,
      /^\s*4\s+4\s+\(padding\)$/,
      /^\s*8\s+8\s+8\s+total\s+u64$/,
      /^\s*24\s+1\s+1\s+ready\s+bool$/,
      /^\s*25\s+3\s+\(padding\)$/,
      /^\s*28\s+36\s+4\s+name\s+string\(32\)$/,
      /^\s*64\s+64\s+8\s+samples\s+f64\[8\]$/,
    ]
  ) {
    assert.ok(lines.some((l) => row.test(l)), `a row matching ${row}`);
  }
  assert.ok(text.includes("Python struct format: =i4xQd?3xI32s8d"));
  assert.ok(text.includes(SharedStruct.layout(BRIEF).cDeclaration("stats")));
  const c = SharedStruct.layout(BRIEF).cDeclaration("stats");
  for (
    const piece of [
      "struct stats { /* 128 bytes, aligned to 8 */",
      "  /* 4 bytes of padding */",
      "  struct { uint32_t length; char bytes[32]; } name; /* offset 28, 36 bytes, UTF-8, length <= 32 */",
      "  double samples[8];",
      '_Static_assert(sizeof(struct stats) == 128, "size of struct stats");',
      '_Static_assert(offsetof(struct stats, samples) == 64, "offset of struct stats.samples");',
    ]
  ) {
    assert.ok(c.includes(piece), `the C declaration has ${piece}\n${c}`);
  }
  assert.throws(() => SharedStruct.layout(BRIEF).cDeclaration("not a name"), TypeError);
});

/** Whether a C compiler runs here. */
async function hasCc(): Promise<boolean> {
  try {
    return (await rt.spawn(["cc", "--version"], { stdio: "null", stderr: "null" }).exited).code === 0;
  } catch {
    return false;
  }
}

/** Compiles C `source` (syntax and static assertions only); its exit status. */
async function compileC(source: string, stderr: "inherit" | "null"): Promise<ExitStatus> {
  const script = 'printf "%s" "$1" | cc -std=c11 -pedantic -Wall -Werror -fsyntax-only -x c -';
  const [status] = await runChildren([["sh", "-c", script, "sh", source]], stderr);
  return status!;
}

test("layout.cDeclaration() compiles with cc, and its _Static_asserts hold for fixed and random schemas", {
  timeout: 60_000,
}, async (t) => {
  if (!(await hasCc())) {
    t.skip("no C compiler (cc) on this machine");
    return;
  }
  const s = seed();
  const schemas: Schema[] = [BRIEF, SCHEMA, WORKER_SCHEMA, ...fc.sample(schemaArb, { numRuns: 40, seed: s })];
  const source = schemas.map((schema, i) => SharedStruct.layout(schema).cDeclaration(`s${i}`)).join("\n");
  assert.deepEqual(await compileC(source, "inherit"), OK, `cc rejected the declarations (fast-check seed ${s})`);
  // The assertions are live: a wrong offset does not compile.
  const wrong = SharedStruct.layout(BRIEF).cDeclaration("w").replace(
    "offsetof(struct w, total) == 8",
    "offsetof(struct w, total) == 4",
  );
  assert.notEqual((await compileC(wrong, "null")).code, 0, "a wrong offset fails to compile");
});

// Reads and writes

test("SharedStruct get/set and fields read and write every type; a new struct is zero-filled", () => {
  const s = new SharedStruct(SCHEMA);
  assert.equal(s.get("i32"), 0);
  assert.equal(s.get("u64"), 0n);
  assert.equal(s.get("flag"), false);
  assert.equal(s.get("label"), "");
  assert.deepEqual(Array.from(s.get("doubles")), [0, 0, 0]);
  for (const k of [0, 1, 2, 3]) {
    const values = valuesFor(k);
    writeValues(s, values);
    assert.deepEqual(mismatches(s, values), [], `values ${k}`);
    const snap = s.snapshot();
    for (const [name, want] of Object.entries(values)) {
      assert.deepEqual(snap[name as keyof Values], want, name);
      const viaFields = s.fields[name as keyof Values];
      assert.deepEqual(ArrayBuffer.isView(viaFields) ? viaFields.slice() : viaFields, want, `fields.${name}`);
    }
  }
  s.fields.label = "via fields ✓";
  s.fields.u64 = 5n;
  s.fields.flag = false;
  assert.equal(s.get("label"), "via fields ✓");
  assert.equal(s.get("u64"), 5n);
  assert.equal(s.get("flag"), false);
  assert.throws(() => {
    (s.fields as Record<string, unknown>).nope = 1;
  }, TypeError);
});

test("SharedStruct.get() of an array gives a live view of the struct's memory; snapshot() copies it", () => {
  const s = new SharedStruct(BRIEF);
  const view = s.get("samples");
  assert.ok(view instanceof Float64Array);
  assert.equal(view.buffer, s.buffer);
  assert.equal(view.byteOffset, s.layout.offsetOf("samples"));
  assert.equal(view.length, 8);
  view[3] = 2.5;
  assert.equal(s.getAt("samples", 3), 2.5);
  s.setAt("samples", 4, -1);
  assert.equal(view[4], -1);
  const snap = s.snapshot();
  s.setAt("samples", 3, 9);
  assert.equal(snap.samples[3], 2.5, "the snapshot is a copy");
  s.set("samples", [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(Array.from(view), [1, 2, 3, 4, 5, 6, 7, 8]);
  s.set("samples", new Float64Array(8).fill(0.5));
  assert.deepEqual(Array.from(view), new Array(8).fill(0.5));
  // Atomics work on the views of integer arrays.
  const t = new SharedStruct({ hits: { type: "i32", length: 4 } });
  Atomics.add(t.get("hits"), 2, 5);
  assert.equal(t.getAt("hits", 2), 5);
});

test("SharedStruct strings: UTF-8 up to the capacity in bytes, the rest zeroed, the length as a u32 before them", () => {
  const s = new SharedStruct({ tag: "u8", name: { type: "string", capacity: 8 } });
  const at = s.layout.offsetOf("name");
  s.set("name", "abcdefgh");
  assert.equal(s.get("name"), "abcdefgh");
  s.set("name", "é✓"); // 2 + 3 bytes
  assert.equal(s.get("name"), "é✓");
  assert.equal(new Uint32Array(s.buffer, at, 1)[0], 5);
  assert.deepEqual([...new Uint8Array(s.buffer, at + 4, 8)], [0xc3, 0xa9, 0xe2, 0x9c, 0x93, 0, 0, 0]);
  s.set("name", "");
  assert.equal(s.get("name"), "");
  assert.deepEqual([...new Uint8Array(s.buffer, at + 4, 8)], [0, 0, 0, 0, 0, 0, 0, 0]);
  // A length past the capacity (written by a faulty peer) is cut to the capacity, never read beyond.
  new Uint8Array(s.buffer, at + 4, 8).set([...new TextEncoder().encode("12345678")]);
  new Uint32Array(s.buffer, at, 1)[0] = 1000;
  assert.equal(s.get("name"), "12345678");
});

// Atomics

test("SharedStruct add/sub/exchange/cas return the old value and wrap around like C", () => {
  const s = new SharedStruct({ a: "u8", b: "i8", c: "u16", d: "i32", e: "u32", f: "i64", g: "u64", ok: "bool" });
  assert.equal(s.add("a", 200), 0);
  assert.equal(s.add("a", 100), 200);
  assert.equal(s.load("a"), 44, "u8 wraps modulo 256");
  assert.equal(s.sub("a", 45), 44);
  assert.equal(s.get("a"), 255);
  s.store("b", 127);
  assert.equal(s.add("b", 1), 127);
  assert.equal(s.get("b"), -128, "i8 wraps to -128");
  assert.equal(s.sub("c", 1), 0);
  assert.equal(s.get("c"), 65535);
  s.store("d", 2 ** 31 - 1);
  s.add("d", 1);
  assert.equal(s.get("d"), -(2 ** 31));
  assert.equal(s.sub("e", 1), 0);
  assert.equal(s.get("e"), 2 ** 32 - 1);
  assert.equal(s.add("f", -5n), 0n);
  assert.equal(s.load("f"), -5n);
  s.store("g", 2n ** 64n - 1n);
  assert.equal(s.add("g", 2n), 2n ** 64n - 1n);
  assert.equal(s.load("g"), 1n);
  assert.equal(s.exchange("d", 7), -(2 ** 31));
  assert.equal(s.get("d"), 7);
  assert.equal(s.cas("d", 6, 9), 7, "no swap when the value differs");
  assert.equal(s.get("d"), 7);
  assert.equal(s.cas("d", 7, 9), 7, "swap");
  assert.equal(s.get("d"), 9);
  assert.equal(s.cas("g", 1n, 2n ** 63n), 1n);
  assert.equal(s.get("g"), 2n ** 63n);
  assert.equal(s.cas("e", 2 ** 32 - 1, 3), 2 ** 32 - 1, "u32 values above 2^31 compare as unsigned");
  assert.equal(s.get("e"), 3);
  assert.equal(s.load("ok"), false);
  assert.equal(s.cas("ok", false, true), false);
  assert.equal(s.load("ok"), true);
  assert.equal(s.exchange("ok", false), true);
  s.store("ok", true);
  assert.equal(s.get("ok"), true);
});

test(
  "SharedStruct: N worker threads x M atomic adds on shared fields give exactly N*M",
  { timeout: 120_000 },
  async () => {
    const N = 4;
    const M = 5_000;
    const s = new SharedStruct(WORKER_SCHEMA);
    s.set("name", "from main ✓");
    s.set("samples", [1.5, -2, 1e300, 0.1]);
    const workers = Array.from({ length: N }, (_, i) => rt.worker(WORKER, { name: `shared-struct-${i}` }));
    try {
      const reports = await Promise.all(workers.map((w) =>
        new Promise<WorkerReport>((resolve, reject) => {
          w.onMessage((m) => resolve(m as WorkerReport));
          w.onError(reject);
          w.postMessage({ handle: s.handle, adds: M });
        })
      ));
      for (const report of reports) assert.deepEqual(report, { name: "from main ✓", samples: [1.5, -2, 1e300, 0.1] });
    } finally {
      await Promise.all(workers.map((w) => w.terminate()));
    }
    assert.equal(s.get("count"), N * M);
    assert.equal(s.get("total"), BigInt(N * M * 3));
    assert.equal(s.get("small"), (N * M) % 65536);
    assert.equal(s.get("down"), ((-(N * M) % 256) + 256 + 128) % 256 - 128, "i8 wrapped");
    assert.equal(s.get("casCount"), N * M);
  },
);

test("SharedStruct.from(handle) sees the same memory, also at an offset in a bigger SharedArrayBuffer", () => {
  const buffer = new SharedArrayBuffer(1024);
  const a = SharedStruct.in(buffer, 256, BRIEF);
  const handle = a.handle;
  assert.deepEqual(Object.keys(handle).sort(), ["buffer", "offset", "schema", "type"]);
  assert.equal(handle.offset, 256);
  const b = SharedStruct.from(handle);
  a.set("name", "shared");
  b.add("count", 3);
  assert.equal(b.get("name"), "shared");
  assert.equal(a.get("count"), 3);
  assert.ok(new Uint8Array(buffer, 0, 256).every((x) => x === 0), "nothing before the struct is touched");
  assert.ok(new Uint8Array(buffer, 256 + a.size).every((x) => x === 0), "nothing after it either");
  assert.equal(new SharedStruct(BRIEF).handle.buffer.byteLength, 128);
});

test("SharedStruct.in() works on a plain ArrayBuffer, atomics included, but gives no handle", () => {
  const s = SharedStruct.in(new ArrayBuffer(256), 128, BRIEF);
  s.add("count", 2);
  assert.equal(s.cas("count", 2, 5), 2);
  assert.equal(s.get("count"), 5);
  assert.throws(() => s.handle, TypeError);
});

// Bad input

test("SharedStruct rejects unknown fields and wrong value types with TypeError, writing nothing", () => {
  const s = new SharedStruct(BRIEF) as unknown as SharedStruct<Schema>;
  s.set("count", 1);
  s.set("name", "kept");
  const fieldList = "count, total, ratio, ready, name, samples";
  assertRejected(
    s,
    () => s.get("nope"),
    TypeError,
    `Cannot get field "nope": the struct has no such field (it has ${fieldList})`,
  );
  assertRejected(
    s,
    () => s.set("toString", 1),
    TypeError,
    /^Cannot set field "toString": the struct has no such field/,
  );
  assertRejected(s, () => s.get("__proto__"), TypeError, /no such field/);
  assertRejected(s, () => s.add("nope", 1), TypeError, /^Cannot add to field "nope"/);
  assertRejected(s, () => s.set("count", "5"), TypeError, 'Cannot set field "count": i32 takes a number, got "5"');
  assertRejected(s, () => s.set("count", 5n), TypeError, 'Cannot set field "count": i32 takes a number, got 5n');
  assertRejected(s, () => s.set("total", 5), TypeError, 'Cannot set field "total": u64 takes a bigint, got 5');
  assertRejected(s, () => s.set("ratio", "1.5"), TypeError, /f64 takes a number/);
  assertRejected(s, () => s.set("ready", 1), TypeError, 'Cannot set field "ready": bool takes a boolean, got 1');
  assertRejected(s, () => s.set("name", 42), TypeError, 'Cannot set field "name": it takes a string, got 42');
  assertRejected(s, () => s.set("samples", 5), TypeError, /it takes an array or typed array, got 5/);
  assertRejected(
    s,
    () => s.set("samples", [1, 2, 3, 4, 5, 6, 7, "8"] as never),
    TypeError,
    /element 7 .*f64 takes a number/,
  );
  assertRejected(
    s,
    () => s.add("ratio", 1),
    TypeError,
    'Cannot add to field "ratio": atomic add works on integer fields, and it is f64',
  );
  assertRejected(s, () => s.add("ready", 1), TypeError, /atomic add works on integer fields, and it is bool/);
  assertRejected(
    s,
    () => s.load("name"),
    TypeError,
    /atomic load works on integer and bool fields, and it is string\(32\)/,
  );
  assertRejected(s, () => s.cas("samples", 0, 1), TypeError, /it is f64\[8\]/);
  assertRejected(s, () => s.add("total", 1), TypeError, /u64 takes a bigint/);
  assertRejected(s, () => s.store("ready", 1), TypeError, /bool takes a boolean/);
  assertRejected(
    s,
    () => s.getAt("count", 0),
    TypeError,
    'Cannot get an element of field "count": it is i32, not an array',
  );
  assert.equal(s.get("count"), 1);
  assert.equal(s.get("name"), "kept");
});

test("SharedStruct rejects out-of-range numbers, long strings, bad lengths and indexes with RangeError, writing nothing", () => {
  const s = new SharedStruct({ ...BRIEF, small: "u8", arr: { type: "i16", length: 3 } }) as unknown as SharedStruct<
    Schema
  >;
  s.set("name", "kept");
  s.set("arr", [1, 2, 3]);
  assertRejected(
    s,
    () => s.set("count", 2 ** 31),
    RangeError,
    'Cannot set field "count": 2147483648 is out of range for i32 (-2147483648 to 2147483647)',
  );
  assertRejected(s, () => s.set("count", 1.5), RangeError, 'Cannot set field "count": i32 takes an integer, got 1.5');
  assertRejected(s, () => s.set("small", -1), RangeError, /out of range for u8 \(0 to 255\)/);
  assertRejected(
    s,
    () => s.set("total", -1n),
    RangeError,
    /-1n is out of range for u64 \(0n to 18446744073709551615n\)/,
  );
  assertRejected(s, () => s.set("total", 2n ** 64n), RangeError, /out of range for u64/);
  assertRejected(s, () => s.cas("count", 2 ** 40, 0), RangeError, /out of range for i32/);
  assertRejected(s, () => s.add("count", 0.5), RangeError, /the operand must be a safe integer, got 0.5/);
  assertRejected(
    s,
    () => s.set("name", "x".repeat(33)),
    RangeError,
    `Cannot set field "name": "${"x".repeat(33)}" is 33 bytes in UTF-8, more than its capacity of 32`,
  );
  assertRejected(s, () => s.set("name", "é".repeat(16) + "x"), RangeError, /is 33 bytes in UTF-8/);
  s.set("name", "é".repeat(16)); // exactly 32 bytes
  assert.equal(s.get("name"), "é".repeat(16));
  assertRejected(s, () => s.set("arr", [1, 2]), RangeError, 'Cannot set field "arr": it holds 3 elements, got 2');
  assertRejected(s, () => s.set("arr", [1, 2, 40_000]), RangeError, /element 2 of field "arr": 40000 is out of range/);
  for (const index of [-1, 3, 1.5, NaN]) {
    assertRejected(
      s,
      () => s.setAt("arr", index, 0),
      RangeError,
      `Cannot set element ${index} of field "arr": the index must be an integer from 0 to 2`,
    );
    assertRejected(s, () => s.getAt("arr", index), RangeError, /the index must be an integer from 0 to 2/);
  }
  assertRejected(s, () => s.setAt("arr", 0, 1n), TypeError, /i16 takes a number, got 1n/);
  assert.deepEqual(Array.from(s.get("arr") as Int16Array), [1, 2, 3]);
});

test("SharedStruct.layout() rejects bad schemas: no fields, bad names, unknown types and options, bad sizes", () => {
  const bad: [unknown, typeof TypeError | typeof RangeError, RegExp][] = [
    [{}, TypeError, /^Cannot lay out a struct: the schema has no fields$/],
    [null, TypeError, /the schema must be an object of fields, got null/],
    [["i32"], TypeError, /the schema must be an object of fields, got an array/],
    [{ "a-b": "i8" }, TypeError, /^Cannot lay out field "a-b": a field name must be a C identifier/],
    [{ "1st": "i8" }, TypeError, /a field name must be a C identifier/],
    [{ a: "i128" }, TypeError, /^Cannot lay out field "a": its type must be i8, u8, .* got "i128"$/],
    [{ a: 4 }, TypeError, /its type must be/],
    [{ a: { type: "f64", lenght: 3 } }, TypeError, /unknown option "lenght" for type "f64"/],
    [{ a: { type: "string", length: 3 } }, TypeError, /unknown option "length" for type "string"/],
    [{ a: { type: "bool", length: 3 } }, TypeError, /an array holds one of i8, .* got "bool"/],
    [{ a: { type: "f64" } }, TypeError, /an array needs a length \(write "f64" for one value\)/],
    [{ a: { type: "f64", length: 0 } }, RangeError, /length must be an integer from 1 to 4294967296, got 0/],
    [{ a: { type: "u8", length: 2.5 } }, RangeError, /length must be an integer/],
    [{ a: { type: "string", capacity: 0 } }, RangeError, /capacity must be an integer from 1/],
    [{ a: { type: "string" } }, RangeError, /capacity must be an integer from 1 to 4294967296, got undefined/],
    [{ a: { type: "u64", length: 2 ** 29 }, b: "u8" }, RangeError, /^Cannot lay out a struct of 4294967304 bytes/],
  ];
  for (const [schema, type, message] of bad) {
    assert.throws(() => SharedStruct.layout(schema as Schema), (e: unknown) => {
      assert.ok(e instanceof type, `${JSON.stringify(schema)}: ${String(e)}`);
      assert.match((e as Error).message, message);
      return true;
    });
  }
  assert.throws(() => new SharedStruct({}), TypeError);
});

test("SharedStruct.in() rejects misaligned offsets, memory too small, and things that are not memory", async () => {
  const layout = SharedStruct.layout(BRIEF);
  const buffer = new SharedArrayBuffer(256);
  const rangeError = (message: string) => (e: unknown) => {
    assert.ok(e instanceof RangeError, String(e));
    assert.equal(e.message, message);
    return true;
  };
  assert.throws(
    () => SharedStruct.in(buffer, 4, layout),
    rangeError("Cannot place a SharedStruct at offset 4: it must be a multiple of the struct's alignment, 8"),
  );
  assert.throws(
    () => SharedStruct.in(buffer, -8, layout),
    rangeError("Cannot place a SharedStruct at offset -8: it must be an integer >= 0"),
  );
  assert.throws(() => SharedStruct.in(buffer, 1.5, layout), RangeError);
  assert.throws(
    () => SharedStruct.in(buffer, 136, layout),
    rangeError("Cannot place a SharedStruct (128 bytes) at offset 136: the memory holds only 256 bytes"),
  );
  SharedStruct.in(buffer, 128, layout); // the last place that fits
  assert.throws(() => SharedStruct.in(new Uint8Array(buffer) as never, 0, layout), TypeError);
  assert.throws(() => SharedStruct.in("memory" as never, 0, layout), TypeError);
  assert.throws(() => SharedStruct.in({} as never, 0, layout), TypeError);
  const badHandles = [
    {},
    null,
    { type: "Mutex", buffer, offset: 0, schema: BRIEF },
    { type: "SharedStruct", buffer, schema: BRIEF },
    { type: "SharedStruct", buffer: new ArrayBuffer(256), offset: 0, schema: BRIEF },
    { ...layout, buffer },
  ];
  for (const handle of badHandles) {
    assert.throws(
      () => SharedStruct.from(handle as never),
      /Cannot rebuild a SharedStruct: .* is not a SharedStruct's handle/,
    );
  }
  assert.throws(() => SharedStruct.from({ type: "SharedStruct", buffer, offset: 4, schema: BRIEF }), RangeError);
  assert.ok(new Uint8Array(buffer).every((b) => b === 0), "no failed call wrote anything");
  await withSegment(100, (shm) => {
    assert.throws(
      () => SharedStruct.in(shm, 0, layout),
      rangeError("Cannot place a SharedStruct (128 bytes) at offset 0: the memory holds only 100 bytes"),
    );
  });
});

// Shared memory segments and other processes

test("a SharedStruct in a segment is seen through another mapping, and throws ClosedError once its segment is closed", async () => {
  await withSegment(4096, async (shm) => {
    const other = await SharedMemory.open(shm.name);
    try {
      const a = SharedStruct.in(shm, 1024, BRIEF);
      const b = SharedStruct.in(other, 1024, BRIEF);
      a.set("name", "one segment");
      a.add("total", 40n);
      b.add("total", 2n);
      assert.equal(b.get("name"), "one segment");
      assert.equal(a.load("total"), 42n);
      other.close();
      assert.equal(b.closed, true);
      assert.equal(a.closed, false);
      assert.throws(() => b.get("total"), (e: unknown) => {
        assert.ok(e instanceof ClosedError);
        assert.equal(e.message, `Cannot get field "total": shared memory "${shm.name}" is closed`);
        return true;
      });
      assert.throws(() => b.fields.count, ClosedError);
      assert.throws(() => b.add("count", 1), ClosedError);
      assert.equal(a.get("total"), 42n);
    } finally {
      other.close();
    }
  });
});

test("a SharedStruct in a read-only mapping reads, and its writes throw TypeError instead of crashing", async () => {
  await withSegment(4096, async (shm) => {
    const writer = SharedStruct.in(shm, 0, BRIEF);
    writer.set("name", "written before");
    writer.store("count", 5);
    const ro = await SharedMemory.open(shm.name, { readOnly: true });
    try {
      const s = SharedStruct.in(ro, 0, BRIEF);
      assert.equal(s.readOnly, true);
      assert.equal(writer.readOnly, false);
      assert.equal(s.get("name"), "written before");
      assert.equal(s.load("count"), 5);
      assert.equal(s.getAt("samples", 0), 0);
      const message = `Cannot set field "count": shared memory "${shm.name}" is read-only`;
      assert.throws(() => s.set("count", 1), { name: "TypeError", message });
      assert.throws(() => (s.fields.count = 1), TypeError);
      assert.throws(() => s.setAt("samples", 0, 1), /is read-only/);
      for (const write of [() => s.store("count", 1), () => s.add("count", 1), () => s.sub("count", 1)]) {
        assert.throws(write, /is read-only/);
      }
      assert.throws(() => s.exchange("ready", true), /is read-only/);
      assert.throws(() => s.cas("count", 9, 1), /Cannot cas field "count": .* is read-only/);
      writer.add("count", 1);
      assert.equal(s.load("count"), 6, "the read-only mapping sees later writes");
    } finally {
      ro.close();
    }
  });
});

test(
  "a SharedStruct written here in a segment is read back by deno, bun and node children",
  { timeout: 180_000 },
  async () => {
    const layout = SharedStruct.layout(SCHEMA);
    await withSegment(BASE + 4 * layout.size, async (shm) => {
      writeValues(SharedStruct.in(shm, BASE, layout), valuesFor(0));
      const statuses = await runChildren(RUNTIMES.map((r) => [...runtimeArgv(r, CHILD), shm.name, "read"]));
      assert.deepEqual(
        Object.fromEntries(statuses.map((status, i) => [RUNTIMES[i], status])),
        Object.fromEntries(RUNTIMES.map((r) => [r, OK])),
        "every child found the values (else it says what differs on stderr)",
      );
    });
  },
);

test(
  "deno, bun and node children write SharedStructs in a segment read here, and their concurrent atomic adds all count",
  { timeout: 180_000 },
  async () => {
    const layout = SharedStruct.layout(SCHEMA);
    await withSegment(BASE + 4 * layout.size, async (shm) => {
      const parent = SharedStruct.in(shm, BASE, layout);
      parent.store("hits", HITS_START);
      parent.store("total", -5n);
      const statuses = await runChildren(
        RUNTIMES.map((r, i) => [...runtimeArgv(r, CHILD), shm.name, "write", String(i + 1)]),
      );
      assert.deepEqual(
        Object.fromEntries(statuses.map((status, i) => [RUNTIMES[i], status])),
        Object.fromEntries(RUNTIMES.map((r) => [r, OK])),
      );
      for (const k of [1, 2, 3]) {
        const child = SharedStruct.in(shm, BASE + k * layout.size, layout);
        assert.deepEqual(mismatches(child, valuesFor(k)), [], `struct ${k}, written by ${RUNTIMES[k - 1]}`);
      }
      assert.equal(parent.load("started"), 3);
      assert.equal(parent.load("hits"), (HITS_START + 3 * ADDS) % 2 ** 32, "u32 adds from 3 processes, wrapped");
      assert.equal(parent.load("total"), -5n + BigInt(ADDS * (1 + 2 + 3)), "i64 adds from 3 processes");
    });
  },
);

/** Python side of the test below: struct.unpack_from what TypeScript wrote, check it, struct.pack_into a reply. */
const PY_STRUCT_PEER = `
import json, struct, sys
from multiprocessing import resource_tracker, shared_memory
name, fmt, size, read_at, write_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def decode(item):
    kind, value = item
    return int(value) if kind == "i" else float(value) if kind == "f" else value if kind == "b" else bytes.fromhex(value)
expected = [decode(item) for item in json.loads(sys.argv[6])]
reply = [decode(item) for item in json.loads(sys.argv[7])]
try:
    shm = shared_memory.SharedMemory(name=name, track=False)  # Python 3.13+
except TypeError:
    shm = shared_memory.SharedMemory(name=name)
    # Before 3.13 the resource tracker would unlink the segment when this process exits.
    resource_tracker.unregister(shm._name, "shared_memory")
try:
    if struct.calcsize(fmt) != size:
        sys.exit(f"python: calcsize({fmt!r}) is {struct.calcsize(fmt)}, expected {size}")
    got = list(struct.unpack_from(fmt, shm.buf, read_at))
    if got != expected:
        diff = [(i, g, e) for i, (g, e) in enumerate(zip(got, expected)) if g != e]
        sys.exit(f"python: read {len(got)} values, expected {len(expected)}; differences (index, got, expected): {diff}")
    struct.pack_into(fmt, shm.buf, write_at, *reply)
finally:
    shm.close()
`;

type PyValue = ["i", string] | ["f", string] | ["b", boolean] | ["s", string];

/** A struct's values flattened in `structFormat()` order, as the Python peer decodes them. */
function flatten(layout: StructLayout<typeof SCHEMA>, values: Record<string, unknown>): PyValue[] {
  const out: PyValue[] = [];
  const one = (type: string, v: unknown): PyValue =>
    type === "f32" || type === "f64" ? ["f", String(v)] : type === "bool" ? ["b", v as boolean] : ["i", String(v)];
  for (const f of layout.fields) {
    const v = values[f.name];
    if (f.kind === "string") {
      const bytes = new Uint8Array(f.capacity);
      const utf8 = new TextEncoder().encode(v as string);
      bytes.set(utf8);
      out.push(["i", String(utf8.length)], ["s", Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")]);
    } else if (f.kind === "array") {
      for (const x of Array.from(v as ArrayLike<unknown>)) out.push(one(f.type, x));
    } else {
      out.push(one(f.type, v));
    }
  }
  return out;
}

test(
  "a Python peer reads a SharedStruct with struct.unpack_from(layout.structFormat()) and writes one read here",
  { timeout: 60_000 },
  async () => {
    const layout = SharedStruct.layout(SCHEMA);
    await withSegment(BASE + 2 * layout.size, async (shm) => {
      const mine = SharedStruct.in(shm, BASE, layout);
      writeValues(mine, valuesFor(0));
      mine.store("started", 1);
      mine.store("hits", 2 ** 32 - 1);
      mine.store("total", -(2n ** 62n));
      const reply = { ...valuesFor(2), started: 7, hits: 8, total: 9n };
      const [status] = await runChildren([[
        "python3",
        "-c",
        PY_STRUCT_PEER,
        shm.name.slice(1),
        layout.structFormat(),
        String(layout.size),
        String(BASE),
        String(BASE + layout.size),
        JSON.stringify(flatten(layout, mine.snapshot())),
        JSON.stringify(flatten(layout, reply)),
      ]]);
      assert.deepEqual(status, OK);
      const theirs = SharedStruct.in(shm, BASE + layout.size, layout);
      assert.deepEqual(mismatches(theirs, valuesFor(2)), []);
      assert.deepEqual([theirs.get("started"), theirs.get("hits"), theirs.get("total")], [7, 8, 9n]);
      assert.deepEqual(mismatches(mine, valuesFor(0)), [], "Python left the first struct alone");
      assert.equal(await rt.exists(`/dev/shm/${shm.name.slice(1)}`), true, "Python did not unlink the segment");
    });
  },
);

test("no segment created by these tests is left in /dev/shm", async () => {
  const left: string[] = [];
  for (const name of allNames) if (await rt.exists(`/dev/shm/${name.slice(1)}`)) left.push(name);
  assert.deepEqual(left, []);
});
