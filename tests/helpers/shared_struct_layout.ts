/**
 * What `tests/shared_struct.test.ts` shares with its children (`shared_struct_child.ts`, one per runtime) and
 * worker threads (`shared_struct_worker.ts`): the schemas and the values each side writes.
 *
 * In the segment, struct `k` sits at `BASE + k * size`: struct 0 is the parent's, struct `k` (1 to 3) the `k`th
 * child's. Children add to struct 0's counters at once, after a start barrier on its `started` field.
 *
 * @module
 */
import type { SharedStruct, Snapshot } from "../../sync/shared_struct.ts";

/** One field of every kind, plus counters. */
export const SCHEMA = {
  started: "u32",
  hits: "u32",
  total: "i64",
  i8: "i8",
  u8: "u8",
  i16: "i16",
  u16: "u16",
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  f32: "f32",
  f64: "f64",
  flag: "bool",
  label: { type: "string", capacity: 30 },
  bytes: { type: "u8", length: 5 },
  shorts: { type: "i16", length: 3 },
  floats: { type: "f32", length: 2 },
  doubles: { type: "f64", length: 3 },
  longs: { type: "u64", length: 2 },
} as const;

export type Values = Omit<Snapshot<typeof SCHEMA>, "started" | "hits" | "total">;

/** Where struct 0 starts in the segment: not 0, so offsets are exercised. */
export const BASE = 64;
/** Atomic adds each child makes on struct 0's `hits` (+1) and `total` (+k). */
export const ADDS = 100_000;
/** `hits` before the children add: close to 2^32, so their adds wrap around. */
export const HITS_START = 2 ** 32 - 7_000;

/** The values of struct `k`: extremes of every type, and a different set per `k`. */
export function valuesFor(k: number): Values {
  return {
    i8: k % 2 === 0 ? 127 - k : -128 + k,
    u8: 255 - k,
    i16: -32768 + k,
    u16: 65535 - k,
    i32: -(2 ** 31) + k,
    u32: 2 ** 32 - 1 - k,
    i64: -(2n ** 63n) + BigInt(k),
    u64: 2n ** 64n - 1n - BigInt(k),
    f32: 1.5 + k, // exactly representable in 32 bits
    f64: Math.PI * (k + 1),
    flag: k % 2 === 0,
    label: ["é".repeat(15), "deno ✓", "bun 🎉", "node: ünïcödé"][k % 4]!,
    bytes: Uint8Array.from([k, 1, 2, 254, 255]),
    shorts: Int16Array.from([-32768, k, 32767]),
    floats: Float32Array.from([0.25, -k - 0.5]),
    doubles: Float64Array.from([Number.MAX_VALUE, k / 3, -1e-300]),
    longs: BigUint64Array.from([2n ** 64n - 1n, BigInt(k)]),
  };
}

/** Writes `values` into `s` with `set`. */
export function writeValues(s: SharedStruct<typeof SCHEMA>, values: Values): void {
  for (const [name, value] of Object.entries(values)) s.set(name as keyof Values, value as never);
}

/** Where `s` differs from `values`, as readable lines; empty when it holds them all. */
export function mismatches(s: SharedStruct<typeof SCHEMA>, values: Values): string[] {
  const out: string[] = [];
  for (const [name, want] of Object.entries(values)) {
    const got = s.get(name as keyof Values);
    const same = ArrayBuffer.isView(want)
      ? Array.from(got as Uint8Array).every((x, i) => Object.is(x, (want as Uint8Array)[i]))
      : Object.is(got, want);
    if (!same) out.push(`${name}: got ${String(got)}, expected ${String(want)}`);
  }
  return out;
}

/** The schema the worker threads share. */
export const WORKER_SCHEMA = {
  count: "i32",
  total: "u64",
  small: "u16",
  down: "i8",
  casCount: "u32",
  name: { type: "string", capacity: 16 },
  samples: { type: "f64", length: 4 },
} as const;

/** What a worker posts back when its adds are done: what it read through its own SharedStruct. */
export interface WorkerReport {
  readonly name: string;
  readonly samples: number[];
}

/** A SharedStruct type over {@linkcode WORKER_SCHEMA}, for the worker's `from()`. */
export type WorkerStruct = SharedStruct<typeof WORKER_SCHEMA>;
