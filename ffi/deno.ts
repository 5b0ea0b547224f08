/**
 * The Deno loader: `Deno.dlopen` over the symbol table. Pointers cross as JS numbers; `UnsafePointer` objects are
 * made and read only here.
 *
 * @module
 */
import { UnsupportedError } from "../errors.ts";
import { type AsyncCalls, type FfiType, LIBC, type LibcCalls, type Signature } from "./libc.ts";
import { cstring, detachAndUnmap, libcPath, type Native } from "./native.ts";

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
  return adaptAny(sig, fn) as (...a: unknown[]) => number;
}

/** The same for a `nonblocking` symbol, whose result comes as a promise. */
function adaptAsync(sig: Signature, fn: (...a: unknown[]) => unknown): (...a: unknown[]) => Promise<number> {
  const ptrArgs = sig.args.flatMap((t, i) => (t === "pointer" ? [i] : []));
  return (...a: unknown[]) => {
    for (const i of ptrArgs) a[i] = toPointer(a[i] as number | null);
    return (fn(...a) as Promise<unknown>).then((r) =>
      sig.returns === "pointer" ? fromPointer(r as Deno.PointerValue) : Number(r)
    );
  };
}

function adaptAny(sig: Signature, fn: (...a: unknown[]) => unknown): (...a: unknown[]) => unknown {
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
    const parameters = sig.args.map((t) => TYPES[t]) as Deno.NativeType[];
    const result = TYPES[sig.returns] as Deno.NativeResultType;
    symbols[name] = { parameters, result };
    // The same C function again, run on a thread of Deno's blocking pool.
    if (sig.async) symbols[`${name}_nonblocking`] = { name, parameters, result, nonblocking: true };
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
  const callAsync: Record<string, unknown> = {};
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    call[name] = adapt(sig, lib.symbols[name] as (...a: unknown[]) => unknown);
    if (sig.async) {
      callAsync[name] = adaptAsync(sig, lib.symbols[`${name}_nonblocking`] as (...a: unknown[]) => unknown);
    }
  }
  const errnoLocation = lib.symbols.__errno_location as () => Deno.PointerValue;
  return {
    call: call as LibcCalls,
    callAsync: callAsync as AsyncCalls,
    errno: () => new Deno.UnsafePointerView(errnoLocation()!).getInt32(),
    view: (pointer, length) => Deno.UnsafePointerView.getArrayBuffer(toPointer(pointer)!, length),
    cstring,
    unmap: (buffer, pointer, length) => detachAndUnmap(call as LibcCalls, buffer, pointer, length),
  };
}
