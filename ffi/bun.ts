/**
 * The Bun loader: `bun:ffi` over the symbol table. Bun already passes pointers as numbers.
 *
 * @module
 */
import { dlopen, type FFIFunction, FFIType, read, toArrayBuffer } from "bun:ffi";
import { UnsupportedError } from "../errors.ts";
import { type FfiType, LIBC, type LibcCalls, type Signature } from "./libc.ts";
import { cstring, detachAndUnmap, libcPath, type Native } from "./native.ts";
import { platform } from "node:os";

const TYPES: Record<FfiType, FFIType> = {
  i32: FFIType.i32,
  u32: FFIType.u32,
  i64: FFIType.i64_fast,
  u64: FFIType.u64_fast,
  usize: FFIType.u64_fast,
  isize: FFIType.i64_fast,
  pointer: FFIType.ptr,
  buffer: FFIType.ptr,
  void: FFIType.void,
};

/** Opens libc with bun:ffi's dlopen; off-thread calls go through koffi (bun:ffi has none). */
export async function load(): Promise<Native> {
  const symbols: Record<string, FFIFunction> = {
    __errno_location: { args: [], returns: FFIType.ptr },
  };
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    symbols[name] = { args: sig.args.map((t) => TYPES[t]), returns: TYPES[sig.returns] };
  }
  let lib: { symbols: Record<string, (...a: unknown[]) => unknown> };
  try {
    lib = dlopen(libcPath(platform()), symbols) as unknown as typeof lib;
  } catch (e) {
    throw new UnsupportedError(`Cannot load libc through bun:ffi: ${(e as Error).message}`, { cause: e });
  }
  const call: Record<string, unknown> = {};
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    const fn = lib.symbols[name]!;
    // Bun may hand back a bigint for a pointer outside the safe range (MAP_FAILED); make every result a number.
    call[name] = sig.returns === "pointer" || sig.returns === "i64" || sig.returns === "u64" ||
        sig.returns === "usize" || sig.returns === "isize"
      ? (...a: unknown[]) => Number(fn(...a) ?? 0)
      : fn;
  }
  const errnoLocation = lib.symbols.__errno_location as () => number;
  return {
    call: call as LibcCalls,
    callAsync: (await import("./node.ts")).loadAsync(),
    errno: () => read.i32(errnoLocation() as never, 0),
    view: (pointer, length) => toArrayBuffer(pointer as never, 0, length),
    cstring,
    unmap: (buffer, pointer, length) => detachAndUnmap(call as LibcCalls, buffer, pointer, length),
  };
}
