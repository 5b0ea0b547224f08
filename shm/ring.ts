/**
 * A single-producer, single-consumer ring of variable-size messages over any ArrayBuffer: a shared memory segment
 * (between processes) or a SharedArrayBuffer (between threads). Positions are published with Atomics; there is no
 * lock. The wait/wake side (futex or Atomics.wait) lives in `wait.ts`; this file only moves bytes.
 *
 * ## Layout, byte for byte (all integers little-endian, the host order of x86-64 and arm64)
 *
 * ```text
 * offset  size  field
 * 0       4     magic 0x52435049 (the bytes "IPCR")
 * 4       4     version: 2
 * 8       4     capacity C: size of the data area in bytes, a power of two from 64 to 2^30
 * 12      4     flags: bit 0 = the producer closed, bit 1 = the consumer closed, bit 2 = the consumer can fence
 *               before it sleeps (the producer may publish with plain stores, see `os/fence.ts`)
 * 16      4     producer pid (0 = none yet)
 * 20      4     consumer pid (0 = none yet)
 * 24      4     producer start-time tag (0 = unknown; see `os/liveness.ts`: start time in ticks modulo 2^32)
 * 28      4     consumer start-time tag (0 = unknown)
 * 32      32    reserved, 0
 * 64      4     write position W: bytes ever published by the producer, modulo 2^32 (own cache line)
 * 68      4     consumer sleeping: 1 while the consumer waits for W to change (futex/Atomics.wait on W)
 * 72      4     plain: 1 while the producer publishes with plain stores (the consumer then fences before it sleeps)
 * 76      52    reserved, 0
 * 128     4     read position R: bytes ever consumed, modulo 2^32 (own cache line)
 * 132     4     producer sleeping: 1 while the producer waits for R to change (futex/Atomics.wait on R)
 * 136     56    reserved, 0
 * 192     C     data
 * ```
 *
 * A record starts at data offset `P mod C` (P a position, always a multiple of 8): an 8-byte header, a length `n`
 * then a commit word, followed by `n` payload bytes, continuing at data offset 0 when the end of the area is reached;
 * the record takes `8 + n` rounded up to a multiple of 8 bytes. Used bytes are `W - R` (modulo 2^32); free bytes
 * `C - (W - R)`. C divides 2^32, so `P mod C` stays right when the positions wrap.
 *
 * **The commit word is how a consumer sees a message in one cache line** (the sequence-in-the-slot of LMAX's
 * Disruptor and Aeron): the producer writes the length and the payload, then stores `P + 1` into the commit word
 * of the record at P (a release: an atomic store, or a plain one on x86-64 when the consumer fences before it
 * sleeps, see `os/fence.ts`), then `W + size`. The consumer at R looks only at the commit word at R: equal
 * to `R + 1`, the record is there, whatever W says yet. So a round trip moves the record's line each way and
 * nothing else; W is read only by a consumer going to sleep, and R only by a producer that sees no room (it keeps
 * the last R it read). Stale bytes never pass for a commit: before publishing a record, the producer zeroes the
 * commit word where the next record will start when that is free space (where it is not, the ring is full and
 * the word is the oldest unread record's, a lap behind: `P + 1 - C`). A batch of records is published by one
 * release (the first record's commit word, written last; the others are written before it).
 *
 * A peer can write anything into a shared segment, so a reader trusts nothing it reads there: a length over the
 * ring's limit, or positions that claim more used bytes than the capacity, are a `ProtocolError`; no read or write
 * ever leaves the data area, whatever the header or a record says.
 *
 * @module
 */
import { MessageTooLargeError, ProtocolError } from "../errors.ts";
import { allocate, copyWords } from "../runtimes/bytes.ts";
import type { Identity } from "../os/liveness.ts";
import { Counters } from "./stats.ts";

/** Where a ring that nobody watches counts. */
const UNWATCHED = new Counters("channel", "");

/** Header size; the data area follows. */
export const RING_HEADER = 192;
const MAGIC = 0x52435049;
const VERSION = 2;
// Hot paths read a message's size as `length`, not `byteLength` (the same for a Uint8Array): Node 20's V8 takes 8-10 ns
// longer for `byteLength`, which doubled the cost of writing a batch of 64-byte messages.

/** Messages up to this many bytes are copied into the ring byte by byte (past it a loop into mapped memory costs more
 * than set(): 64 bytes by hand halved 64 B throughput on Node). */
const SMALL = 16;

// Int32 indices into the header.
const I_MAGIC = 0;
const I_VERSION = 1;
const I_CAPACITY = 2;
const I_FLAGS = 3;
const I_PRODUCER = 4;
const I_CONSUMER = 5;
const I_PRODUCER_TAG = 6;
const I_CONSUMER_TAG = 7;
/** Int32 index of the write position (a futex word). */
export const I_WRITE = 16;
const I_CONSUMER_SLEEPING = 17;
const I_PLAIN = 18;
/** Int32 index of the read position (a futex word). */
export const I_READ = 32;
const I_PRODUCER_SLEEPING = 33;

/** Flag: the producer closed the ring (the consumer sees the end once it drained it). */
export const PRODUCER_CLOSED = 1;
/** Flag: the consumer closed the ring (the producer's sends fail). */
export const CONSUMER_CLOSED = 2;
/** Flag: the consumer runs the heavy fence of `os/fence.ts` between announcing a sleep and its last look whenever the
 * producer says it publishes plainly (the `plain` word), so the producer may. Set once, before the first read. */
export const CONSUMER_FENCES = 4;

/** How many publications in a row must find the consumer awake before a producer (that may) publishes plainly (see
 * `takeConsumerSleeping`). */
export const PLAIN_AFTER = 64;

/** What a caller's handler threw inside a read of the ring, carried past the ring's own error handling (a handler's
 * error is the caller's, a corrupt ring is the channel's). */
export class HandlerFailure {
  constructor(readonly error: unknown) {}
}

/** The error for positions no honest peer writes: more used bytes than the capacity, or not a multiple of 8. */
function badPositions(what: string, w: number, r: number, capacity: number): ProtocolError {
  return new ProtocolError(
    `Cannot ${what} the ring: its positions are corrupt (write ${w >>> 0}, read ${r >>> 0}, capacity ${capacity})`,
  );
}

/** Whether `m` can go as one message of a ring that takes at most `limit` bytes: a Uint8Array of at most `limit`. */
export function sendable(m: unknown, limit: number): m is Uint8Array {
  return m instanceof Uint8Array && m.length <= limit;
}

/** Bytes a ring with `capacity` data bytes takes. */
export function ringSize(capacity: number): number {
  return RING_HEADER + capacity;
}

/** Rounds a requested capacity up to what a ring uses: a power of two from 64 to 2^30. */
export function ringCapacity(requested: number): number {
  if (!Number.isSafeInteger(requested) || requested < 1 || requested > 2 ** 30) {
    throw new RangeError(`Cannot use ring capacity ${requested}: it must be an integer from 1 to 2^30 bytes`);
  }
  let c = 64;
  while (c < requested) c *= 2;
  return c;
}

/** One end's view of a ring at `offset` in `buffer`. */
export class Ring {
  /** The header as Int32s (futex words and Atomics live here). */
  readonly words: Int32Array;
  /** Byte offset of the header in the buffer (for futex addresses). */
  readonly offset: number;
  readonly capacity: number;
  /** The largest message that fits. */
  readonly maxMessage: number;
  readonly #data: Uint8Array;
  /** The data area as Int32s: record headers (length, commit word) are read and written through it. */
  readonly #slots: Int32Array;
  // The producer's last look at R: read again only when there seems to be no room, which saves a cache miss on
  // most messages.
  #readSeen = 0;
  /** W as this end last wrote it (the producer's own copy: only it writes W), and R as this end last wrote it (the
   * consumer's). Read from the header once, when attaching; an Atomics.load is a call into the runtime (7 ns in V8). */
  #write: number;
  #read: number;
  /** This side's counters, and where in them: messages at `#countAt`, their bytes at `#countAt + 1`. */
  #counters = UNWATCHED;
  #countAt = 0;
  /** Whether this producer may publish with plain stores (see {@linkcode publishPlainly}), whether it does now (the
   * `plain` word's value), and how many publications in a row found the consumer awake. */
  #plainOk = false;
  #plain = false;
  #awake = 0;

  private constructor(buffer: ArrayBufferLike, offset: number, capacity: number) {
    this.offset = offset;
    this.words = new Int32Array(buffer, offset, RING_HEADER / 4);
    this.capacity = capacity;
    this.maxMessage = capacity - 8;
    this.#data = new Uint8Array(buffer, offset + RING_HEADER, capacity);
    this.#slots = new Int32Array(buffer, offset + RING_HEADER, capacity / 4);
    this.#write = Atomics.load(this.words, I_WRITE);
    this.#read = Atomics.load(this.words, I_READ);
  }

  /** Writes a fresh header at `offset` (the memory must be zeroed or unused) and returns the ring. */
  static init(buffer: ArrayBufferLike, offset: number, capacity: number): Ring {
    if (offset % 64 !== 0) throw new RangeError(`Cannot place a ring at offset ${offset}: it must be 64-aligned`);
    if (capacity < 64 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`Cannot make a ring of ${capacity} bytes: the capacity must be a power of two >= 64`);
    }
    if (offset + ringSize(capacity) > buffer.byteLength) {
      throw new RangeError(`Cannot place a ring of ${capacity} bytes at offset ${offset}: the buffer is too small`);
    }
    const w = new Int32Array(buffer, offset, RING_HEADER / 4);
    w.fill(0);
    w[I_VERSION] = VERSION;
    w[I_CAPACITY] = capacity;
    Atomics.store(w, I_MAGIC, MAGIC); // last: a reader that sees the magic sees the rest
    return new Ring(buffer, offset, capacity);
  }

  /**
   * Attaches to a ring someone initialised at `offset`.
   *
   * @throws {ProtocolError} when there is no ring of this version there.
   */
  static attach(buffer: ArrayBufferLike, offset: number): Ring {
    const w = new Int32Array(buffer, offset, RING_HEADER / 4);
    if (Atomics.load(w, I_MAGIC) !== MAGIC) {
      throw new ProtocolError(`Cannot attach a ring at offset ${offset}: no ring there`);
    }
    if (w[I_VERSION] !== VERSION) {
      throw new ProtocolError(`Cannot attach a ring at offset ${offset}: version ${w[I_VERSION]}, expected ${VERSION}`);
    }
    const capacity = w[I_CAPACITY]!;
    if (capacity < 64 || (capacity & (capacity - 1)) !== 0 || offset + ringSize(capacity) > buffer.byteLength) {
      throw new ProtocolError(`Cannot attach a ring at offset ${offset}: bad capacity ${capacity}`);
    }
    return new Ring(buffer, offset, capacity);
  }

  /** Ring flags (PRODUCER_CLOSED, CONSUMER_CLOSED). */
  get flags(): number {
    return Atomics.load(this.words, I_FLAGS);
  }

  /**
   * Ring flags as a plain read: what a check on every message reads (an Atomics.load is a call into the runtime). It
   * may lag a flag the other process set a moment ago, so it serves only where a later look repeats the check.
   */
  get flagsSeen(): number {
    return this.words[I_FLAGS]!;
  }

  /** Sets a flag. */
  setFlag(flag: number): void {
    Atomics.or(this.words, I_FLAGS, flag);
  }

  /**
   * Producer: lets this end publish with plain stores when the consumer can fence before it sleeps
   * (`CONSUMER_FENCES`): only on x86-64, from a process registered for the consumer's membarrier(2) (`os/fence.ts`).
   */
  publishPlainly(on: boolean): void {
    this.#plainOk = on;
    if (!on && this.#plain) this.#setPlain(false);
  }

  /** Consumer: whether the producer publishes with plain stores now (then this side fences before it sleeps). */
  get producerPublishesPlainly(): boolean {
    return Atomics.load(this.words, I_PLAIN) !== 0;
  }

  /**
   * Says whether this producer publishes plainly from now on. An atomic store both ways: turned on, before the first
   * plain store (a consumer that read 0 announced its sleep before it, so this side's next look sees that); turned
   * off, after the last (which it publishes).
   */
  #setPlain(on: boolean): void {
    Atomics.store(this.words, I_PLAIN, on ? 1 : 0);
    this.#plain = on;
    this.#awake = 0;
  }

  /** Records who one side is: its pid and start-time tag (the tag first, so a reader of the pid sees both). */
  setOwner(side: "producer" | "consumer", owner: Identity): void {
    Atomics.store(this.words, side === "producer" ? I_PRODUCER_TAG : I_CONSUMER_TAG, owner.tag | 0);
    Atomics.store(this.words, side === "producer" ? I_PRODUCER : I_CONSUMER, owner.id);
  }

  /** Who one side is (id 0 when not attached; tag 0 when it did not say). */
  owner(side: "producer" | "consumer"): Identity {
    const id = Atomics.load(this.words, side === "producer" ? I_PRODUCER : I_CONSUMER);
    const tag = Atomics.load(this.words, side === "producer" ? I_PRODUCER_TAG : I_CONSUMER_TAG) >>> 0;
    return { id, tag };
  }

  /** The pid of one side (0 when not attached). */
  pid(side: "producer" | "consumer"): number {
    return Atomics.load(this.words, side === "producer" ? I_PRODUCER : I_CONSUMER);
  }

  /** Bytes a record for a message of `n` bytes takes. */
  static recordSize(n: number): number {
    return (8 + n + 7) & ~7;
  }

  /** True when a message is waiting (the record at R is committed). */
  readable(): boolean {
    const r = this.#read;
    if ((r & 7) !== 0) return true; // a corrupt position: reading says so
    return Atomics.load(this.#slots, ((r & (this.capacity - 1)) >> 2) + 1) === ((r + 1) | 0);
  }

  /** The current write position (what a waiting consumer compares against). */
  writePosition(): number {
    return Atomics.load(this.words, I_WRITE);
  }

  /** Producer: the free bytes now (R read again). */
  freeBytes(): number {
    return this.#free(this.#write, this.capacity + 1);
  }

  /** The current read position (what a waiting producer compares against). */
  readPosition(): number {
    return Atomics.load(this.words, I_READ);
  }

  /** Counts what this side writes (or reads) through this ring into `counters`: messages at `at`, bytes at `at + 1`. */
  countInto(counters: Counters, at: number): void {
    this.#counters = counters;
    this.#countAt = at;
  }

  #count(messages: number, bytes: number): void {
    const v = this.#counters.values;
    v[this.#countAt]! += messages;
    v[this.#countAt + 1]! += bytes;
  }

  /**
   * Free bytes for the producer at write position `w`, from the last R seen when `size` bytes fit in it, else from
   * R read again.
   *
   * @throws {ProtocolError} when the positions are impossible (more used bytes than the capacity, not aligned).
   */
  #free(w: number, size: number): number {
    let free = this.capacity - ((w - this.#readSeen) >>> 0);
    if (free < size || (w & 7) !== 0) {
      const r = this.#readSeen = Atomics.load(this.words, I_READ);
      const used = (w - r) >>> 0;
      if (used > this.capacity || ((w | r) & 7) !== 0) throw badPositions("write to", w, r, this.capacity);
      free = this.capacity - used;
    }
    return free;
  }

  /** Copies the first `n` bytes of `message` into the data area from `start` (on at 0 past its end). */
  #copyIn(message: Uint8Array, start: number, n: number): void {
    const data = this.#data;
    if (start + n > this.capacity) this.#putWrapped(message, start, n);
    else if (n <= SMALL) {
      // A loop beats set() (a call into the runtime, and a subarray when only a part goes) for a few bytes.
      for (let i = 0; i < n; i++) data[start + i] = message[i]!;
    } // One set() per call site, each always given the same kind of argument: V8 (Node's) is 10 ns slower per message
    // on one set() whose argument is sometimes the message, sometimes a subarray.
    else if (n === message.length) data.set(message, start);
    else data.set(message.subarray(0, n), start);
  }

  /** Writes the `n` bytes of a message that goes past the end of the data area from `start`, and on at 0. */
  #putWrapped(message: Uint8Array, start: number, n: number): void {
    const first = this.capacity - start;
    this.#data.set(message.subarray(0, first), start);
    this.#data.set(message.subarray(first, n), 0);
  }

  /**
   * Producer: appends one message (the first `n` bytes of `message`) if there is room. Returns false (and writes
   * nothing) when the ring is full. The caller checks `n <= maxMessage` and `n <= message.byteLength` first.
   *
   * @throws {ProtocolError} when the positions are impossible (more used bytes than the capacity, not aligned).
   */
  tryWrite(message: Uint8Array, n: number = message.length): boolean {
    // The whole path in one method (the cold parts out of line), so that a JIT inlines all of it into the caller's
    // loop with the channel's trySend around it: as five calls (room, record, copy, publication, counters) it used
    // up V8's inlining budget (920 bytes of bytecode into one function) before this was inlined. Single 64-byte sends
    // into a busy consumer, old and new in turn in one pair of processes: this alone 22 -> 27 M msg/s on Node
    // (`docs/performance.md`).
    const w = this.#write;
    const cap = this.capacity;
    const size = (8 + n + 7) & ~7;
    let free = cap - ((w - this.#readSeen) >>> 0);
    if (free < size || (w & 7) !== 0) {
      free = this.#free(w, size);
      if (free < size) return false;
    }
    const slots = this.#slots;
    const at = w & (cap - 1);
    slots[at >> 2] = n;
    const start = at + 8 === cap ? 0 : at + 8;
    if (n > SMALL && n === message.length && start + n <= cap) this.#data.set(message, start);
    else this.#copyIn(message, start, n);
    if (size < free) slots[(((at + size) & (cap - 1)) >> 2) + 1] = 0; // the next record's commit word (the layout)
    // #publish's work, inline.
    if (this.#plain) slots[(at >> 2) + 1] = (w + 1) | 0;
    else Atomics.store(slots, (at >> 2) + 1, (w + 1) | 0);
    const next = (w + size) | 0;
    this.#write = next;
    this.words[I_WRITE] = next;
    const v = this.#counters.values;
    v[this.#countAt]! += 1;
    v[this.#countAt + 1]! += n;
    return true;
  }

  /**
   * Makes the records from `w` to `next` visible: the commit word of the first (after every other byte of them), then
   * W. W is a plain store: nothing orders on it (a consumer sees records by their commit words and reads W only to
   * sleep on it, and the wake-up that follows W is a system call, which publishes it first).
   *
   * The commit word is a plain store while this producer publishes plainly (see {@linkcode takeConsumerSleeping}): a
   * release on x86-64, where an `Atomics.store` would wait for the record's cache line to come back from the
   * consumer's CPU (see `os/fence.ts`). Otherwise an atomic store.
   */
  #publish(w: number, next: number): void {
    const at = ((w & (this.capacity - 1)) >> 2) + 1;
    if (this.#plain) this.#slots[at] = (w + 1) | 0;
    else Atomics.store(this.#slots, at, (w + 1) | 0);
    this.#write = next;
    this.words[I_WRITE] = next;
  }

  /**
   * Producer: where the payload of a message of `n` bytes would go if it were written now (a data offset; its bytes
   * run on from there, past the end of the data area they continue at 0), or -1 when there is no room. Writes
   * nothing: the caller fills the bytes there (or elsewhere, see {@linkcode commitLoan}) and then commits them, with no
   * other write in between. The caller checks `n <= maxMessage` first.
   *
   * @throws {ProtocolError} when the positions are impossible (more used bytes than the capacity, not aligned).
   */
  reserve(n: number): number {
    const w = this.#write;
    const size = (8 + n + 7) & ~7;
    if (this.#free(w, size) < size) return -1;
    const at = w & (this.capacity - 1);
    return at + 8 === this.capacity ? 0 : at + 8;
  }

  /**
   * Producer: publishes the message whose `length` bytes were filled in where {@linkcode reserve} said (for a
   * reservation of at least `length` bytes), or are in `wrapped`, a message that runs past the end of the data area:
   * they are copied in here.
   *
   * @throws {ProtocolError} when the positions are impossible, or say there is no room any more.
   */
  commitLoan(length: number, wrapped?: Uint8Array): void {
    const w = this.#write;
    const size = (8 + length + 7) & ~7;
    const free = this.#free(w, size);
    if (free < size) throw badPositions("commit to", w, this.#readSeen, this.capacity); // R went back: a hostile peer
    const cap = this.capacity;
    const at = w & (cap - 1);
    this.#slots[at >> 2] = length;
    if (wrapped !== undefined) {
      const start = at + 8 === cap ? 0 : at + 8;
      const first = Math.min(length, cap - start);
      this.#data.set(wrapped.subarray(0, first), start);
      if (first < length) this.#data.set(wrapped.subarray(first, length), 0);
    }
    if (size < free) this.#slots[(((at + size) & (cap - 1)) >> 2) + 1] = 0;
    this.#publish(w, (w + size) | 0);
    this.#count(1, length);
  }

  /**
   * Consumer: the committed message at R without taking it: its length (-1 when none is there), its bytes at
   * {@linkcode lentAt} in {@linkcode view} (or, when they wrap around the end, a copy: {@linkcode lentCopy}).
   * {@linkcode releaseLoan} takes it.
   *
   * @throws {ProtocolError} / {MessageTooLargeError} as {@linkcode tryRead}.
   */
  lend(limit = this.maxMessage): number {
    return this.#peek(this.#read, limit);
  }

  /** The data offset of the payload of the message at R (see {@linkcode lend}), or -1 when it wraps. */
  lentAt(n: number): number {
    const cap = this.capacity;
    const at = this.#read & (cap - 1);
    const start = at + 8 === cap ? 0 : at + 8;
    return start + n <= cap ? start : -1;
  }

  /** The `n` bytes of the message at R copied into `into` (for one whose bytes wrap); returns `into`. */
  lentCopy(n: number, into: Uint8Array): Uint8Array {
    const cap = this.capacity;
    const at = this.#read & (cap - 1);
    const start = at + 8 === cap ? 0 : at + 8;
    const first = Math.min(n, cap - start);
    into.set(this.#data.subarray(start, start + first));
    if (first < n) into.set(this.#data.subarray(0, n - first), first);
    return into;
  }

  /** `n` bytes of the data area from `offset`, as a view (no copy): valid as long as the ring's memory is. */
  view(offset: number, n: number): Uint8Array {
    return this.#data.subarray(offset, offset + n);
  }

  /** Consumer: takes the message of `n` bytes at R that {@linkcode lend} showed. */
  releaseLoan(n: number): void {
    this.#consumed((this.#read + ((8 + n + 7) & ~7)) | 0);
    this.#count(1, n);
  }

  /**
   * Producer: appends `messages[from]`, `messages[from + 1]`... while they fit, and publishes them together (one
   * atomic store makes them all visible). Returns how many were written (0 when the first does not fit).
   *
   * With `limit` (0 or more), it also checks every message from `from` to `to`, those past the room too: when one
   * is not a Uint8Array or is longer than `limit`, it publishes nothing and returns `-1 - i` (`i` its index). A
   * check in the loop that copies costs less than a pass of its own before it (3-5 ns a message). Without, the
   * caller checked them.
   *
   * @throws {ProtocolError} when the positions are impossible (more used bytes than the capacity, not aligned).
   */
  tryWriteMany(messages: readonly Uint8Array[], from = 0, to = messages.length, limit = -1): number {
    const w0 = this.#write;
    const cap = this.capacity;
    const slots = this.#slots;
    let w = w0;
    let free = cap - ((w0 - this.#readSeen) >>> 0);
    let i = from;
    let bytes = 0;
    // #put's work, once per batch where it can be: each record's commit word is written at once (a batch is seen
    // only after its first, stored last), and only the word after the last record is zeroed.
    for (; i < to; i++) {
      const m = messages[i]!;
      if (limit >= 0 && !sendable(m, limit)) return -1 - i;
      const n = m.length;
      const size = (8 + n + 7) & ~7;
      if (free < size || (w & 7) !== 0) {
        free = this.#free(w, size);
        if (free < size) {
          if (limit >= 0) {
            for (let j = i + 1; j < to; j++) {
              if (!sendable(messages[j], limit)) return -1 - j;
            }
          }
          break;
        }
      }
      const at = w & (cap - 1);
      slots[at >> 2] = n;
      if (w !== w0) slots[(at >> 2) + 1] = (w + 1) | 0;
      this.#copyIn(m, at + 8 === cap ? 0 : at + 8, n);
      bytes += n;
      free -= size;
      w = (w + size) | 0;
    }
    if (w === w0) return 0;
    if (free > 0) slots[((w & (cap - 1)) >> 2) + 1] = 0;
    this.#publish(w0, w);
    this.#count(i - from, bytes);
    return i - from;
  }

  /**
   * The committed record at read position `r`: its length, or -1 when none is there yet.
   *
   * @throws {ProtocolError} when the record is corrupt (a length over the ring's limit) or the position is.
   * @throws {MessageTooLargeError} when the message is larger than `limit` (it stays in the ring).
   */
  #peek(r: number, limit: number): number {
    const cap = this.capacity;
    if ((r & 7) !== 0) throw badPositions("read from", Atomics.load(this.words, I_WRITE), r, cap);
    const at = r & (cap - 1);
    if (Atomics.load(this.#slots, (at >> 2) + 1) !== ((r + 1) | 0)) return -1;
    const n = this.#slots[at >> 2]! >>> 0;
    if (n > limit || n > this.maxMessage) throw this.#unreadable(n, limit); // out of line: keeps this small to inline
    return n;
  }

  /** The error for a committed record of `n` bytes that cannot be read with `limit`. */
  #unreadable(n: number, limit: number): Error {
    if (n > this.maxMessage) {
      return new ProtocolError(
        `Cannot read from the ring: a record of ${n} bytes, more than it holds (${this.capacity})`,
      );
    }
    return new MessageTooLargeError(
      `Cannot receive a message of ${n} bytes: it exceeds maxMessage (${limit} bytes)`,
      n,
      limit,
    );
  }

  /** Gives the space before read position `r` back to the producer (an atomic store: after every read of it). */
  #consumed(r: number): void {
    this.#read = r;
    Atomics.store(this.words, I_READ, r);
  }

  /** A fresh copy of the `n` payload bytes of the record at `r`. */
  #take(r: number, n: number): Uint8Array {
    const cap = this.capacity;
    const at = r & (cap - 1);
    const start = at + 8 === cap ? 0 : at + 8;
    const first = Math.min(n, cap - start);
    if (first === n) return copyWords(this.#data, this.#slots, start, n);
    const out = allocate(n);
    out.set(this.#data.subarray(start, cap));
    out.set(this.#data.subarray(0, n - first), first);
    return out;
  }

  /**
   * Consumer: takes one message (a fresh copy) or returns undefined when the ring is empty.
   *
   * @throws {ProtocolError} when the record is corrupt (a length over the ring's limit) or the position is.
   * @throws {MessageTooLargeError} when the message is larger than `limit` (it stays in the ring).
   */
  tryRead(limit = this.maxMessage): Uint8Array | undefined {
    const r = this.#read;
    const n = this.#peek(r, limit);
    if (n < 0) return undefined;
    const out = this.#take(r, n);
    this.#consumed((r + ((8 + n + 7) & ~7)) | 0);
    this.#count(1, n);
    return out;
  }

  /**
   * Consumer: hands the next message to `read` where it lies (`data` is the ring's data area, the message its
   * `length` bytes at `offset`, valid only during the call; a message that wraps around the end of the area is a
   * fresh copy at offset 0) and returns what `read` returned, or undefined when there is none. The message counts as
   * taken once `read` returned or threw (what it threw is thrown on, as a {@linkcode HandlerFailure} carrying it).
   *
   * @throws {ProtocolError} / {MessageTooLargeError} as {@linkcode tryRead}.
   */
  tryReadWith<T>(
    read: (data: Uint8Array, offset: number, length: number) => T,
    limit = this.maxMessage,
  ): T | undefined {
    const r = this.#read;
    const n = this.#peek(r, limit);
    if (n < 0) return undefined;
    const cap = this.capacity;
    const at = r & (cap - 1);
    const start = at + 8 === cap ? 0 : at + 8;
    try {
      return start + n <= cap ? read(this.#data, start, n) : read(this.#take(r, n), 0, n);
    } catch (e) {
      throw e instanceof HandlerFailure ? e : new HandlerFailure(e);
    } finally {
      this.#consumed((r + ((8 + n + 7) & ~7)) | 0);
      this.#count(1, n);
    }
  }

  /**
   * Consumer: hands up to `max` messages to `handler` where they lie, without copying them: `data` is the ring's
   * data area and the message is `data.subarray(offset, offset + length)`, valid only during the call (the space
   * is the producer's again once the handler returned). A message that wraps around the end of the area is handed
   * as a fresh copy (`offset` 0). R is published every 32 messages and at the end. Returns how many were handled.
   * A corrupt record ends the batch as in {@linkcode tryReadMany}; an exception from `handler` ends it too, after
   * its message counts as taken, and is thrown on as a {@linkcode HandlerFailure} carrying it.
   */
  drain(
    handler: (data: Uint8Array, offset: number, length: number) => void,
    max: number,
    limit = this.maxMessage,
  ): number {
    const cap = this.capacity;
    const data = this.#data;
    const slots = this.#slots;
    // #peek's work, inline: the positions stay aligned from one record to the next, so only the first is checked.
    const most = Math.min(limit, this.maxMessage);
    let r = this.#read;
    if ((r & 7) !== 0) this.#peek(r, limit); // throws
    let k = 0;
    let bytes = 0;
    try {
      for (; k < max;) {
        const at = r & (cap - 1);
        if (Atomics.load(slots, (at >> 2) + 1) !== ((r + 1) | 0)) break;
        const n = slots[at >> 2]! >>> 0;
        if (n > most) {
          if (k === 0) this.#peek(r, limit); // throws the error this record gets
          break; // the next call throws it
        }
        const start = at + 8 === cap ? 0 : at + 8;
        const next = (r + ((8 + n + 7) & ~7)) | 0;
        k++;
        bytes += n;
        try {
          if (start + n <= cap) handler(data, start, n);
          else handler(this.#take(r, n), 0, n);
        } catch (e) {
          r = next;
          throw new HandlerFailure(e);
        }
        r = next;
        if ((k & 31) === 0) this.#consumed(r);
      }
    } finally {
      if (k > 0) {
        this.#consumed(r);
        this.#count(k, bytes);
      }
    }
    return k;
  }

  /**
   * Consumer: copies the next message into `target` and returns its length, or undefined when the ring is empty.
   *
   * @throws {RangeError} when the message is larger than `target` (it stays in the ring).
   * @throws {ProtocolError} / {MessageTooLargeError} as {@linkcode tryRead}.
   */
  tryReadInto(target: Uint8Array, limit = this.maxMessage): number | undefined {
    const r = this.#read;
    const n = this.#peek(r, limit);
    if (n < 0) return undefined;
    if (n > target.length) {
      throw new RangeError(
        `Cannot receive a message of ${n} bytes into a buffer of ${target.length}: it stays in the ring for a larger one`,
      );
    }
    const cap = this.capacity;
    const at = r & (cap - 1);
    const start = at + 8 === cap ? 0 : at + 8;
    const first = Math.min(n, cap - start);
    target.set(this.#data.subarray(start, start + first));
    if (first < n) target.set(this.#data.subarray(0, n - first), first);
    this.#consumed((r + ((8 + n + 7) & ~7)) | 0);
    this.#count(1, n);
    return n;
  }

  /**
   * Consumer: takes up to `max` messages (fresh copies) into `into`, publishing R once every 32 messages and at
   * the end (a producer waiting for room need not wait for a long batch to end). Returns how many it took. A
   * corrupt or too large record ends the batch: what came before it is taken (and returned), and the next call
   * throws.
   */
  tryReadMany(into: Uint8Array[], max: number, limit = this.maxMessage): number {
    let r = this.#read;
    let k = 0;
    let bytes = 0;
    try {
      for (; k < max; k++) {
        const n = this.#peek(r, limit);
        if (n < 0) break;
        into.push(this.#take(r, n));
        bytes += n;
        r = (r + ((8 + n + 7) & ~7)) | 0;
        if ((k & 31) === 31) this.#consumed(r);
      }
    } catch (e) {
      if (k === 0) throw e;
    }
    if (k > 0) {
      this.#consumed(r);
      this.#count(k, bytes);
    }
    return k;
  }

  /** Marks the consumer as sleeping (before it re-checks and waits). */
  set consumerSleeping(on: boolean) {
    Atomics.store(this.words, I_CONSUMER_SLEEPING, on ? 1 : 0);
  }

  get consumerSleeping(): boolean {
    return Atomics.load(this.words, I_CONSUMER_SLEEPING) !== 0;
  }

  /**
   * Producer, after each publication: takes the consumer's announcement that it sleeps (true for the one caller that
   * should wake it).
   *
   * It also picks how the next records are published. Plain stores pay while the consumer stays awake (a stream:
   * after {@linkcode PLAIN_AFTER} publications in a row that found it awake); but then the consumer fences each time
   * it goes to sleep, a system call that interrupts every CPU running a registered process (17 us here, in a VM),
   * so a consumer found asleep turns them off again (a pool's worker that sleeps every few tasks never sees one).
   *
   * While it publishes plainly, its look at the announcement is a plain load too: on x86-64 the very instruction an
   * `Atomics.load` runs (a `mov`), without the call into the runtime (7 ns in V8, 5 in Bun, a fifth of a 64-byte
   * `trySend`). The consumer's fence orders it against the publication as it orders the plain store. What a plain
   * load does not promise is that a JIT never reuses an older value of it (the stores of each publication come
   * between two looks, and the cross-runtime wake-up tests pass, but no engine promises it); so the consumer bounds
   * its first sleep of a wait while the producer publishes plainly (`shm/ring_channel.ts`), and a look that came
   * late would cost one bounded sleep, not a lost wake-up.
   */
  takeConsumerSleeping(): boolean {
    // The usual case (awake) in a few bytes of code, the rest out of line: it runs after every publication, inlined.
    if ((this.#plain ? this.words[I_CONSUMER_SLEEPING]! : Atomics.load(this.words, I_CONSUMER_SLEEPING)) !== 0) {
      return this.#takeSleeping();
    }
    if (!this.#plain && this.#plainOk) this.#countAwake();
    return false;
  }

  /** The consumer announced a sleep: publish atomically again, and take the announcement. */
  #takeSleeping(): boolean {
    if (this.#plain) this.#setPlain(false);
    else this.#awake = 0;
    return Atomics.compareExchange(this.words, I_CONSUMER_SLEEPING, 1, 0) === 1;
  }

  /** One more publication found the consumer awake: after {@linkcode PLAIN_AFTER} in a row, publish plainly. */
  #countAwake(): void {
    if (++this.#awake < PLAIN_AFTER) return;
    if ((this.words[I_FLAGS]! & CONSUMER_FENCES) !== 0) this.#setPlain(true);
    else this.#awake = 0;
  }

  /** Takes the producer's announcement that it sleeps: true for the one caller that should wake it. */
  takeProducerSleeping(): boolean {
    return Atomics.load(this.words, I_PRODUCER_SLEEPING) !== 0 &&
      Atomics.compareExchange(this.words, I_PRODUCER_SLEEPING, 1, 0) === 1;
  }

  /** Marks the producer as sleeping (waiting for room). */
  set producerSleeping(on: boolean) {
    Atomics.store(this.words, I_PRODUCER_SLEEPING, on ? 1 : 0);
  }

  get producerSleeping(): boolean {
    return Atomics.load(this.words, I_PRODUCER_SLEEPING) !== 0;
  }
}
