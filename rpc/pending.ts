/**
 * The calls one RPC peer waits on, by id. A peer hands its ids out in order, so a call almost always finds its own
 * slot in a small array at `id & MASK`: no hashing on the round trip's path (a Map's set, get and delete cost ~50 ns
 * a call on Node here, the slots ~5). A call whose slot is held by an older one still pending (one call outlived
 * the next 1023) waits in a Map beside them.
 *
 * @module
 */

const SLOTS = 1024;
const MASK = SLOTS - 1;

/** Pending calls by id (the peer's ids are positive; any number may be asked about); values are never undefined. */
export class PendingCalls<T extends object> {
  /** The id in each slot, 0 when the slot is free. */
  readonly #ids = new Array<number>(SLOTS).fill(0);
  readonly #values = new Array<T | undefined>(SLOTS).fill(undefined);
  readonly #overflow = new Map<number, T>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** Adds call `id` (each id once: a peer never reuses one). */
  set(id: number, value: T): void {
    const i = id & MASK;
    if (this.#ids[i] === 0) {
      this.#ids[i] = id;
      this.#values[i] = value;
    } else this.#overflow.set(id, value);
    this.#size++;
  }

  get(id: number): T | undefined {
    const i = id & MASK;
    if (this.#ids[i] === id) return this.#values[i];
    return this.#overflow.size === 0 ? undefined : this.#overflow.get(id);
  }

  has(id: number): boolean {
    return this.get(id) !== undefined;
  }

  /** Removes call `id`; true if it was there. */
  delete(id: number): boolean {
    const i = id & MASK;
    if (this.#ids[i] === id && this.#values[i] !== undefined) { // a free slot holds 0: id 0 is not in it
      this.#ids[i] = 0;
      this.#values[i] = undefined;
    } else if (this.#overflow.size === 0 || !this.#overflow.delete(id)) return false;
    this.#size--;
    return true;
  }

  /** The ids pending now, oldest (smallest) first: a copy, safe to delete from while walking it. */
  ids(): number[] {
    const out: number[] = [...this.#overflow.keys()];
    if (this.#size > out.length) { for (const id of this.#ids) if (id !== 0) out.push(id); }
    return out.sort((a, b) => a - b);
  }
}
