/**
 * The named-object descriptor of POSIX named semaphores (`sem_open`; the semaphore itself is
 * `sync/named_semaphore.ts`). glibc keeps semaphore `/name` as the file `/dev/shm/sem.name`, where it is looked up
 * and listed.
 *
 * @module
 */
import type { Native } from "../ffi/native.ts";
import { defineNamedKind, listDir, type Lookup, type NamedKind, removed } from "./named.ts";
import { SHM_DIR } from "./shm_name.ts";
import { statPath } from "./stat.ts";

/** The file glibc keeps the named semaphore `name` (`/jobs`) in. */
export function semaphoreFile(name: string): string {
  return `${SHM_DIR}/sem.${name.slice(1)}`;
}

function lookUp(ffi: Native, name: string): Lookup {
  return statPath(ffi, semaphoreFile(name));
}

/**
 * Named semaphores: named `/name`, kept and listed as `/dev/shm/sem.name`.
 *
 * @example
 * ```ts
 * import { semName, semaphoreFile } from "./sem_name.ts";
 * console.log(semName.label, semaphoreFile("/jobs")); // named semaphore /dev/shm/sem.jobs
 * ```
 */
export const semName: NamedKind<"sem"> = defineNamedKind({
  kind: "sem",
  label: "named semaphore",
  naming: "posix",
  ctimeMoves: false,
  lookUp,
  remove: (ffi, name) => removed(ffi, ffi.call.sem_unlink(ffi.cstring(name)), `unlink semaphore "${name}"`),
  list: (rt) => listDir(rt, SHM_DIR, (entry) => entry.startsWith("sem.") ? `/${entry.slice(4)}` : undefined),
});
