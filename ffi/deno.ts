/**
 * The Deno loader: `Deno.dlopen` over the symbol table. Pointers cross as JS numbers; `UnsafePointer` objects are
 * made and read only here.
 *
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { type FfiType, LIBC, type LibcCalls, type Signature } from "./libc.ts";
import { cstring, libcPath, type Native } from "./native.ts";

const TYPES: Record<FfiType, Deno.NativeType | "void"> = {
  i32: "i32",
  u32: "u32",
  i64: "i64",
  u64: "u64",
  usize: "usize",
  isize: "isize",
  pointer: "pointer",
  buffer: "buffer",
  void: "void",
};

function toPointer(n: number | null): Deno.PointerValue {
  return n === null || n === 0 ? null : Deno.UnsafePointer.create(BigInt(n));
}

function fromPointer(p: Deno.PointerValue): number {
  return p === null ? 0 : Number(Deno.UnsafePointer.value(p));
}

/** Wraps a raw symbol only where a conversion is needed (pointers, 64-bit results). */
function adapt(sig: Signature, fn: (...a: unknown[]) => unknown): (...a: unknown[]) => number {
  const ptrArgs = sig.args.flatMap((t, i) => (t === "pointer" ? [i] : []));
  const ret = sig.returns;
  const convertRet = ret === "pointer"
    ? (r: unknown) => fromPointer(r as Deno.PointerValue)
    : ret === "i64" || ret === "u64" || ret === "usize" || ret === "isize"
    ? (r: unknown) => Number(r)
    : undefined;
  if (ptrArgs.length === 0 && convertRet === undefined) return fn as (...a: unknown[]) => number;
  return (...a: unknown[]) => {
    for (const i of ptrArgs) a[i] = toPointer(a[i] as number | null);
    const r = fn(...a);
    return convertRet ? convertRet(r) : (r as number);
  };
}

/** Opens libc with Deno.dlopen. */
export function load(): Native {
  const symbols: Record<string, Deno.ForeignFunction> = {
    __errno_location: { parameters: [], result: "pointer" },
  };
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    symbols[name] = {
      parameters: sig.args.map((t) => TYPES[t]) as Deno.NativeType[],
      result: TYPES[sig.returns] as Deno.NativeResultType,
    };
  }
  let lib: Deno.DynamicLibrary<Record<string, Deno.ForeignFunction>>;
  try {
    lib = Deno.dlopen(libcPath(Deno.build.os), symbols);
  } catch (e) {
    throw new UnsupportedError(`Cannot load libc through Deno.dlopen: ${(e as Error).message} (run with --allow-ffi)`, {
      cause: e,
    });
  }
  const call: Record<string, unknown> = {};
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    call[name] = adapt(sig, lib.symbols[name] as (...a: unknown[]) => unknown);
  }
  const errnoLocation = lib.symbols.__errno_location as () => Deno.PointerValue;
  return {
    call: call as LibcCalls,
    errno: () => new Deno.UnsafePointerView(errnoLocation()!).getInt32(),
    view: (pointer, length) => Deno.UnsafePointerView.getArrayBuffer(toPointer(pointer)!, length),
    cstring,
  };
}
