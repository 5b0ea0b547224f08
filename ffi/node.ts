/**
 * The Node loader: koffi over the symbol table. Pointers are declared `uintptr_t` so they cross as numbers.
 *
 * @module
 */
import koffi from "koffi";
import { platform } from "node:os";
import { UnsupportedError } from "../errors.ts";
import { type AsyncCalls, type FfiType, LIBC, type LibcCalls, type Signature } from "./libc.ts";
import { cstring, libcPath, type Native, zeroPages } from "./native.ts";

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

function open(): ReturnType<typeof koffi.load> {
  try {
    return koffi.load(libcPath(platform()));
  } catch (e) {
    throw new UnsupportedError(`Cannot load libc through koffi: ${(e as Error).message}`, { cause: e });
  }
}

/** The `async` symbols through koffi's `.async` (a libuv pool thread). Bun's loader uses this too. */
export function loadAsync(lib = open()): AsyncCalls {
  const callAsync: Record<string, unknown> = {};
  for (const [name, sig] of Object.entries(LIBC) as [string, Signature][]) {
    if (!sig.async) continue;
    const fn = lib.func(name, TYPES[sig.returns], sig.args.map((t) => TYPES[t]));
    const ptrArgs = sig.args.flatMap((t, i) => (t === "pointer" ? [i] : []));
    callAsync[name] = (...a: unknown[]) =>
      new Promise<number>((resolve, reject) => {
        for (const i of ptrArgs) a[i] ??= 0;
        fn.async(...a, (err: unknown, r: unknown) => (err ? reject(err) : resolve(Number(r))));
      });
  }
  return callAsync as AsyncCalls;
}

/** Opens libc with koffi. */
export function load(): Native {
  const lib = open();
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
    callAsync: loadAsync(lib),
    errno: () => koffi.errno(),
    view: (pointer, length) => koffi.view(pointer as never, length),
    cstring,
    unmap: (_buffer, pointer, length) => zeroPages(call as LibcCalls, pointer, length),
  };
}
