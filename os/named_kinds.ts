/**
 * The one list of named-object kinds: every descriptor (`os/named.ts`), in display order. The owner records
 * (`registry.ts`), their identity checks (`os/identity.ts`) and `ipckit ls` / `ipckit clean` (`resources.ts`) loop
 * over it; adding a named kind is one entry here.
 *
 * @module
 */
import { mqName } from "./mq_name.ts";
import type { NamedKind } from "./named.ts";
import { dgramName, fifoName, socketName } from "./path_names.ts";
import { semName } from "./sem_name.ts";
import { shmName } from "./shm_name.ts";
import { sysvName } from "./sysv_name.ts";

/**
 * Every named kind, in display order.
 *
 * @example
 * ```ts
 * import { NAMED_KINDS } from "./named_kinds.ts";
 * console.log(NAMED_KINDS.map((d) => d.kind).join(", ")); // shm, mq, sem, fifo, socket, dgram, sysv
 * ```
 */
export const NAMED_KINDS = [shmName, mqName, semName, fifoName, socketName, dgramName, sysvName] as const;

/**
 * The kinds of named objects ipckit records: `socket` is a Unix stream listener's file, `dgram` a bound datagram
 * socket's.
 */
export type Kind = (typeof NAMED_KINDS)[number]["kind"];

const BY_KIND: ReadonlyMap<string, NamedKind<Kind>> = new Map(NAMED_KINDS.map((d) => [d.kind, d]));

/**
 * The descriptor of `kind`, or undefined for a word that is no kind (a record from elsewhere).
 *
 * @example
 * ```ts
 * import { namedKind } from "./named_kinds.ts";
 * console.log(namedKind("fifo")?.label, namedKind("nope")); // FIFO undefined
 * ```
 */
export function namedKind(kind: Kind): NamedKind<Kind>;
export function namedKind(kind: string): NamedKind<Kind> | undefined;
export function namedKind(kind: string): NamedKind<Kind> | undefined {
  return BY_KIND.get(kind);
}
