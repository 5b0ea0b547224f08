/**
 * The byte layout of a {@linkcode SharedStruct}: fields at the offsets a C compiler gives the same struct on x86-64
 * and arm64 (each field naturally aligned, in declaration order, the total padded to the largest alignment), so C
 * and Python programs can map the same memory. A layout describes itself as a table, as a C declaration with
 * `_Static_assert`s on every offset, and as a Python `struct` format.
 *
 * Field types: `i8 u8 i16 u16 i32 u32 i64 u64 f32 f64 bool` (bool is one byte, 0 or 1), fixed arrays of a numeric
 * type (`{ type: "f64", length: 8 }`), and UTF-8 strings of fixed capacity (`{ type: "string", capacity: 32 }`),
 * stored as `struct { uint32_t length; char bytes[capacity]; }`: the byte length, then the bytes, zero-filled (its
 * size rounded up to a multiple of 4, as C does).
 *
 * @example
 * ```ts
 * import { SharedStruct } from "ipckit";
 * const layout = SharedStruct.layout({ count: "i32", total: "u64", name: { type: "string", capacity: 32 } });
 * console.log(layout.size, layout.offsetOf("total")); // 56 8
 * console.log(layout.describe()); // a table and the C declaration
 * console.log(layout.structFormat()); // "=i4xQI32s4x", for Python's struct.unpack_from
 * ```
 *
 * @module
 */

/** Integer field types; i64 and u64 hold bigints. */
export type IntegerType = "i8" | "u8" | "i16" | "u16" | "i32" | "u32" | "i64" | "u64";
/** Floating-point field types. */
export type FloatType = "f32" | "f64";
/** The types an array field may hold. */
export type NumericType = IntegerType | FloatType;
/** The types of a single-value field. */
export type ScalarType = NumericType | "bool";
/** A UTF-8 string of at most `capacity` bytes. */
export interface StringSpec {
  readonly type: "string";
  readonly capacity: number;
}
/** A fixed array of `length` numbers. */
export interface ArraySpec<T extends NumericType = NumericType> {
  readonly type: T;
  readonly length: number;
}
/** One field of a schema. */
export type FieldSpec = ScalarType | StringSpec | ArraySpec;
/** Field names (C identifiers) to field types, in declaration order. */
export type Schema = { readonly [name: string]: FieldSpec };

/** How a field's value is read and written. */
export type FieldKind = "number" | "bigint" | "bool" | "string" | "array";

/** Where one field lives in the struct. */
export interface FieldLayout {
  /** The field's name. */
  readonly name: string;
  /** Its value type; for an array the element type, for a string `"string"`. */
  readonly type: ScalarType | "string";
  /** How its value is read and written. */
  readonly kind: FieldKind;
  /** Byte offset from the start of the struct. */
  readonly offset: number;
  /** Bytes it takes, without the padding before the next field (a string's own tail padding included). */
  readonly size: number;
  /** Its alignment in bytes (the element size; 4 for a string, whose length is a u32). */
  readonly align: number;
  /** Elements of an array field; 1 otherwise. */
  readonly length: number;
  /** Byte capacity of a string field; 0 otherwise. */
  readonly capacity: number;
}

interface TypeInfo {
  readonly size: number;
  readonly c: string;
  readonly py: string;
  readonly kind: "number" | "bigint" | "bool";
}

const TYPES: Readonly<Record<ScalarType, TypeInfo>> = {
  i8: { size: 1, c: "int8_t", py: "b", kind: "number" },
  u8: { size: 1, c: "uint8_t", py: "B", kind: "number" },
  i16: { size: 2, c: "int16_t", py: "h", kind: "number" },
  u16: { size: 2, c: "uint16_t", py: "H", kind: "number" },
  i32: { size: 4, c: "int32_t", py: "i", kind: "number" },
  u32: { size: 4, c: "uint32_t", py: "I", kind: "number" },
  i64: { size: 8, c: "int64_t", py: "q", kind: "bigint" },
  u64: { size: 8, c: "uint64_t", py: "Q", kind: "bigint" },
  f32: { size: 4, c: "float", py: "f", kind: "number" },
  f64: { size: 8, c: "double", py: "d", kind: "number" },
  bool: { size: 1, c: "bool", py: "?", kind: "bool" },
};

/** The largest struct: 4 GiB, the largest segment ipckit maps. */
export const MAX_STRUCT_SIZE = 2 ** 32;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function isScalarType(type: unknown): type is ScalarType {
  return typeof type === "string" && Object.hasOwn(TYPES, type);
}

/** Whether a field type is an integer type (the atomic add/sub/cas/exchange work on these). */
export function isIntegerType(type: string): type is IntegerType {
  return isScalarType(type) && type !== "bool" && type !== "f32" && type !== "f64";
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

function describeValue(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (value === null || typeof value !== "object") return String(value);
  return Array.isArray(value) ? "an array" : "an object";
}

const TYPE_LIST = `${Object.keys(TYPES).join(", ")} or { type: "string", capacity }`;

function checkCount(value: unknown, name: string, what: "length" | "capacity"): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1 || (value as number) > MAX_STRUCT_SIZE) {
    throw new RangeError(
      `Cannot lay out field "${name}": ${what} must be an integer from 1 to ${MAX_STRUCT_SIZE}, got ${
        describeValue(value)
      }`,
    );
  }
  return value as number;
}

/** Size, alignment and kind of one field spec, checked. */
function measure(name: string, spec: unknown): Omit<FieldLayout, "name" | "offset"> {
  if (isScalarType(spec)) {
    const t = TYPES[spec];
    return { type: spec, kind: t.kind, size: t.size, align: t.size, length: 1, capacity: 0 };
  }
  if (spec === null || typeof spec !== "object" || Array.isArray(spec)) {
    throw new TypeError(`Cannot lay out field "${name}": its type must be ${TYPE_LIST}, got ${describeValue(spec)}`);
  }
  const { type } = spec as { type?: unknown };
  const allowed = type === "string" ? "capacity" : "length";
  for (const key of Object.keys(spec)) {
    if (key !== "type" && key !== allowed) {
      throw new TypeError(`Cannot lay out field "${name}": unknown option "${key}" for type ${describeValue(type)}`);
    }
  }
  if (type === "string") {
    const capacity = checkCount((spec as StringSpec).capacity, name, "capacity");
    // A C struct { uint32_t length; char bytes[capacity]; }: its size is a multiple of 4.
    return { type: "string", kind: "string", size: alignUp(4 + capacity, 4), align: 4, length: 1, capacity };
  }
  if (!isScalarType(type) || type === "bool") {
    throw new TypeError(
      `Cannot lay out field "${name}": an array holds one of ${
        Object.keys(TYPES).filter((t) => t !== "bool").join(", ")
      }, got ${describeValue(type)}`,
    );
  }
  if (!("length" in spec)) {
    throw new TypeError(`Cannot lay out field "${name}": an array needs a length (write "${type}" for one value)`);
  }
  const length = checkCount((spec as ArraySpec).length, name, "length");
  const size = TYPES[type].size;
  return { type, kind: "array", size: size * length, align: size, length, capacity: 0 };
}

/** The C declaration of one field (without the semicolon). */
function cMember(f: FieldLayout): string {
  if (f.kind === "string") return `struct { uint32_t length; char bytes[${f.capacity}]; } ${f.name}`;
  const c = TYPES[f.type as ScalarType].c;
  return f.kind === "array" ? `${c} ${f.name}[${f.length}]` : `${c} ${f.name}`;
}

/** A field's type as tables and messages show it: `i32`, `f64[8]`, `string(32)`. */
export function typeLabel(f: FieldLayout): string {
  if (f.kind === "string") return `string(${f.capacity})`;
  return f.kind === "array" ? `${f.type}[${f.length}]` : f.type;
}

function padding(bytes: number): string {
  return `${bytes} byte${bytes === 1 ? "" : "s"} of padding`;
}

/**
 * The byte layout of a schema. Build it with `SharedStruct.layout(schema)` (or `new StructLayout(schema)`); it is
 * immutable and can be shared by many structs.
 *
 * @example
 * ```ts
 * import { SharedStruct, StructLayout } from "ipckit";
 * const layout = new StructLayout({ id: "u32", ratio: "f64" }); // or SharedStruct.layout(schema)
 * console.log(layout.size, layout.align, layout.offsetOf("ratio")); // 16 8 8
 * console.log(layout.structFormat()); // "=I4xd": for Python's struct.unpack_from
 * console.log(layout.cDeclaration("entry")); // struct entry { uint32_t id; ... } with _Static_asserts
 * const a = new SharedStruct(layout); // one layout, many structs
 * console.log(a.size); // 16
 * ```
 */
export class StructLayout<S extends Schema = Schema> {
  /** A frozen copy of the schema. */
  readonly schema: S;
  /** The fields in declaration order. */
  readonly fields: readonly FieldLayout[];
  /** Bytes the struct takes, a multiple of `align` (what C's `sizeof` gives). */
  readonly size: number;
  /** The largest field alignment: the struct's offset in memory must be a multiple of it. */
  readonly align: number;
  readonly #byName: ReadonlyMap<string, FieldLayout>;

  /**
   * Lays out `schema`.
   *
   * @throws {TypeError} for a schema with no fields, a name that is not a C identifier, an unknown type or option.
   * @throws {RangeError} for a length or capacity that is not an integer >= 1, or a struct over 4 GiB.
   */
  constructor(schema: S) {
    if (schema === null || typeof schema !== "object" || Array.isArray(schema)) {
      throw new TypeError(
        `Cannot lay out a struct: the schema must be an object of fields, got ${describeValue(schema)}`,
      );
    }
    const fields: FieldLayout[] = [];
    const copy: Record<string, FieldSpec> = {};
    let end = 0;
    let align = 1;
    for (const name of Object.keys(schema)) {
      if (!IDENTIFIER.test(name)) {
        throw new TypeError(
          `Cannot lay out field ${JSON.stringify(name)}: a field name must be a C identifier (letters, digits and _, ` +
            "not starting with a digit)",
        );
      }
      const spec = schema[name];
      const m = measure(name, spec);
      const offset = alignUp(end, m.align);
      fields.push(Object.freeze({ name, offset, ...m }));
      copy[name] = typeof spec === "string" ? spec : Object.freeze({ ...spec }) as FieldSpec;
      end = offset + m.size;
      align = Math.max(align, m.align);
    }
    if (fields.length === 0) throw new TypeError("Cannot lay out a struct: the schema has no fields");
    const size = alignUp(end, align);
    if (size > MAX_STRUCT_SIZE) {
      throw new RangeError(`Cannot lay out a struct of ${size} bytes: the largest is ${MAX_STRUCT_SIZE} (4 GiB)`);
    }
    this.schema = Object.freeze(copy) as S;
    this.fields = Object.freeze(fields);
    this.size = size;
    this.align = align;
    this.#byName = new Map(fields.map((f) => [f.name, f]));
  }

  /**
   * The layout of field `name`.
   *
   * @throws {TypeError} when there is no such field.
   */
  field(name: string): FieldLayout {
    const f = this.#byName.get(name);
    if (f === undefined) {
      throw new TypeError(
        `Cannot find field ${describeValue(name)}: the struct has ${this.fields.map((f) => f.name).join(", ")}`,
      );
    }
    return f;
  }

  /**
   * The byte offset of field `name` from the start of the struct.
   *
   * @throws {TypeError} when there is no such field.
   */
  offsetOf(name: keyof S & string): number {
    return this.field(name).offset;
  }

  /**
   * The C declaration of the struct, with `<stdint.h>` types, padding comments and a `_Static_assert` on its size,
   * its alignment and every offset, so a C program that includes it fails to compile if its compiler disagrees.
   *
   * @param name The struct tag, a C identifier; `shared_struct` by default.
   * @throws {TypeError} when `name` is not a C identifier.
   */
  cDeclaration(name = "shared_struct"): string {
    if (!IDENTIFIER.test(name)) {
      throw new TypeError(`Cannot name a C struct ${describeValue(name)}: not a C identifier`);
    }
    const members: [string, string][] = [];
    let end = 0;
    for (const f of this.fields) {
      if (f.offset > end) members.push([`/* ${padding(f.offset - end)} */`, ""]);
      const tail = f.kind === "string" ? `, UTF-8, length <= ${f.capacity}` : "";
      members.push([`${cMember(f)};`, `/* offset ${f.offset}, ${f.size} byte${f.size === 1 ? "" : "s"}${tail} */`]);
      end = f.offset + f.size;
    }
    if (this.size > end) members.push([`/* ${padding(this.size - end)} at the end */`, ""]);
    const width = Math.max(...members.map(([m, c]) => (c ? m.length : 0)));
    const tag = `struct ${name}`;
    return [
      "#include <stdbool.h>",
      "#include <stddef.h>",
      "#include <stdint.h>",
      "",
      `${tag} { /* ${this.size} bytes, aligned to ${this.align} */`,
      ...members.map(([m, c]) => `  ${c ? `${m.padEnd(width)} ${c}` : m}`),
      "};",
      `_Static_assert(sizeof(${tag}) == ${this.size}, "size of ${tag}");`,
      `_Static_assert(_Alignof(${tag}) == ${this.align}, "alignment of ${tag}");`,
      ...this.fields.map((f) =>
        `_Static_assert(offsetof(${tag}, ${f.name}) == ${f.offset}, "offset of ${tag}.${f.name}");`
      ),
    ].join("\n") + "\n";
  }

  /**
   * The format for Python's `struct` module (`struct.unpack_from(fmt, shm.buf, offset)`): native byte order,
   * standard sizes, padding as `x`. Values come out flat, in field order: one per scalar (bool as `True`/`False`),
   * `length` per array, and two per string (its byte length, then `capacity` bytes).
   */
  structFormat(): string {
    let format = "=";
    let end = 0;
    for (const f of this.fields) {
      if (f.offset > end) format += `${f.offset - end}x`;
      if (f.kind === "string") {
        const tail = f.size - 4 - f.capacity;
        format += `I${f.capacity}s${tail > 0 ? `${tail}x` : ""}`;
      } else {
        format += `${f.kind === "array" ? f.length : ""}${TYPES[f.type as ScalarType].py}`;
      }
      end = f.offset + f.size;
    }
    return this.size > end ? `${format}${this.size - end}x` : format;
  }

  /**
   * The layout as text: size and alignment, a table of offsets, sizes and padding, then {@linkcode cDeclaration}.
   *
   * @param name The C struct tag; `shared_struct` by default.
   */
  describe(name = "shared_struct"): string {
    const rows: string[][] = [["offset", "size", "align", "field", "type"]];
    let end = 0;
    const pad = (at: number, bytes: number) => rows.push([`${at}`, `${bytes}`, "", "(padding)", ""]);
    for (const f of this.fields) {
      if (f.offset > end) pad(end, f.offset - end);
      rows.push([`${f.offset}`, `${f.size}`, `${f.align}`, f.name, typeLabel(f)]);
      end = f.offset + f.size;
    }
    if (this.size > end) pad(end, this.size - end);
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const table = rows.map((r) =>
      r.map((cell, i) => (i < 3 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))).join("  ").trimEnd()
    );
    return [
      `struct ${name}: ${this.size} bytes, aligned to ${this.align}`,
      "",
      ...table,
      "",
      `Python struct format: ${this.structFormat()}`,
      "",
      this.cDeclaration(name),
    ].join("\n");
  }
}
