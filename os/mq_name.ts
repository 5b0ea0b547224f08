/**
 * The named-object descriptor of POSIX message queues (`mq_open`; the queue itself is `transports/mq.ts`).
 * On Linux an `mqd_t` is a descriptor, so a queue is examined by `statx` on it; queues are listed from
 * `/dev/mqueue` where that file system is mounted.
 *
 * Which file should own it: the OS-level POSIX queue module (`os/mq.ts`) once it exists.
 *
 * @module
 */
import { O_NONBLOCK, O_RDONLY } from "../ffi/constants.ts";
import type { Native } from "../ffi/native.ts";
import { defineNamedKind, listDir, type Lookup, type NamedKind, removed } from "./named.ts";
import { missing, statFd } from "./stat.ts";

/** Where Linux shows POSIX message queues (when the mqueue file system is mounted there). */
export const MQUEUE_DIR = "/dev/mqueue";

function lookUp(ffi: Native, name: string): Lookup {
  const fd = ffi.call.mq_open(ffi.cstring(name), O_RDONLY | O_NONBLOCK, 0, null);
  if (fd < 0) return missing(ffi.errno());
  try {
    return statFd(ffi, fd);
  } finally {
    ffi.call.mq_close(fd);
  }
}

/**
 * POSIX message queues: named `/name`, listed from `/dev/mqueue`. Every send and receive moves a queue's ctime.
 *
 * @example
 * ```ts
 * import { native } from "../ffi/native.ts";
 * import { mqName } from "./mq_name.ts";
 * console.log(mqName.lookUp(await native(), "/surely-not-there").found); // "none"
 * ```
 */
export const mqName: NamedKind<"mq"> = defineNamedKind({
  kind: "mq",
  label: "message queue",
  naming: "posix",
  ctimeMoves: true,
  lookUp,
  remove: (ffi, name) => removed(ffi, ffi.call.mq_unlink(ffi.cstring(name)), `unlink message queue "${name}"`),
  list: (rt) => listDir(rt, MQUEUE_DIR, (entry) => `/${entry}`),
});
