/**
 * The one list of named-object kinds: every descriptor (`os/named.ts`), in display order. The owner records
 * (`registry.ts`), their identity checks (`os/identity.ts`) and `ipckit ls` / `ipckit clean` (`resources.ts`) loop
 * over it; adding a named kind is one entry here.
 *
 * @module
 */
import { mqName } from "./mq_name.ts";
import type { NamedKind } from "./named.ts";
import { fifoName, unixDgramName, unixName } from "./path_names.ts";
import { semName } from "./sem_name.ts";
import { shmName } from "./shm_name.ts";
import { sysvName } from "./sysv_name.ts";

/**
 * Every named kind, in display order.
 *
 * @example
 * ```ts
 * import { NAMED_KINDS } from "./named_kinds.ts";
 * console.log(NAMED_KINDS.map((d) => d.kind).join(", ")); // shm, mq, sem, fifo, unix, unix_dgram, sysv
 * ```
 */
export const NAMED_KINDS = [shmName, mqName, semName, fifoName, unixName, unixDgramName, sysvName] as const;

/**
 * The kinds of named objects ipckit records, named like their transports: `unix` is a Unix stream listener's
 * socket file, `unix_dgram` a bound datagram socket's.
 */
export type Kind = (typeof NAMED_KINDS)[number]["kind"];

/**
 * Kind words that older ipckit versions wrote in their owner records, and the kind each is now. Their records are
 * still read, listed and cleaned (under the new word); new records use the new word only.
 */
export const OLD_KINDS: Readonly<Record<string, Kind>> = { socket: "unix", dgram: "unix_dgram" };

const BY_KIND: ReadonlyMap<string, NamedKind<Kind>> = new Map<string, NamedKind<Kind>>([
  ...NAMED_KINDS.map((d) => [d.kind, d] as const),
  ...Object.entries(OLD_KINDS).map(([old, kind]) => [old, NAMED_KINDS.find((d) => d.kind === kind)!] as const),
]);

/**
 * The descriptor of `kind`, or undefined for a word that is no kind (a record from elsewhere). An old kind word
 * ({@linkcode OLD_KINDS}) gives the descriptor of the kind it is now.
 *
 * @example
 * ```ts
 * import { namedKind } from "./named_kinds.ts";
 * console.log(namedKind("fifo")?.label, namedKind("nope")); // FIFO undefined
 * console.log(namedKind("socket")?.kind); // unix: the word older versions wrote
 * ```
 */
export function namedKind(kind: Kind): NamedKind<Kind>;
export function namedKind(kind: string): NamedKind<Kind> | undefined;
export function namedKind(kind: string): NamedKind<Kind> | undefined {
  return BY_KIND.get(kind);
}
