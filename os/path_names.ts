/**
 * The named-object descriptors of objects named by a file-system path: FIFOs (`transports/fifo.ts`), Unix stream
 * listeners' socket files (`transports/unix.ts`) and bound Unix datagram sockets' files (`transports/unix_dgram.ts`).
 * A path may be anywhere, so these kinds cannot be listed; a path whose file has another type is not the object.
 *
 * @module
 */
import type { Native } from "../ffi/native.ts";
import type { FileType, Lookup, NamedKind } from "./named.ts";
import { defineNamedKind, removed } from "./named.ts";
import { statPath } from "./stat.ts";

function pathKind<K extends string>(kind: K, label: string, fileType: FileType, noun: string): NamedKind<K> {
  return defineNamedKind({
    kind,
    label,
    naming: "path",
    fileType,
    ctimeMoves: false,
    lookUp: (ffi: Native, name: string): Lookup => statPath(ffi, name),
    remove: (ffi, name) => removed(ffi, ffi.call.unlink(ffi.cstring(name)), `remove ${noun} "${name}"`),
  });
}

/**
 * FIFOs (named pipes), by path.
 *
 * @example
 * ```ts
 * import { native } from "../ffi/native.ts";
 * import { fifoName } from "./path_names.ts";
 * console.log(fifoName.fileType, fifoName.lookUp(await native(), "/no/such/fifo").found); // fifo none
 * ```
 */
export const fifoName: NamedKind<"fifo"> = pathKind("fifo", "FIFO", "fifo", "FIFO");

/** Unix stream listeners' socket files, by path (kind `unix`, like the transport; older records say `socket`). */
export const unixName: NamedKind<"unix"> = pathKind("unix", "socket file", "socket", "socket file");

/** Bound Unix datagram sockets' files, by path (kind `unix_dgram`, like the transport; older records say `dgram`). */
export const unixDgramName: NamedKind<"unix_dgram"> = pathKind(
  "unix_dgram",
  "datagram socket file",
  "socket",
  "socket file",
);
