/**
 * The many-producer, one-consumer ring (after Aeron's `ManyToOneRingBuffer`): producers of any runtime reserve
 * space with a compare-and-swap on one claim position, fill their record, and publish it with one atomic store of
 * its commit word; one consumer reads the records in claim order. A table of producer slots says who wrote what, and
 * lets the consumer skip the record of a producer that died half-way through writing it. This file moves bytes and
 * keeps the table; waiting, loans and close are `shm/mpsc.ts`.
 *
 * ## Layout, byte for byte (all integers little-endian)
 *
 * ```text
 * offset  size    field
 * 0       4       magic 0x4D435049 (the bytes "IPCM")
 * 4       4       version: 1
 * 8       4       capacity C: data bytes, a power of two from 64 to 2^30
 * 12      4       flags: bit 0 = the consumer closed
 * 16      4       consumer pid (0 = none: a thread collector)
 * 20      4       consumer start-time tag (`os/liveness.ts`; 0 = unknown)
 * 24      4       producer slots S: 64
 * 28      4       lost: records the consumer skipped because their producer died before committing them (mod 2^32)
 * 32      4       max message: the largest payload the consumer accepts (at most C - 16)
 * 36      28      reserved, 0
 * 64      4       claim position T: bytes ever reserved by producers, modulo 2^32 (own cache line)
 * 68      4       consumer sleeping: 1 while the consumer waits on the bell word
 * 72      4       bell: a futex word the consumer sleeps on; a producer adds 1 and wakes it after a commit
 * 76      52      reserved, 0
 * 128     4       read position R: bytes ever consumed, modulo 2^32 (own cache line, a futex word)
 * 132     4       producers sleeping: 1 once some producer waits for R to change; the consumer takes it (1 -> 0)
 *                 and wakes them all once a quarter of the ring is free, or before it sleeps itself
 * 136     56      reserved, 0
 * 192     32 * S  producer slots, 32 bytes each (below)
 * 2240    C       data
 * ```
 *
 * A producer slot (Int32s; `state` 0 free, 1 being taken, 2 live, 3 closed by its producer):
 *
 * ```text
 * +0  state      +4  pid       +8  start-time tag   +12 sent: messages this producer committed (its writes)
 * +16 claim      position + 1 of the record this producer is reserving or writing, 0 when none (its writes)
 * +20 claim length: payload bytes of that record (written before `claim`)
 * +24 received: its messages the consumer took     +28 lost: its records the consumer skipped (the consumer's writes)
 * ```
 *
 * A record starts at data offset `P mod C` (P a multiple of 8) and runs on past the end of the area at offset 0:
 *
 * ```text
 * +0  commit word: P + 1 (mod 2^32), stored last; 0 while the record is being written
 * +4  length n >= 0 of the payload; or -size for padding (bytes to skip: an abandoned loan, or its unused tail)
 * +8  producer slot + 1 (0 until written)
 * +12 sequence: the producer's message number (its `sent` count before this message)
 * +16 payload, n bytes
 * ```
 *
 * A record takes `16 + n` bytes rounded up to a multiple of 8; padding uses only its first 8 bytes. Used bytes are
 * `T - R`, so the largest message is `C - 16` bytes.
 *
 * **Claiming.** A producer writes `claim length`, then `claim = T + 1` into its slot, then tries
 * `compareExchange(T, t, t + size)` (again from the top when another producer moved T first). Only then does it
 * write the record's header, its payload, and last the commit word. So for every reserved position the consumer can
 * tell who reserved it and how long the record is, even when its producer died before writing a byte of it.
 *
 * **Reading.** The consumer at R waits for the commit word at R to read `R + 1`. After taking a record it zeroes the
 * record's bytes, then stores R (an atomic store): every byte a producer reserves is zero, so the bytes of an older
 * record never pass for a commit word.
 *
 * **A torn record** is one whose commit word stays 0 while `T > R`. The consumer looks for its owner: the slot named
 * in the record's header if it was written, else the slots whose `claim` is `R + 1`. While any of them lives it
 * waits (a live producer finishes, or moves its claim on when its compare-and-swap failed). When every one of them is
 * dead (pid and start-time tag: a reused pid is not taken for the producer), the record is skipped: zeroed, R moved
 * past it, and counted in the header's and the slot's `lost`. Two dead producers that claimed the same position with
 * different lengths (both killed within a few instructions) cannot be told apart: a `ProtocolError`, as is a
 * reserved position that no slot claims.
 *
 * A peer can write anything into the segment: a length, position, slot or size out of bounds is a `ProtocolError`,
 * and no read or write leaves the data area whatever the segment says.
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { allocate, copyWords } from "../runtimes/bytes.ts";

const MAGIC = 0x4D435049;
const VERSION = 1;
/** Bytes before the producer table. */
const HEADER = 192;
/** Producer slots of a ring. */
export const SLOTS = 64;
const SLOT_BYTES = 32;
/** Where the data area starts. */
export const DATA_AT = HEADER + SLOTS * SLOT_BYTES;
/** Bytes of a record header. */
export const RECORD_HEADER = 16;

// Int32 indices into the header.
const I_MAGIC = 0, I_VERSION = 1, I_CAPACITY = 2, I_FLAGS = 3, I_CONSUMER = 4, I_CONSUMER_TAG = 5, I_SLOTS = 6;
const I_LOST = 7, I_MAX = 8;
/** The claim position. */
const I_CLAIM = 16;
const I_CONSUMER_SLEEPING = 17;
/** The futex word the consumer sleeps on. */
export const I_BELL = 18;
/** The read position (a futex word). */
export const I_READ = 32;
const I_PRODUCERS_SLEEPING = 33;

// Int32 offsets in a producer slot.
const S_STATE = 0, S_PID = 1, S_TAG = 2, S_SENT = 3, S_CLAIM = 4, S_CLAIM_LENGTH = 5, S_RECEIVED = 6, S_LOST = 7;
/** Slot states. */
export const FREE = 0, TAKING = 1, LIVE = 2, CLOSED = 3;

/** Flag: the consumer closed. */
export const CONSUMER_CLOSED = 1;

/** Bytes a ring with `capacity` data bytes takes. */
export function mpscSize(capacity: number): number {
  return DATA_AT + capacity;
}

/** Bytes a record of `n` payload bytes takes. */
export function recordSize(n: number): number {
  return (RECORD_HEADER + n + 7) & ~7;
}

/** A producer, as the consumer sees its slot. */
export interface ProducerInfo {
  /** Its slot, 0 to 63: what `Delivery.producer` says. */
  readonly slot: number;
  readonly pid: number;
  /** `"live"`, or `"closed"` once it closed its handle (the slot is freed once its messages were taken). */
  readonly state: "live" | "closed";
  /** Messages it committed. */
  readonly sent: number;
  /** Of those, taken by the consumer. */
  readonly received: number;
  /** Its records skipped because it died before committing them. */
  readonly lost: number;
}

/** A record at R as the consumer found it. */
export type Peek =
  | { kind: "empty" }
  | { kind: "pending" }
  | { kind: "message"; slot: number; sequence: number; start: number; length: number; size: number }
  | { kind: "padding"; size: number };

/** The view of one mpsc ring in `buffer` (from `offset`). Each end makes its own; only the consumer calls `take*`. */
export class MpscRing {
  readonly words: Int32Array;
  readonly capacity: number;
  /** The largest message the consumer accepts (at most C - 16). */
  readonly maxMessage: number;
  readonly data: Uint8Array;
  readonly #slots: Int32Array;
  readonly #mask: number;
  /** The producers' last look at R. */
  #readSeen = 0;
  /** The consumer's last look at T: read again only when a record seems to reach past it. */
  #claimSeen = 0;

  private constructor(buffer: ArrayBufferLike, capacity: number) {
    this.capacity = capacity;
    this.words = new Int32Array(buffer, 0, DATA_AT / 4);
    this.maxMessage = this.words[I_MAX]!;
    this.data = new Uint8Array(buffer, DATA_AT, capacity);
    this.#slots = new Int32Array(buffer, DATA_AT, capacity / 4);
    this.#mask = capacity - 1;
    this.#readSeen = Atomics.load(this.words, I_READ);
  }

  /** Lays a fresh ring out in `buffer` (zeroed memory) for a consumer of identity `consumer`. */
  static init(
    buffer: ArrayBufferLike,
    capacity: number,
    consumer: { id: number; tag: number },
    maxMessage = capacity - RECORD_HEADER,
  ): MpscRing {
    if (capacity < 64 || capacity > 2 ** 30 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`Cannot make a ring of ${capacity} bytes: the capacity must be a power of two >= 64`);
    }
    if (buffer.byteLength < mpscSize(capacity)) {
      throw new RangeError(`Cannot lay out a ring of ${capacity} bytes: the buffer is too small`);
    }
    const w = new Int32Array(buffer, 0, DATA_AT / 4);
    w.fill(0);
    w[I_VERSION] = VERSION;
    w[I_CAPACITY] = capacity;
    w[I_SLOTS] = SLOTS;
    w[I_MAX] = maxMessage;
    w[I_CONSUMER_TAG] = consumer.tag | 0;
    w[I_CONSUMER] = consumer.id;
    Atomics.store(w, I_MAGIC, MAGIC); // last: whoever sees the magic sees the rest
    return new MpscRing(buffer, capacity);
  }

  /**
   * Attaches to the ring laid out in `buffer`.
   *
   * @throws {ProtocolError} when there is none, of another version, or larger than the buffer.
   */
  static attach(buffer: ArrayBufferLike, what: string): MpscRing {
    if (buffer.byteLength < DATA_AT) throw new ProtocolError(`Cannot open ${what}: the segment is too small`);
    const w = new Int32Array(buffer, 0, DATA_AT / 4);
    const magic = Atomics.load(w, I_MAGIC);
    if (magic !== MAGIC) {
      throw new ProtocolError(
        `Cannot open ${what}: the segment holds no many-producer channel (magic 0x${hex(magic)})`,
      );
    }
    if (w[I_VERSION] !== VERSION) {
      throw new ProtocolError(
        `Cannot open ${what}: its layout is version ${w[I_VERSION]}, this ipckit reads ${VERSION}`,
      );
    }
    const c = w[I_CAPACITY]!;
    const max = w[I_MAX]!;
    if (
      c < 64 || c > 2 ** 30 || (c & (c - 1)) !== 0 || mpscSize(c) > buffer.byteLength || w[I_SLOTS] !== SLOTS ||
      max < 0 || max > c - RECORD_HEADER
    ) {
      throw new ProtocolError(`Cannot open ${what}: bad capacity ${c}, slot count ${w[I_SLOTS]} or max message ${max}`);
    }
    return new MpscRing(buffer, c);
  }

  /** Whether `buffer` holds a laid-out ring yet (the magic word is there). */
  static ready(buffer: ArrayBufferLike): boolean {
    return buffer.byteLength >= DATA_AT && Atomics.load(new Int32Array(buffer, 0, 1), I_MAGIC) === MAGIC;
  }

  get flags(): number {
    return Atomics.load(this.words, I_FLAGS);
  }

  setFlag(flag: number): void {
    Atomics.or(this.words, I_FLAGS, flag);
  }

  consumer(): { id: number; tag: number } {
    return { id: Atomics.load(this.words, I_CONSUMER), tag: Atomics.load(this.words, I_CONSUMER_TAG) >>> 0 };
  }

  /** Records lost to dead producers, in all. */
  get lost(): number {
    return Atomics.load(this.words, I_LOST) >>> 0;
  }

  readPosition(): number {
    return Atomics.load(this.words, I_READ);
  }

  claimPosition(): number {
    return Atomics.load(this.words, I_CLAIM);
  }

  // ---- producer slots

  #slot(i: number): number {
    return HEADER / 4 + i * (SLOT_BYTES / 4);
  }

  /** Takes a free slot for a producer of identity `who`; -1 when all are taken. */
  takeSlot(who: { id: number; tag: number }): number {
    const w = this.words;
    for (let i = 0; i < SLOTS; i++) {
      const s = this.#slot(i);
      if (Atomics.compareExchange(w, s + S_STATE, FREE, TAKING) !== FREE) continue;
      w[s + S_PID] = who.id;
      w[s + S_TAG] = who.tag | 0;
      w[s + S_SENT] = 0;
      w[s + S_CLAIM_LENGTH] = 0;
      w[s + S_CLAIM] = 0;
      w[s + S_RECEIVED] = 0;
      w[s + S_LOST] = 0;
      Atomics.store(w, s + S_STATE, LIVE);
      return i;
    }
    return -1;
  }

  /** A producer leaves its slot (the consumer frees it once its messages were taken). */
  closeSlot(slot: number): void {
    Atomics.store(this.words, this.#slot(slot) + S_STATE, CLOSED);
  }

  /** The pid in a slot. */
  pidOf(slot: number): number {
    return this.words[this.#slot(slot) + S_PID]!;
  }

  /** Producers in the table, live or closed with messages not yet taken. */
  producers(): ProducerInfo[] {
    const out: ProducerInfo[] = [];
    const w = this.words;
    for (let i = 0; i < SLOTS; i++) {
      const s = this.#slot(i);
      const state = Atomics.load(w, s + S_STATE);
      if (state !== LIVE && state !== CLOSED) continue;
      out.push({
        slot: i,
        pid: w[s + S_PID]!,
        state: state === LIVE ? "live" : "closed",
        sent: w[s + S_SENT]! >>> 0,
        received: w[s + S_RECEIVED]! >>> 0,
        lost: w[s + S_LOST]! >>> 0,
      });
    }
    return out;
  }

  /**
   * Consumer: frees the slots of producers that closed or died once nothing of theirs is left in the ring (no claim
   * pending, every committed message taken). `alive` says whether a pid and tag still name a live producer.
   */
  reap(alive: (id: number, tag: number) => boolean): void {
    const w = this.words;
    for (let i = 0; i < SLOTS; i++) {
      const s = this.#slot(i);
      const state = Atomics.load(w, s + S_STATE);
      if (state !== LIVE && state !== CLOSED) continue;
      const claim = Atomics.load(w, s + S_CLAIM);
      // A claim at or past R is pending; one behind it is a stale claim of a producer that lost its race and died.
      if (claim !== 0 && ((claim - 1 - Atomics.load(w, I_READ)) | 0) >= 0) continue;
      if (((w[s + S_RECEIVED]! - Atomics.load(w, s + S_SENT)) | 0) < 0) continue;
      if (state === LIVE && alive(w[s + S_PID]!, w[s + S_TAG]! >>> 0)) continue;
      Atomics.compareExchange(w, s + S_STATE, state, FREE);
    }
  }

  // ---- producer side

  /** The word index in the data area of word `k` of the record at `p`. */
  #at(p: number, k: number): number {
    return (((p & this.#mask) >> 2) + k) & (this.#mask >> 2);
  }

  /**
   * Producer of `slot`: reserves a record of `n` payload bytes; its position, or -1 when there is no room now.
   *
   * @throws {ProtocolError} when the positions are impossible.
   */
  claim(slot: number, n: number): number {
    const w = this.words;
    const size = recordSize(n);
    const s = this.#slot(slot);
    for (;;) {
      const t = Atomics.load(w, I_CLAIM);
      if (((t - this.#readSeen) >>> 0) + size > this.capacity) {
        const r = this.#readSeen = Atomics.load(w, I_READ);
        // T and R are two loads: between them other producers may claim and the consumer take, so R may be past T,
        // or T more than C past R. T unchanged across the load of R makes them one moment's: else look again.
        if (Atomics.load(w, I_CLAIM) !== t) continue;
        const used = (t - r) >>> 0;
        if (used > this.capacity || ((t | r) & 7) !== 0) throw badPositions("write to", t, r, this.capacity);
        if (used + size > this.capacity) return -1;
      }
      w[s + S_CLAIM_LENGTH] = n; // published by the atomic store of the claim
      Atomics.store(w, s + S_CLAIM, (t + 1) | 0);
      if (Atomics.compareExchange(w, I_CLAIM, t, (t + size) | 0) === t) {
        this.#slots[this.#at(t, 2)] = slot + 1;
        return t;
      }
    }
  }

  /** Producer: the data offset where the payload of the record at `p` starts. */
  payloadAt(p: number): number {
    return (p + RECORD_HEADER) & this.#mask;
  }

  /** Producer: writes `length` bytes of `message` as the payload of the record at `p` (wrapping at the end). */
  write(p: number, message: Uint8Array, length: number): void {
    const start = this.payloadAt(p);
    const first = this.capacity - start;
    if (length <= first) this.data.set(length === message.length ? message : message.subarray(0, length), start);
    else {
      this.data.set(message.subarray(0, first), start);
      this.data.set(message.subarray(first, length), 0);
    }
  }

  /**
   * Producer of `slot`: publishes the record at `p` reserved for `reserved` bytes with `length` of them used (the
   * rest becomes padding), as the producer's message number `sequence`; then drops the claim.
   */
  commit(slot: number, p: number, reserved: number, length: number, sequence: number): void {
    const slots = this.#slots;
    const size = recordSize(length);
    const full = recordSize(reserved);
    if (size < full) {
      const q = (p + size) | 0;
      slots[this.#at(q, 1)] = -(full - size);
      Atomics.store(slots, this.#at(q, 0), (q + 1) | 0);
    }
    slots[this.#at(p, 1)] = length;
    slots[this.#at(p, 2)] = slot + 1;
    slots[this.#at(p, 3)] = sequence;
    Atomics.store(slots, this.#at(p, 0), (p + 1) | 0);
    const s = this.#slot(slot);
    this.words[s + S_SENT] = (sequence + 1) | 0; // published by the atomic store of the claim
    Atomics.store(this.words, s + S_CLAIM, 0);
  }

  /** Producer: gives a reserved record back as padding (an abandoned loan). */
  abandon(slot: number, p: number, reserved: number): void {
    const slots = this.#slots;
    slots[this.#at(p, 1)] = -recordSize(reserved);
    Atomics.store(slots, this.#at(p, 0), (p + 1) | 0);
    Atomics.store(this.words, this.#slot(slot) + S_CLAIM, 0);
  }

  /** Producer: announces a wait for room (then re-checks before sleeping on R). */
  set producersSleeping(on: boolean) {
    Atomics.store(this.words, I_PRODUCERS_SLEEPING, on ? 1 : 0);
  }

  /** Producer: whether the consumer sleeps, taking the announcement (the caller wakes it). */
  takeConsumerSleeping(): boolean {
    return this.words[I_CONSUMER_SLEEPING] !== 0 && Atomics.exchange(this.words, I_CONSUMER_SLEEPING, 0) !== 0;
  }

  /** Producer: rings the bell word (before waking the consumer's futex on it). */
  ring(): void {
    Atomics.add(this.words, I_BELL, 1);
  }

  // ---- consumer side

  /** Consumer: announces a sleep; returns the bell value to sleep on. */
  announceSleep(): number {
    const bell = Atomics.load(this.words, I_BELL);
    Atomics.store(this.words, I_CONSUMER_SLEEPING, 1);
    return bell;
  }

  endSleep(): void {
    Atomics.store(this.words, I_CONSUMER_SLEEPING, 0);
  }

  /** Consumer: whether a producer announced a wait for room, taking the announcement. */
  takeProducersSleeping(): boolean {
    return Atomics.exchange(this.words, I_PRODUCERS_SLEEPING, 0) !== 0;
  }

  /** Consumer: whether some producer may wait for room (a plain look: a later ordered one repeats it). */
  get producersWaiting(): boolean {
    return this.words[I_PRODUCERS_SLEEPING] !== 0;
  }

  /** Consumer at `r`: whether at least a quarter of the ring is free (T read now). */
  roomy(r: number): boolean {
    return ((Atomics.load(this.words, I_CLAIM) - r) >>> 0) <= this.capacity - (this.capacity >> 2);
  }

  /**
   * Consumer at `r`: what is there. `limit` is the largest message the consumer accepts.
   *
   * @throws {ProtocolError} when the record or the positions are corrupt.
   */
  peek(r: number, limit: number): Peek {
    const slots = this.#slots;
    const commit = Atomics.load(slots, this.#at(r, 0));
    if (commit !== ((r + 1) | 0)) {
      if (commit !== 0) throw this.#corrupt(r, `its commit word is ${commit >>> 0}`);
      const t = Atomics.load(this.words, I_CLAIM);
      const used = (t - r) >>> 0;
      if (used > this.capacity || (t & 7) !== 0) throw badPositions("read", t, r, this.capacity);
      return used === 0 ? { kind: "empty" } : { kind: "pending" };
    }
    const length = slots[this.#at(r, 1)]!;
    if (length < 0) {
      const size = -length;
      if ((size & 7) !== 0 || size > this.#used(r)) throw this.#corrupt(r, `a padding of ${size} bytes`);
      return { kind: "padding", size };
    }
    const size = recordSize(length);
    if (length > limit || size > this.#used(r, size)) {
      throw this.#corrupt(r, `a message of ${length} bytes (limit ${limit})`);
    }
    const slot = slots[this.#at(r, 2)]! - 1;
    if (slot < 0 || slot >= SLOTS) throw this.#corrupt(r, `producer slot ${slot}`);
    return { kind: "message", slot, sequence: slots[this.#at(r, 3)]! >>> 0, start: this.payloadAt(r), length, size };
  }

  /** Consumer: bytes reserved from `r` on, as last seen when `size` of them fit in it, else read again. */
  #used(r: number, size = Infinity): number {
    let used = (this.#claimSeen - r) >>> 0;
    if (used < size || used > this.capacity) {
      this.#claimSeen = Atomics.load(this.words, I_CLAIM);
      used = (this.#claimSeen - r) >>> 0;
    }
    return used;
  }

  /**
   * Consumer: a fresh copy of the `length` payload bytes at data offset `start` (wrapping). Pooled where making an
   * array costs more than the copy (`runtimes/bytes.ts`: Deno).
   */
  copy(start: number, length: number): Uint8Array {
    if (start + length <= this.capacity) return copyWords(this.data, this.#slots, start, length);
    return this.copyOut(start, length, allocate(length));
  }

  /** Consumer: copies `length` bytes from data offset `start` (wrapping) into `into` at 0. */
  copyOut(start: number, length: number, into: Uint8Array): Uint8Array {
    const first = this.capacity - start;
    if (length <= first) into.set(this.data.subarray(start, start + length));
    else {
      into.set(this.data.subarray(start), 0);
      into.set(this.data.subarray(0, length - first), first);
    }
    return into;
  }

  /**
   * Consumer: zeroes `size` bytes at `r`, moves R past them and returns the new R; counts a message taken from
   * `slot` (-1: none).
   */
  advance(r: number, size: number, slot: number): number {
    const at = r & this.#mask;
    const end = at + size;
    if (end <= this.capacity) this.data.fill(0, at, end);
    else {
      this.data.fill(0, at);
      this.data.fill(0, 0, end - this.capacity);
    }
    if (slot >= 0) this.countReceived(slot);
    const next = (r + size) | 0;
    Atomics.store(this.words, I_READ, next);
    return next;
  }

  /** Consumer: counts a message taken from `slot`. */
  countReceived(slot: number): void {
    const s = this.#slot(slot) + S_RECEIVED;
    this.words[s] = (this.words[s]! + 1) | 0; // only the consumer reads it (`reap`, `producers()`)
  }

  /**
   * Consumer at `r` (a record reserved but not committed): the record's size when every producer that may own it is
   * dead (it is then skipped by the caller through {@linkcode skipTorn}); undefined while one of them may still write
   * it.
   *
   * @throws {ProtocolError} when no producer claims it, or its claim is impossible.
   */
  tornSize(r: number, alive: (id: number, tag: number) => boolean): { size: number; slots: number[] } | undefined {
    const w = this.words;
    const mine = (r + 1) | 0;
    const named = this.#slots[this.#at(r, 2)]! - 1; // the winner's slot, once it wrote it
    if (named >= SLOTS || named < -1) throw this.#corrupt(r, `producer slot ${named}`);
    // A snapshot of the claims, then the commit word again: a producer drops its claim only after its commit.
    const owners: number[] = [];
    for (let i = 0; i < SLOTS; i++) {
      if ((named < 0 || i === named) && Atomics.load(w, this.#slot(i) + S_CLAIM) === mine) owners.push(i);
    }
    if (Atomics.load(this.#slots, this.#at(r, 0)) !== 0) return undefined;
    if (owners.length === 0) {
      throw this.#corrupt(r, named >= 0 ? `slot ${named} names it but claims another` : "no producer claims it");
    }
    let size = -1;
    for (const i of owners) {
      const s = this.#slot(i);
      if (alive(w[s + S_PID]!, w[s + S_TAG]! >>> 0)) return undefined;
      const n = w[s + S_CLAIM_LENGTH]!;
      const used = (Atomics.load(w, I_CLAIM) - r) >>> 0;
      if (n < 0 || n > this.maxMessage || recordSize(n) > used) throw this.#corrupt(r, `slot ${i} claims ${n} bytes`);
      if (size >= 0 && size !== recordSize(n)) {
        throw this.#corrupt(r, "two dead producers claimed it with different lengths");
      }
      size = recordSize(n);
    }
    return { size, slots: owners };
  }

  /** Consumer: skips the torn record at `r` of `size` bytes whose dead owners are `slots`; returns the new R. */
  skipTorn(r: number, size: number, slots: number[]): number {
    const w = this.words;
    for (const i of slots) {
      const s = this.#slot(i);
      Atomics.store(w, s + S_CLAIM, 0);
      Atomics.store(w, s + S_LOST, (w[s + S_LOST]! + 1) | 0);
    }
    Atomics.add(w, I_LOST, 1);
    return this.advance(r, size, -1);
  }

  #corrupt(r: number, detail: string): ProtocolError {
    return new ProtocolError(`Cannot read the many-producer ring at position ${r >>> 0}: ${detail}`);
  }
}

function badPositions(what: string, t: number, r: number, capacity: number): ProtocolError {
  return new ProtocolError(
    `Cannot ${what} the many-producer ring: its positions are corrupt (claim ${t >>> 0}, read ${
      r >>> 0
    }, capacity ${capacity})`,
  );
}

function hex(n: number): string {
  return (n >>> 0).toString(16).padStart(8, "0");
}
