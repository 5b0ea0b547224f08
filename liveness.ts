/**
 * Whether a process still lives, told apart from a zombie and from a later process that got the same pid: the check
 * ipckit itself uses for channel peers, lock owners and `ipckit clean` (see `os/liveness.ts` for how it works).
 * Store what {@linkcode identify} returns beside a pid you hand out; check it later with {@linkcode isAlive}.
 *
 * @example
 * ```ts
 * import { liveness } from "ipckit";
 * const me = await liveness.identify(); // { id: pid, tag: start-time tag }
 * console.log(await liveness.isAlive(me)); // true
 * ```
 *
 * @module
 */
export { identify, type Identity, isAlive } from "./os/liveness.ts";
