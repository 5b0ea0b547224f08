/**
 * `statx(2)` of a path or a descriptor, as the {@linkcode Lookup} of a named object: device, inode, status-change
 * and birth times (to the nanosecond), file type and mode. `statx` is used because its layout is the same on x86-64
 * and arm64 (`struct stat` is not). The descriptors of `os/named_kinds.ts` build their `lookUp` on it.
 *
 * @module
 */
import {
  AT_EMPTY_PATH,
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  S_IFIFO,
  S_IFMT,
  S_IFSOCK,
  STATX_BTIME,
  STATX_SIZE,
  STATX_WANTED,
  STX_BTIME,
  STX_CTIME,
  STX_DEV_MAJOR,
  STX_DEV_MINOR,
  STX_INO,
  STX_MASK,
  STX_MODE,
} from "../ffi/constants.ts";
import { ERRNO } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import type { Lookup } from "./named.ts";

const buffer = new Uint8Array(STATX_SIZE);
const view = new DataView(buffer.buffer, buffer.byteOffset, STATX_SIZE);
const EMPTY = new Uint8Array(1);

function time(at: number): string {
  return `${view.getBigInt64(at, true)}.${String(view.getUint32(at + 8, true)).padStart(9, "0")}`;
}

/**
 * The look-up of the file at `path`, not followed through a final symbolic link.
 *
 * @example
 * ```ts
 * import { native } from "../ffi/native.ts";
 * import { statPath } from "./stat.ts";
 * console.log(statPath(await native(), "/no/such/file").found); // "none"
 * ```
 */
export function statPath(ffi: Native, path: string): Lookup {
  const rc = ffi.call.statx(AT_FDCWD, ffi.cstring(path), AT_SYMLINK_NOFOLLOW, STATX_WANTED, buffer);
  return rc === 0 ? parsed() : missing(ffi.errno());
}

/** The look-up of the file open as descriptor `fd` (a segment's, or on Linux a message queue's `mqd_t`). */
export function statFd(ffi: Native, fd: number): Lookup {
  const rc = ffi.call.statx(fd, EMPTY, AT_EMPTY_PATH, STATX_WANTED, buffer);
  return rc === 0 ? parsed() : missing(ffi.errno());
}

/** A failed look-up's errno: nothing there (ENOENT, ENOTDIR), or something that cannot be examined. */
export function missing(errno: number): Lookup {
  return errno === ERRNO.ENOENT || errno === ERRNO.ENOTDIR ? { found: "none" } : { found: "unknown", errno };
}

function parsed(): Lookup {
  const mode = view.getUint16(STX_MODE, true);
  const type = mode & S_IFMT;
  return {
    found: "object",
    type: type === S_IFIFO ? "fifo" : type === S_IFSOCK ? "socket" : "other",
    mode: mode & 0o7777,
    identity: {
      dev: `${view.getUint32(STX_DEV_MAJOR, true)}:${view.getUint32(STX_DEV_MINOR, true)}`,
      ino: String(view.getBigUint64(STX_INO, true)),
      ctime: time(STX_CTIME),
      ...((view.getUint32(STX_MASK, true) & STATX_BTIME) !== 0 ? { btime: time(STX_BTIME) } : {}),
    },
  };
}
