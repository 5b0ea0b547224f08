/**
 * A first-in first-out queue with O(1) `shift()` (an array's own `shift()` copies the array in V8 once it is large).
 *
 * @module
 */

/** A FIFO queue of `T`. */
export class Fifo<T> implements Iterable<T> {
  #items: (T | undefined)[] = [];
  #head = 0;

  /** Items in the queue. */
  get length(): number {
    return this.#items.length - this.#head;
  }

  /** Adds `item` at the end. */
  push(item: T): void {
    this.#items.push(item);
  }

  /** The first item, left in the queue (undefined when empty). */
  peek(): T | undefined {
    return this.#head < this.#items.length ? this.#items[this.#head] : undefined;
  }

  /** Takes the first item (undefined when empty). */
  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  /** Removes `item` wherever it stands (linear); returns whether it was there. */
  remove(item: T): boolean {
    const i = this.#items.indexOf(item, this.#head);
    if (i < 0) return false;
    this.#items.splice(i, 1);
    return true;
  }

  /** Empties the queue, returning what it held in order. */
  clear(): T[] {
    const all = this.#items.slice(this.#head) as T[];
    this.#items = [];
    this.#head = 0;
    return all;
  }

  *[Symbol.iterator](): Iterator<T> {
    for (let i = this.#head; i < this.#items.length; i++) yield this.#items[i] as T;
  }
}
