/**
 * The Node loader: koffi over the symbol table. Pointers are declared `uintptr_t` so they cross as numbers.
 *
 * @module
 */
import koffi from "koffi";
import { platform } from "node:os";
import { UnsupportedError } from "../errors.ts";
import { type FfiType, LIBC, type LibcCalls, type Signature } from "./libc.ts";
import { cstring, libcPath, type Native } from "./native.ts";

const TYPES: Record<FfiType, string> = {
  i32: "int32_t",
  u32: "uint32_t",
  i64: "int64_t",
  u64: "uint64_t",
  usize: "size_t",
  isize: "intptr_t",
  pointer: "uintptr_t",
  buffer: "void *",
  void: "void",
};

/** Opens libc with koffi. */
export function load(): Native {
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(libcPath(platform()));
  } catch (e) {
    throw new UnsupportedError(`Cannot load libc through koffi: ${(e as Error).message}`, { cause: e });
  }
  const call: Record<string, unknown> = {};
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    const fn = lib.func(name, TYPES[sig.returns], sig.args.map((t) => TYPES[t]));
    const wide = sig.returns === "i64" || sig.returns === "u64" || sig.returns === "usize" ||
      sig.returns === "isize" || sig.returns === "pointer";
    const ptrArgs = sig.args.flatMap((t, i) => (t === "pointer" ? [i] : []));
    call[name] = !wide && ptrArgs.length === 0 ? fn : (...a: unknown[]) => {
      for (const i of ptrArgs) a[i] ??= 0;
      const r = fn(...a);
      return wide ? Number(r) : r;
    };
  }
  return {
    call: call as LibcCalls,
    errno: () => koffi.errno(),
    view: (pointer, length) => koffi.view(pointer as never, length),
    cstring,
  };
}
