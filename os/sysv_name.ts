/**
 * The named-object descriptor of System V message queues (`msgget`; the queue itself is `transports/sysv.ts`).
 * A queue is named by its id (a decimal string) and checked against the key it was made with: ids are reused, and
 * another key under a recorded id means another queue. Queues are listed from `/proc/sysvipc/msg`.
 *
 * Which file should own it: the OS-level System V queue module (`os/sysv.ts`) once it exists.
 *
 * @module
 */
import { IPC_RMID, IPC_STAT, MSQID_DS, MSQID_DS_CTIME, MSQID_DS_MODE } from "../ffi/constants.ts";
import { errnoName } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";
import { defineNamedKind, type Lookup, type NamedKind, removed } from "./named.ts";

const stat = new Uint8Array(MSQID_DS);
const view = new DataView(stat.buffer);
/** What msgctl reports for an id that holds no queue. */
const NO_QUEUE: readonly string[] = ["EINVAL", "EIDRM"];

function lookUp(ffi: Native, name: string, key?: number): Lookup {
  if (ffi.call.msgctl(Number(name), IPC_STAT, stat) < 0) {
    const errno = ffi.errno();
    return NO_QUEUE.includes(errnoName(errno)) ? { found: "none" } : { found: "unknown", errno };
  }
  // ipc_perm.__key comes first: another key means another queue holds the id now.
  if (key !== undefined && view.getInt32(0, true) !== key) return { found: "none" };
  return {
    found: "object",
    mode: view.getUint16(MSQID_DS_MODE, true) & 0o777,
    identity: { ctime: String(view.getBigInt64(MSQID_DS_CTIME, true)) },
  };
}

/** The ids in `/proc/sysvipc/msg` (a header line, then `key msqid perms ...` per queue). */
function idsOf(text: string): string[] {
  const ids: string[] = [];
  for (const line of text.split("\n").slice(1)) {
    const id = line.trim().split(/\s+/)[1];
    if (id !== undefined && /^\d+$/.test(id)) ids.push(id);
  }
  return ids.sort((a, b) => Number(a) - Number(b));
}

/**
 * System V message queues: named by id, listed from `/proc/sysvipc/msg`. `IPC_SET` moves a queue's ctime.
 *
 * @example
 * ```ts
 * import { native } from "../ffi/native.ts";
 * import { sysvName } from "./sysv_name.ts";
 * console.log(sysvName.naming, sysvName.lookUp(await native(), "2147483647").found); // sysv none
 * ```
 */
export const sysvName: NamedKind<"sysv"> = defineNamedKind({
  kind: "sysv",
  label: "System V queue",
  naming: "sysv",
  ctimeMoves: true,
  lookUp,
  remove: (ffi, name) =>
    removed(ffi, ffi.call.msgctl(Number(name), IPC_RMID, null), `remove System V queue ${name}`, NO_QUEUE),
  list: (rt) => rt.readTextFile("/proc/sysvipc/msg").then(idsOf, () => []),
});
