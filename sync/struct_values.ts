/**
 * The JavaScript side of a {@linkcode SharedStruct}'s fields: the value types a schema gives (inferred, so
 * `s.get("count")` is a number and `s.get("total")` a bigint), the typed arrays over each type, and the checks every
 * write goes through.
 *
 * @module
 */
import { type ArraySpec, type IntegerType, isIntegerType, type NumericType, type StringSpec } from "./struct_layout.ts";

/** The typed array an array field of each type is read as. */
export interface ArrayTypes {
  i8: Int8Array;
  u8: Uint8Array;
  i16: Int16Array;
  u16: Uint16Array;
  i32: Int32Array;
  u32: Uint32Array;
  i64: BigInt64Array;
  u64: BigUint64Array;
  f32: Float32Array;
  f64: Float64Array;
}

/** The JavaScript type of one number of type `T`: bigint for i64 and u64, number otherwise. */
export type ElementValue<T> = T extends "i64" | "u64" ? bigint : number;
/** The value of a field: a number, bigint, boolean, string, or for an array a live typed-array view. */
export type FieldValue<F> = F extends "bool" ? boolean
  : F extends NumericType ? ElementValue<F>
  : F extends StringSpec ? string
  : F extends ArraySpec<infer T> ? ArrayTypes[T]
  : never;
/** What `set` takes for a field: its value, or for an array any array-like of exactly its length. */
export type FieldInput<F> = F extends ArraySpec<infer T> ? ArrayLike<ElementValue<T>> : FieldValue<F>;
/** The element value of an array field. */
export type ElementOf<F> = F extends ArraySpec<infer T> ? ElementValue<T> : never;

type KeysWhere<S, V> = string extends keyof S ? string
  : { [K in keyof S]: S[K] extends V ? K : never }[keyof S] & string;
/** Names of the integer fields (atomic add, sub, cas, exchange, load, store). */
export type IntegerField<S> = KeysWhere<S, IntegerType>;
/** Names of the fields with atomic load, store, cas and exchange: integers and bools. */
export type AtomicField<S> = KeysWhere<S, IntegerType | "bool">;
/** Names of the array fields. */
export type ArrayField<S> = KeysWhere<S, ArraySpec>;
/** The `fields` object: a property per field; array fields are read-only (write through their view). */
export type Fields<S> =
  & { -readonly [K in Exclude<keyof S & string, ArrayField<S>>]: FieldValue<S[K]> }
  & { readonly [K in ArrayField<S>]: FieldValue<S[K]> };
/** All field values at one moment (arrays copied). */
export type Snapshot<S> = { -readonly [K in keyof S & string]: FieldValue<S[K]> };

/** A typed array over one field. */
export type View =
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | BigUint64Array
  | Float32Array
  | Float64Array;
/** A typed-array class. */
export type ViewClass = new (buffer: ArrayBuffer | SharedArrayBuffer, offset: number, length: number) => View;

/** The typed-array class of each type (bool is a byte). */
export const VIEWS: Readonly<Record<NumericType | "bool", ViewClass>> = {
  i8: Int8Array,
  u8: Uint8Array,
  i16: Int16Array,
  u16: Uint16Array,
  i32: Int32Array,
  u32: Uint32Array,
  i64: BigInt64Array,
  u64: BigUint64Array,
  f32: Float32Array,
  f64: Float64Array,
  bool: Uint8Array,
};

/** The range of each integer type. */
export const RANGES: Readonly<Record<IntegerType, readonly [number, number] | readonly [bigint, bigint]>> = {
  i8: [-128, 127],
  u8: [0, 255],
  i16: [-32768, 32767],
  u16: [0, 65535],
  i32: [-(2 ** 31), 2 ** 31 - 1],
  u32: [0, 2 ** 32 - 1],
  i64: [-(2n ** 63n), 2n ** 63n - 1n],
  u64: [0n, 2n ** 64n - 1n],
};

/** A value as an error message shows it. */
export function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === "bigint") return `${value}n`;
  if (value === null || (typeof value !== "object" && typeof value !== "function")) return String(value);
  return Array.isArray(value) ? "an array" : `a${/^[aeiou]/i.test(typeof value) ? "n" : ""} ${typeof value}`;
}

/** Checks that `value` is a bigint for i64 and u64, a number otherwise; true for a bigint. */
function checkJsType(type: NumericType, value: unknown, what: string): boolean {
  const big = type === "i64" || type === "u64";
  if (big ? typeof value !== "bigint" : typeof value !== "number") {
    throw new TypeError(`Cannot ${what}: ${type} takes a ${big ? "bigint" : "number"}, got ${show(value)}`);
  }
  return big;
}

/** Checks one number for a numeric type: what `set` and the atomics store. */
export function checkNumber(type: NumericType, value: unknown, what: string): number | bigint {
  const big = checkJsType(type, value, what);
  if (!isIntegerType(type)) return value as number;
  if (!big && !Number.isInteger(value)) throw new RangeError(`Cannot ${what}: ${type} takes an integer, got ${value}`);
  const [min, max] = RANGES[type];
  if ((value as number) < min || (value as number) > max) {
    throw new RangeError(`Cannot ${what}: ${show(value)} is out of range for ${type} (${show(min)} to ${show(max)})`);
  }
  return value as number | bigint;
}

/** Checks an add/sub operand: any safe integer (bigint for i64/u64); the sum wraps modulo 2^bits, as in C. */
export function checkDelta(type: IntegerType, value: unknown, what: string): number | bigint {
  const big = checkJsType(type, value, what);
  if (!big && !Number.isSafeInteger(value)) {
    throw new RangeError(`Cannot ${what}: the operand must be a safe integer, got ${show(value)}`);
  }
  return value as number | bigint;
}
