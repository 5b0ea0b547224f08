/**
 * The floor of the shm channel's API in JavaScript: the least a JavaScript ring must do for `trySend` /
 * `tryReceive` and for batches, with nothing else (no checks, no counters, no waiting, no peer liveness), for
 * `bench/shm.ts` to measure beside the channel in the same run. Where the raw spin (two words of one cache line)
 * is the floor of shared memory in JavaScript, this is the floor of a channel: what the runtime itself costs for
 * its copies and for the array each received message must be.
 *
 * Each record is the channel's (`shm/ring.ts`): a length word, a commit word (the record's position + 1), the
 * payload, 8-byte aligned. A send writes the length and the payload, zeroes the next record's commit word and
 * publishes its own: a plain store on x86-64 (a release there, as the channel's producer does while its consumer
 * is awake), an `Atomics.store` elsewhere. A receive copies the payload into a fresh array and gives the space back
 * with an `Atomics.store` of R, as the channel does. The array comes from `runtimes/bytes.ts` as the channel's do
 * (`new Uint8Array(n)`, but on Deno, where that costs several times more, a view of a slab). A batch writes every record, then publishes the first.
 *
 * The segment holds two rings of {@linkcode JS_RING_CAPACITY} bytes (parent to peer, peer to parent) and a few
 * control words ({@linkcode jsRingControl}: ready, stop, messages consumed).
 *
 * @module
 */
import { arch } from "node:os";
import { allocate } from "../runtimes/bytes.ts";

/** Bytes of data in each of the two rings. */
export const JS_RING_CAPACITY = 1 << 22;
const HEADER = 192;
const I_WRITE = 16;
const I_READ = 32;
/** Whether a plain store publishes (x86-64 orders stores; elsewhere an atomic store is needed). */
const PLAIN = arch() === "x64";

/** Bytes of the segment {@linkcode JsRing.ends} uses. */
export const JS_RING_SEGMENT = 2 * (HEADER + JS_RING_CAPACITY) + 64;

/** The control words at the end of the segment: [0] the peer is ready, [1] stop, [2] messages consumed. */
export function jsRingControl(buffer: ArrayBufferLike): Int32Array {
  return new Int32Array(buffer, 2 * (HEADER + JS_RING_CAPACITY), 16);
}

/** One direction: the producer's or the consumer's end of one ring (each end keeps its own position). */
export class JsRing {
  readonly #words: Int32Array;
  readonly #slots: Int32Array;
  readonly #data: Uint8Array;
  #pos = 0;
  #readSeen = 0;

  /** `start`: the position (a multiple of 8) of a ring nobody used yet, for both its ends (a test starts near 2^31). */
  constructor(buffer: ArrayBufferLike, offset: number, start = 0) {
    this.#words = new Int32Array(buffer, offset, HEADER / 4);
    this.#slots = new Int32Array(buffer, offset + HEADER, JS_RING_CAPACITY / 4);
    this.#data = new Uint8Array(buffer, offset + HEADER, JS_RING_CAPACITY);
    if (start !== 0) {
      this.#pos = this.#readSeen = start;
      this.#words[I_WRITE] = start;
      Atomics.store(this.#words, I_READ, start);
    }
  }

  /**
   * The two rings of a segment as side 0 (the parent) or 1 (the peer) sees them: where it sends, where it reads.
   * With `start`, both rings of a fresh segment start there; both sides must be made with it.
   */
  static ends(buffer: ArrayBufferLike, side: 0 | 1, start = 0): { out: JsRing; in: JsRing } {
    const a = new JsRing(buffer, 0, start);
    const b = new JsRing(buffer, HEADER + JS_RING_CAPACITY, start);
    return side === 0 ? { out: a, in: b } : { out: b, in: a };
  }

  /**
   * Producer: goes on from where another writer of the same ring left it (W, as the header says; R as its last
   * look), writing nothing: for `bench/ring_turns.ts`, where the ring's own writer and this one take turns.
   */
  resume(): void {
    this.#pos = this.#words[I_WRITE]!;
    this.#readSeen = Atomics.load(this.#words, I_READ);
  }

  /** Writes the record of `m` at the producer's position (not its commit word); returns the next position, or -1. */
  #put(w: number, m: Uint8Array): number {
    const n = m.length;
    const size = (8 + n + 7) & ~7;
    const cap = JS_RING_CAPACITY;
    if (cap - ((w - this.#readSeen) >>> 0) < size + 8) {
      this.#readSeen = Atomics.load(this.#words, I_READ);
      if (cap - ((w - this.#readSeen) >>> 0) < size + 8) return -1;
    }
    const at = w & (cap - 1);
    const s = this.#slots;
    const d = this.#data;
    s[at >> 2] = n;
    const start = (at + 8) & (cap - 1);
    if (n <= 16) { for (let i = 0; i < n; i++) d[(start + i) & (cap - 1)] = m[i]!; }
    else if (start + n <= cap) d.set(m, start);
    else {
      d.set(m.subarray(0, cap - start), start);
      d.set(m.subarray(cap - start), 0);
    }
    s[(((at + size) & (cap - 1)) >> 2) + 1] = 0;
    return (w + size) | 0;
  }

  #commit(w: number): void {
    const at = ((w & (JS_RING_CAPACITY - 1)) >> 2) + 1;
    if (PLAIN) this.#slots[at] = (w + 1) | 0;
    else Atomics.store(this.#slots, at, (w + 1) | 0);
  }

  /** Producer: appends `m`, or returns false when the ring is full. */
  send(m: Uint8Array): boolean {
    const w = this.#pos;
    const next = this.#put(w, m);
    if (next === -1) return false; // positions are multiples of 8 (negative past 2^31): -1 is none of them
    this.#commit(w);
    this.#pos = next;
    this.#words[I_WRITE] = next;
    return true;
  }

  /** Producer: appends every message of `batch` and publishes them at once, or none when they do not all fit. */
  sendBatch(batch: readonly Uint8Array[]): boolean {
    const first = this.#pos;
    let w = first;
    for (let i = 0; i < batch.length; i++) {
      const next = this.#put(w, batch[i]!);
      if (next === -1) return false; // nothing published: the records written are written again next time
      if (i > 0) this.#slots[((w & (JS_RING_CAPACITY - 1)) >> 2) + 1] = (w + 1) | 0;
      w = next;
    }
    this.#commit(first);
    this.#pos = w;
    this.#words[I_WRITE] = w;
    return true;
  }

  /** The length of the committed record at `r`, or -1. */
  #peek(r: number): number {
    const at = r & (JS_RING_CAPACITY - 1);
    return Atomics.load(this.#slots, (at >> 2) + 1) === ((r + 1) | 0) ? this.#slots[at >> 2]! : -1;
  }

  /** Consumer: the next message, a fresh copy, or undefined when there is none. */
  receive(): Uint8Array | undefined {
    const r = this.#pos;
    const n = this.#peek(r);
    if (n < 0) return undefined;
    const cap = JS_RING_CAPACITY;
    const start = ((r & (cap - 1)) + 8) & (cap - 1);
    const out = allocate(n); // the cheapest fresh array the runtime has (on Deno, a view of a slab)
    const d = this.#data;
    if (n <= 16) { for (let i = 0; i < n; i++) out[i] = d[(start + i) & (cap - 1)]!; }
    else if (start + n <= cap) out.set(d.subarray(start, start + n));
    else {
      out.set(d.subarray(start, cap));
      out.set(d.subarray(0, n - (cap - start)), cap - start);
    }
    this.#pos = (r + ((8 + n + 7) & ~7)) | 0;
    Atomics.store(this.#words, I_READ, this.#pos);
    return out;
  }

  /**
   * Consumer: reads every message there is where it lies (its first and last byte, as the benchmark's drain
   * handler does), giving the space back every 32 and at the end. Returns how many, and adds the bytes it read
   * to `sum[0]`.
   */
  drain(sum: Float64Array): number {
    const cap = JS_RING_CAPACITY;
    const d = this.#data;
    let r = this.#pos;
    let k = 0;
    let s = 0;
    for (;;) {
      const n = this.#peek(r);
      if (n < 0) break;
      const start = ((r & (cap - 1)) + 8) & (cap - 1);
      if (n > 0) s += d[start]! + d[(start + n - 1) & (cap - 1)]!;
      r = (r + ((8 + n + 7) & ~7)) | 0;
      if ((++k & 31) === 0) Atomics.store(this.#words, I_READ, r);
    }
    if (k > 0) {
      this.#pos = r;
      Atomics.store(this.#words, I_READ, r);
      sum[0]! += s;
    }
    return k;
  }
}
