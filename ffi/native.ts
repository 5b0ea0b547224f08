/**
 * What the core sees of FFI: libc calls from the table in `libc.ts`, errno, and external memory as ArrayBuffers.
 * The loader for the current runtime is imported lazily, on first use.
 *
 * @module
 */
import { MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_READ, PROT_WRITE } from "./constants.ts";
import { hostRuntime } from "./host.ts";
import type { AsyncCalls, LibcCalls } from "./libc.ts";

/** The FFI seam. */
export interface Native {
  /** The libc functions of `LIBC`, typed. */
  readonly call: LibcCalls;
  /** The `async` functions of `LIBC`, run off the main thread (Deno `nonblocking`, koffi `.async`). */
  readonly callAsync: AsyncCalls;
  /** errno of the calling thread; read it right after a call that failed. */
  errno(): number;
  /** `length` bytes of external memory at `pointer` as an ArrayBuffer (no copy; valid until unmapped). */
  view(pointer: number, length: number): ArrayBuffer;
  /** A NUL-terminated UTF-8 copy of `s`, to pass as a `buffer` argument. */
  cstring(s: string): Uint8Array;
  /**
   * Unmaps memory that `view()` exposed as `buffer`, so that no view can touch freed memory: the buffer is detached
   * first where the runtime allows it (Deno, Bun); koffi's views cannot be detached, so on Node the pages are
   * replaced by private zero pages instead (reads see zeros; the address range stays reserved).
   */
  unmap(buffer: ArrayBuffer, pointer: number, length: number): void;
}

/** `unmap` for runtimes whose external ArrayBuffers can be detached by a transfer. */
export function detachAndUnmap(call: LibcCalls, buffer: ArrayBuffer, pointer: number, length: number): void {
  try {
    structuredClone(buffer, { transfer: [buffer] });
  } catch { /* not transferable: fall through to the check */ }
  if (buffer.byteLength === 0) call.munmap(pointer, length);
  else zeroPages(call, pointer, length);
}

/** Replaces a mapping with private anonymous zero pages (MAP_FIXED), releasing what was mapped there. */
export function zeroPages(call: LibcCalls, pointer: number, length: number): void {
  call.mmap(pointer, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
}

/** The name of the shared C library on this platform. */
export function libcPath(os: string): string {
  return os === "darwin" ? "libSystem.B.dylib" : "libc.so.6";
}

const encoder = new TextEncoder();

/** Encodes a C string. */
export function cstring(s: string): Uint8Array {
  const bytes = new Uint8Array(s.length * 3 + 1);
  const { written } = encoder.encodeInto(s, bytes);
  return bytes.subarray(0, written + 1);
}

let cached: Promise<Native> | undefined;
let loaded: Native | undefined;

/** The Native, when `native()` has already loaded it (a mapped SharedMemory implies it has). */
export function loadedNative(): Native | undefined {
  return loaded;
}

/**
 * The Native for this runtime (loaded once). On Deno this needs `--allow-ffi`.
 *
 * @throws {UnsupportedError} when FFI is not available (for instance Deno without `--allow-ffi`).
 */
export function native(): Promise<Native> {
  return (cached ??= load());
}

// Specifiers in a table, not literals, so that one runtime's type checker does not follow another's loader.
const LOADERS = { deno: "./deno.ts", bun: "./bun.ts", node: "./node.ts" } as const;

async function load(): Promise<Native> {
  return (loaded = await ((await import(LOADERS[hostRuntime()])) as { load(): Native | Promise<Native> }).load());
}
