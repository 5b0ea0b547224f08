/**
 * The named-object descriptor of POSIX shared memory segments (`shm_open`; the segment itself is `shm/segment.ts`).
 * glibc keeps segments as files in `/dev/shm`, where they are listed; named semaphores share that directory
 * (`sem.<name>`) and are not listed here.
 *
 * @module
 */
import { O_RDONLY } from "../ffi/constants.ts";
import { ERRNO } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import { defineNamedKind, listDir, type Lookup, type NamedKind, removed } from "./named.ts";
import { missing, statFd, statPath } from "./stat.ts";

/** Where glibc keeps POSIX shared memory (and named semaphores). */
export const SHM_DIR = "/dev/shm";

function lookUp(ffi: Native, name: string): Lookup {
  const fd = ffi.call.shm_open(ffi.cstring(name), O_RDONLY, 0);
  if (fd < 0) {
    const errno = ffi.errno();
    // Not readable by us (a segment made with mode 0200): examined through its file.
    return errno === ERRNO.EACCES ? statPath(ffi, `${SHM_DIR}${name}`) : missing(errno);
  }
  try {
    return statFd(ffi, fd);
  } finally {
    ffi.call.close(fd);
  }
}

/**
 * POSIX shared memory segments: named `/name`, listed from `/dev/shm`.
 *
 * @example
 * ```ts
 * import { native } from "../ffi/native.ts";
 * import { shmName } from "./shm_name.ts";
 * const ffi = await native();
 * console.log(shmName.lookUp(ffi, "/surely-not-there").found); // "none"
 * ```
 */
export const shmName: NamedKind<"shm"> = defineNamedKind({
  kind: "shm",
  label: "shared memory segment",
  naming: "posix",
  ctimeMoves: false,
  lookUp,
  remove: (ffi, name) => removed(ffi, ffi.call.shm_unlink(ffi.cstring(name)), `unlink shared memory "${name}"`),
  list: (rt) => listDir(rt, SHM_DIR, (entry) => entry.startsWith("sem.") ? undefined : `/${entry}`),
});
