/**
 * `SharedStruct`: typed fields at C-compatible offsets in shared memory, the "global variables" of threads and
 * processes. On a `SharedArrayBuffer` it is shared with worker threads (`SharedStruct.from(s.handle)`); in a
 * shared memory segment it is shared with other processes of any runtime, and with C and Python programs that map
 * the same segment (see {@linkcode StructLayout.cDeclaration} and {@linkcode StructLayout.structFormat}).
 * (Over 400 lines: one class with a method per access kind, each documented with a runnable example; the layout and
 * the value checks are in struct_layout.ts and struct_values.ts.)
 *
 * `get`/`set` are plain reads and writes. `load`, `store`, `add`, `sub`, `cas` and `exchange` are atomic
 * (sequentially consistent) on integer fields, and `load`/`store`/`cas`/`exchange` on bool fields; they are atomic
 * across processes too, because they are CPU atomics on the mapped memory. Strings and arrays are written element
 * by element, not atomically as a whole: guard them with a lock, or publish them with an atomic flag.
 *
 * @example
 * ```ts
 * import { runtime, SharedMemory, SharedStruct, type StructHandle } from "ipckit";
 * const schema = { count: "i32", total: "u64", name: { type: "string", capacity: 32 } } as const;
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * if (parent !== null) {
 *   // A worker thread (this same module): the same memory, rebuilt from the handle.
 *   parent.onMessage((handle) => {
 *     const stats = SharedStruct.from(handle as StructHandle<typeof schema>);
 *     stats.add("count", 1);
 *     parent.postMessage(stats.fields.name);
 *   });
 * } else {
 *   // Between threads: on a SharedArrayBuffer.
 *   const stats = new SharedStruct(schema);
 *   stats.add("count", 1); // atomic, returns the old value
 *   stats.fields.name = "ingest";
 *   const worker = rt.worker(new URL(import.meta.url));
 *   const reply = new Promise((resolve) => worker.onMessage(resolve));
 *   worker.postMessage(stats.handle);
 *   console.log(await reply, stats.get("count")); // "ingest" 2
 *   await worker.terminate();
 *
 *   // Between processes: each one places the same schema at the same offset of one segment.
 *   const name = `/ipckit-stats-${rt.pid}`;
 *   using shm = await SharedMemory.create(name, { size: 4096 }); // others: SharedMemory.open(name)
 *   const shared = SharedStruct.in(shm, 0, schema);
 *   shared.add("total", 512n);
 *   console.log(SharedStruct.in(shm, 0, schema).get("total")); // 512n
 *   shm.unlink();
 * }
 * ```
 *
 * @module
 */
import { ClosedError } from "../errors.ts";
import {
  type FieldLayout,
  type IntegerType,
  isIntegerType,
  type NumericType,
  type Schema,
  StructLayout,
  typeLabel,
} from "./struct_layout.ts";
import {
  type ArrayField,
  type AtomicField,
  checkDelta,
  checkNumber,
  type ElementOf,
  type FieldInput,
  type Fields,
  type FieldValue,
  type IntegerField,
  show,
  type Snapshot,
  type View,
  VIEWS,
} from "./struct_values.ts";

export type {
  ArraySpec,
  FieldKind,
  FieldLayout,
  FieldSpec,
  FloatType,
  IntegerType,
  NumericType,
  ScalarType,
  Schema,
  StringSpec,
} from "./struct_layout.ts";
export { StructLayout } from "./struct_layout.ts";
export type {
  ArrayField,
  ArrayTypes,
  AtomicField,
  ElementOf,
  ElementValue,
  FieldInput,
  Fields,
  FieldValue,
  IntegerField,
  Snapshot,
} from "./struct_values.ts";

/** What rebuilds a struct in another worker thread: post it, then `SharedStruct.from(handle)`. */
export interface StructHandle<S extends Schema = Schema> {
  /** Always "SharedStruct", checked by `from()`. */
  readonly type: "SharedStruct";
  readonly buffer: SharedArrayBuffer;
  readonly offset: number;
  readonly schema: S;
}

/** Memory a struct can live in: an ipckit `SharedMemory`, or any ArrayBuffer or SharedArrayBuffer. */
export type StructMemory = ArrayBuffer | SharedArrayBuffer | {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  readonly closed?: boolean;
  readonly readOnly?: boolean;
  readonly name?: string;
};

/** What a struct checks of a segment it lives in. */
interface Segment {
  readonly closed?: boolean;
  readonly readOnly?: boolean;
  readonly name?: string;
}

/** Atomics, typed loosely: the views are a union the overloads do not take. */
const atomics = Atomics as unknown as
  & Record<
    "load" | "store" | "add" | "sub" | "exchange",
    (view: View, index: number, value?: number | bigint) => number | bigint
  >
  & { compareExchange(view: View, index: number, expected: number | bigint, value: number | bigint): number | bigint };

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One field's views over the struct's memory. */
interface Slot {
  readonly field: FieldLayout;
  /** Length 1 for a scalar, `length` for an array, the bytes of a string. */
  readonly view: View;
  /** A string's byte length. */
  readonly stringLength: Uint32Array | undefined;
}

/** Set by {@linkcode SharedStruct.in} for the constructor it calls, so that `new` alone always allocates. */
let placement: { buffer: ArrayBuffer | SharedArrayBuffer; offset: number; source: StructMemory } | undefined;

/**
 * Typed fields in shared memory. See the module documentation for what is atomic.
 *
 * @typeParam S The schema: field names to types, inferred from the argument.
 *
 * @example
 * ```ts
 * import { SharedStruct } from "ipckit";
 * const s = new SharedStruct({
 *   hits: "u32",
 *   bytes: "u64",
 *   ready: "bool",
 *   host: { type: "string", capacity: 16 },
 *   load: { type: "f64", length: 3 },
 * });
 * s.set("host", "db-1"); // plain writes (guard strings and arrays with a lock, or publish with a flag)
 * s.setAt("load", 0, 0.5);
 * console.log(s.add("hits", 1), s.sub("hits", 1)); // 0 1: atomic, each returns the value before
 * s.store("ready", true); // atomic store; load() is the atomic read
 * console.log(s.exchange("bytes", 10n), s.cas("bytes", 10n, 20n)); // 0n 10n: cas swapped since 10n matched
 * console.log(s.load("bytes"), s.getAt("load", 0), s.get("host")); // 20n 0.5 "db-1"
 * console.log(s.snapshot()); // { hits: 0, bytes: 20n, ready: true, host: "db-1", load: [0.5, 0, 0] }
 * ```
 */
export class SharedStruct<const S extends Schema = Schema> {
  /** The layout: offsets, size, alignment; `describe()`, `cDeclaration()`, `structFormat()`. */
  readonly layout: StructLayout<S>;
  /** The memory the struct lives in. */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Its byte offset in `buffer`. */
  readonly offset: number;
  /** A property per field, read and written like `get`/`set` (`s.fields.count += 1` is not atomic: use `add`). */
  readonly fields: Fields<S>;
  readonly #slots = new Map<string, Slot>();
  /** The SharedMemory (or the like) it lives in, checked for close and read-only; undefined on a bare buffer. */
  readonly #segment: Segment | undefined;

  /**
   * Lays out the fields of `schema` at C-compatible offsets. The layout can be passed to `new SharedStruct()` and
   * `SharedStruct.in()` in place of the schema.
   *
   * @throws {TypeError} for a schema with no fields, a name that is not a C identifier, an unknown type or option.
   * @throws {RangeError} for a length or capacity that is not an integer >= 1.
   *
   * @example
   * ```ts
   * import { SharedStruct } from "ipckit";
   * const layout = SharedStruct.layout({ flag: "u8", value: "f64" });
   * console.log(layout.size, layout.offsetOf("value")); // 16 8: C aligns the double to 8
   * ```
   */
  static layout<const S extends Schema>(schema: S): StructLayout<S> {
    return new StructLayout(schema);
  }

  /**
   * The layout of `schema` as a table and a C declaration: `SharedStruct.layout(schema).describe()`.
   *
   * @example
   * ```ts
   * import { SharedStruct } from "ipckit";
   * console.log(SharedStruct.describe({ id: "u32", score: "f32" }, "entry")); // a table, then struct entry { ... }
   * ```
   */
  static describe(schema: Schema | StructLayout, name?: string): string {
    return (schema instanceof StructLayout ? schema : new StructLayout(schema)).describe(name);
  }

  /**
   * Allocates a zero-filled struct on a new SharedArrayBuffer, to share with worker threads through `handle`.
   *
   * @throws {TypeError} or {@linkcode RangeError} for a bad schema, as {@linkcode SharedStruct.layout}.
   */
  constructor(schema: S | StructLayout<S>) {
    const placed = placement;
    placement = undefined;
    this.layout = schema instanceof StructLayout ? schema : new StructLayout(schema);
    this.buffer = placed?.buffer ?? new SharedArrayBuffer(this.layout.size);
    this.offset = placed?.offset ?? 0;
    const source = placed?.source;
    const bare = source === undefined || source instanceof ArrayBuffer || source instanceof SharedArrayBuffer;
    this.#segment = bare ? undefined : source;
    const fields = Object.create(null) as Record<string, unknown>;
    for (const field of this.layout.fields) {
      const at = this.offset + field.offset;
      const string = field.kind === "string";
      const view = new VIEWS[string ? "u8" : field.type as NumericType | "bool"](
        this.buffer,
        string ? at + 4 : at,
        string ? field.capacity : field.length,
      );
      const stringLength = string ? new Uint32Array(this.buffer, at, 1) : undefined;
      this.#slots.set(field.name, { field, view, stringLength });
      const name = field.name as keyof S & string;
      const get = () => this.get(name);
      const set = (value: FieldInput<S[keyof S & string]>) => this.set(name, value);
      Object.defineProperty(
        fields,
        name,
        field.kind === "array" ? { enumerable: true, get } : { enumerable: true, get, set },
      );
    }
    this.fields = Object.seal(fields) as Fields<S>;
  }

  /**
   * Places a struct in existing memory at `offset`, without touching it: a new segment is zero-filled, so every
   * field starts as 0, false or "". Other processes place the same schema at the same offset of the same segment.
   *
   * @param memory An ipckit `SharedMemory` (the struct stops working with ClosedError once it is closed), an
   *   ArrayBuffer or a SharedArrayBuffer.
   * @param offset Byte offset in `memory`, a multiple of the layout's `align`.
   * @param schema The schema (or its layout), the same in every process.
   * @throws {TypeError} for something that is not memory (a typed array: pass its `buffer` and an offset).
   * @throws {RangeError} for an offset that is misaligned or leaves too little room.
   *
   * @example
   * ```ts
   * import { runtime, runtimeArgv, SharedMemory, SharedStruct } from "ipckit";
   * const schema = { jobs: "u32", last: { type: "string", capacity: 32 } } as const;
   * const rt = await runtime();
   * const [role, name] = rt.args();
   * if (role === "child") {
   *   using segment = await SharedMemory.open(name!);
   *   const state = SharedStruct.in(segment, 0, schema); // same schema, same offset
   *   state.add("jobs", 1);
   *   state.set("last", `from ${rt.name}`);
   * } else {
   *   const name = `/ipckit-state-${rt.pid}`;
   *   using segment = await SharedMemory.create(name, { size: 4096 }); // zero-filled: every field 0 or ""
   *   try {
   *     const state = SharedStruct.in(segment, 0, schema);
   *     await rt.spawn([...runtimeArgv("deno", rt.fromFileUrl(import.meta.url)), "child", name], {
   *       stdio: "inherit",
   *     }).exited;
   *     console.log(state.get("jobs"), state.get("last")); // 1 "from deno"
   *   } finally {
   *     segment.unlink();
   *   }
   * }
   * ```
   */
  static in<const S extends Schema>(
    memory: StructMemory,
    offset: number,
    schema: S | StructLayout<S>,
  ): SharedStruct<S> {
    const layout = schema instanceof StructLayout ? schema : new StructLayout(schema);
    const buffer = bufferOf(memory);
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new RangeError(`Cannot place a SharedStruct at offset ${show(offset)}: it must be an integer >= 0`);
    }
    if (offset % layout.align !== 0) {
      throw new RangeError(
        `Cannot place a SharedStruct at offset ${offset}: it must be a multiple of the struct's alignment, ${layout.align}`,
      );
    }
    if (offset + layout.size > buffer.byteLength) {
      throw new RangeError(
        `Cannot place a SharedStruct (${layout.size} bytes) at offset ${offset}: the memory holds only ${buffer.byteLength} bytes`,
      );
    }
    placement = { buffer, offset, source: memory };
    try {
      return new SharedStruct(layout);
    } finally {
      placement = undefined;
    }
  }

  /**
   * Rebuilds a struct from another worker's `handle`: both see the same memory.
   *
   * @throws {TypeError} when `handle` is not a struct handle.
   *
   * @example
   * ```ts
   * import { SharedStruct } from "ipckit";
   * const original = new SharedStruct({ n: "i32" });
   * const rebuilt = SharedStruct.from(original.handle); // usually in a worker, from a posted handle
   * rebuilt.add("n", 5);
   * console.log(original.get("n")); // 5: the same memory
   * ```
   */
  static from<S extends Schema>(handle: StructHandle<S>): SharedStruct<S> {
    const h = handle as Partial<StructHandle<S>> | null;
    if (
      h === null || typeof h !== "object" || h.type !== "SharedStruct" || !(h.buffer instanceof SharedArrayBuffer) ||
      typeof h.offset !== "number" || h.schema === undefined
    ) {
      throw new TypeError(
        `Cannot rebuild a SharedStruct: ${show(handle)} is not a SharedStruct's handle (pass s.handle)`,
      );
    }
    return SharedStruct.in(h.buffer, h.offset, h.schema);
  }

  /**
   * What another worker thread passes to {@linkcode SharedStruct.from}: the SharedArrayBuffer, offset and schema.
   *
   * @throws {TypeError} when the struct is not on a SharedArrayBuffer (in a segment, every process maps the
   *   segment and calls `SharedStruct.in()` itself).
   */
  get handle(): StructHandle<S> {
    if (!(this.buffer instanceof SharedArrayBuffer)) {
      throw new TypeError(
        "Cannot make a handle of a struct that is not on a SharedArrayBuffer: map its segment in the other process " +
          "and use SharedStruct.in()",
      );
    }
    return { type: "SharedStruct", buffer: this.buffer, offset: this.offset, schema: this.layout.schema };
  }

  /** Bytes the struct takes (its layout's size). */
  get size(): number {
    return this.layout.size;
  }

  /** True once the SharedMemory it lives in is closed: every access throws ClosedError then. */
  get closed(): boolean {
    return this.#segment?.closed === true;
  }

  /**
   * True in a SharedMemory opened with `readOnly`: writes throw TypeError instead of crashing the process (never
   * write through an array field's view there: that crashes it).
   */
  get readOnly(): boolean {
    return this.#segment?.readOnly === true;
  }

  #slot(name: unknown, verb: string, write = false): Slot {
    const slot = typeof name === "string" ? this.#slots.get(name) : undefined;
    if (slot === undefined) {
      const names = [...this.#slots.keys()].join(", ");
      throw new TypeError(`Cannot ${verb} field ${show(name)}: the struct has no such field (it has ${names})`);
    }
    const segment = this.#segment;
    if (segment !== undefined && (segment.closed === true || (write && segment.readOnly === true))) {
      const what = typeof segment.name === "string" ? `shared memory "${segment.name}"` : "its shared memory";
      const prefix = `Cannot ${verb} field "${slot.field.name}": ${what}`;
      throw segment.closed === true ? new ClosedError(`${prefix} is closed`) : new TypeError(`${prefix} is read-only`);
    }
    return slot;
  }

  /** The slot of an atomic operation, checked: integers only, or integers and bools. */
  #atomic(name: unknown, verb: string, bool: boolean, write = true): Slot {
    const slot = this.#slot(name, verb, write);
    const { field } = slot;
    const ok = (field.kind === "number" || field.kind === "bigint") && isIntegerType(field.type);
    if (!ok && !(bool && field.kind === "bool")) {
      throw new TypeError(
        `Cannot ${verb} field "${field.name}": atomic ${verb.split(" ")[0]} works on integer ${
          bool ? "and bool " : ""
        }fields, and it is ${typeLabel(field)}`,
      );
    }
    return slot;
  }

  /**
   * Reads a field (a plain read). An array field gives a live typed-array view of the struct's memory: writes to
   * it change the struct, and `Atomics` work on it (`Atomics.add(s.get("hits"), 3, 1)`); `.slice()` copies it.
   * A string is decoded as UTF-8 (invalid bytes become U+FFFD; a length past the capacity is cut to it).
   *
   * @throws {TypeError} for an unknown field.
   */
  get<K extends keyof S & string>(name: K): FieldValue<S[K]> {
    const { field, view, stringLength } = this.#slot(name, "get");
    switch (field.kind) {
      case "bool":
        return (view[0] !== 0) as FieldValue<S[K]>;
      case "string": {
        const length = Math.min(stringLength![0]!, field.capacity);
        return decoder.decode((view as Uint8Array).slice(0, length)) as FieldValue<S[K]>;
      }
      case "array":
        return view as FieldValue<S[K]>;
      default:
        return view[0] as FieldValue<S[K]>;
    }
  }

  /**
   * Writes a field (a plain write). An array field takes an array-like of exactly its length; a string must fit
   * its capacity in UTF-8 (the bytes after it are zeroed). Everything is checked before anything is written.
   *
   * @throws {TypeError} for an unknown field, a value of the wrong type (i64 and u64 take bigints), read-only memory.
   * @throws {RangeError} for a number out of the type's range, a string too long, an array of the wrong length.
   */
  set<K extends keyof S & string>(name: K, value: FieldInput<S[K]>): void {
    const { field, view, stringLength } = this.#slot(name, "set", true);
    const what = `set field "${field.name}"`;
    switch (field.kind) {
      case "bool":
        if (typeof value !== "boolean") throw new TypeError(`Cannot ${what}: bool takes a boolean, got ${show(value)}`);
        view[0] = value ? 1 : 0;
        return;
      case "string": {
        if (typeof value !== "string") throw new TypeError(`Cannot ${what}: it takes a string, got ${show(value)}`);
        const bytes = encoder.encode(value);
        if (bytes.length > field.capacity) {
          throw new RangeError(
            `Cannot ${what}: ${
              show(value)
            } is ${bytes.length} bytes in UTF-8, more than its capacity of ${field.capacity}`,
          );
        }
        (view as Uint8Array).set(bytes);
        (view as Uint8Array).fill(0, bytes.length);
        stringLength![0] = bytes.length;
        return;
      }
      case "array": {
        const list = value as ArrayLike<unknown>;
        if (list === null || typeof list !== "object" || typeof list.length !== "number") {
          throw new TypeError(`Cannot ${what}: it takes an array or typed array, got ${show(value)}`);
        }
        if (list.length !== field.length) {
          throw new RangeError(`Cannot ${what}: it holds ${field.length} elements, got ${list.length}`);
        }
        const checked = Array.from(
          { length: field.length },
          (_, i) => checkNumber(field.type as NumericType, list[i], `set element ${i} of field "${field.name}"`),
        );
        (view as Float64Array).set(checked as number[]);
        return;
      }
      default:
        view[0] = checkNumber(field.type as NumericType, value, what) as number;
    }
  }

  #element(name: unknown, index: unknown, verb: "get" | "set"): Slot {
    const slot = this.#slot(name, `${verb} an element of`, verb === "set");
    const { field } = slot;
    if (field.kind !== "array") {
      throw new TypeError(
        `Cannot ${verb} an element of field "${field.name}": it is ${typeLabel(field)}, not an array`,
      );
    }
    if (!Number.isInteger(index) || (index as number) < 0 || (index as number) >= field.length) {
      throw new RangeError(
        `Cannot ${verb} element ${show(index)} of field "${field.name}": the index must be an integer from 0 to ${
          field.length - 1
        }`,
      );
    }
    return slot;
  }

  /**
   * Reads element `index` of an array field.
   *
   * @throws {TypeError} for an unknown or non-array field; {@linkcode RangeError} for an index out of range.
   */
  getAt<K extends ArrayField<S>>(name: K, index: number): ElementOf<S[K]> {
    return this.#element(name, index, "get").view[index] as ElementOf<S[K]>;
  }

  /**
   * Writes element `index` of an array field.
   *
   * @throws {TypeError} for an unknown or non-array field, or a value of the wrong type.
   * @throws {RangeError} for an index or value out of range.
   */
  setAt<K extends ArrayField<S>>(name: K, index: number, value: ElementOf<S[K]>): void {
    const { field, view } = this.#element(name, index, "set");
    view[index] = checkNumber(
      field.type as NumericType,
      value,
      `set element ${index} of field "${field.name}"`,
    ) as never;
  }

  /**
   * Reads an integer or bool field atomically.
   *
   * @throws {TypeError} for an unknown field or one of another type.
   */
  load<K extends AtomicField<S>>(name: K): FieldValue<S[K]> {
    const { field, view } = this.#atomic(name, "load", true, false);
    const value = atomics.load(view, 0);
    return (field.kind === "bool" ? value !== 0 : value) as FieldValue<S[K]>;
  }

  /**
   * Writes an integer or bool field atomically.
   *
   * @throws {TypeError} for an unknown field, one of another type, or a value of the wrong type.
   * @throws {RangeError} for a value out of range.
   */
  store<K extends AtomicField<S>>(name: K, value: FieldValue<S[K]>): void {
    const { field, view } = this.#atomic(name, "store", true);
    atomics.store(view, 0, this.#operand(field, value, "store"));
  }

  #operand(field: FieldLayout, value: unknown, verb: string): number | bigint {
    const what = `${verb} field "${field.name}"`;
    if (field.kind !== "bool") return checkNumber(field.type as NumericType, value, what);
    if (typeof value !== "boolean") throw new TypeError(`Cannot ${what}: bool takes a boolean, got ${show(value)}`);
    return value ? 1 : 0;
  }

  /**
   * Adds `delta` atomically. The sum wraps modulo 2^bits as in C (`u8` 255 + 1 is 0, `i8` 127 + 1 is -128).
   *
   * @returns The value before the addition.
   * @throws {TypeError} for an unknown or non-integer field, or a delta of the wrong type (bigint for i64/u64).
   * @throws {RangeError} for a delta that is not a safe integer.
   */
  add<K extends IntegerField<S>>(name: K, delta: FieldValue<S[K]>): FieldValue<S[K]> {
    const { field, view } = this.#atomic(name, "add to", false);
    return atomics.add(view, 0, checkDelta(field.type as IntegerType, delta, `add to field "${field.name}"`)) as never;
  }

  /**
   * Subtracts `delta` atomically, wrapping around like `add`.
   *
   * @returns The value before the subtraction.
   * @throws {TypeError} for an unknown or non-integer field, or a delta of the wrong type.
   * @throws {RangeError} for a delta that is not a safe integer.
   */
  sub<K extends IntegerField<S>>(name: K, delta: FieldValue<S[K]>): FieldValue<S[K]> {
    const { field, view } = this.#atomic(name, "subtract from", false);
    const d = checkDelta(field.type as IntegerType, delta, `subtract from field "${field.name}"`);
    return atomics.sub(view, 0, d) as never;
  }

  /**
   * Writes `value` atomically.
   *
   * @returns The value before.
   * @throws {TypeError} for an unknown field, one of another type, or a value of the wrong type.
   * @throws {RangeError} for a value out of range.
   */
  exchange<K extends AtomicField<S>>(name: K, value: FieldValue<S[K]>): FieldValue<S[K]> {
    const { field, view } = this.#atomic(name, "exchange", true);
    const old = atomics.exchange(view, 0, this.#operand(field, value, "exchange"));
    return (field.kind === "bool" ? old !== 0 : old) as FieldValue<S[K]>;
  }

  /**
   * Compare-and-swap: writes `replacement` if the field holds `expected`, atomically.
   *
   * @returns The value before: equal to `expected` when the swap happened.
   * @throws {TypeError} for an unknown field, one of another type, or values of the wrong type.
   * @throws {RangeError} for values out of range.
   */
  cas<K extends AtomicField<S>>(name: K, expected: FieldValue<S[K]>, replacement: FieldValue<S[K]>): FieldValue<S[K]> {
    const { field, view } = this.#atomic(name, "cas", true);
    const e = this.#operand(field, expected, "cas");
    const r = this.#operand(field, replacement, "cas");
    const old = atomics.compareExchange(view, 0, e, r);
    return (field.kind === "bool" ? old !== 0 : old) as FieldValue<S[K]>;
  }

  /** Every field's value (plain reads), arrays copied: a plain, structured-cloneable object. */
  snapshot(): Snapshot<S> {
    const out: Record<string, unknown> = {};
    for (const name of this.#slots.keys()) {
      const value = this.get(name as keyof S & string);
      out[name] = ArrayBuffer.isView(value) ? (value as Float64Array).slice() : value;
    }
    return out as Snapshot<S>;
  }
}

/** The buffer of a struct's memory. */
function bufferOf(memory: StructMemory): ArrayBuffer | SharedArrayBuffer {
  if (memory instanceof ArrayBuffer || memory instanceof SharedArrayBuffer) return memory;
  if (ArrayBuffer.isView(memory)) {
    throw new TypeError(
      "Cannot place a SharedStruct in a typed array: pass its buffer, and its byteOffset as the offset",
    );
  }
  const buffer = typeof memory === "object" && memory !== null ? memory.buffer : undefined;
  if (buffer instanceof ArrayBuffer || buffer instanceof SharedArrayBuffer) return buffer;
  throw new TypeError(
    `Cannot place a SharedStruct in ${show(memory)}: expected a SharedMemory, an ArrayBuffer or a SharedArrayBuffer`,
  );
}
