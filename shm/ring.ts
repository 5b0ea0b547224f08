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
 * 4       4     version: 1
 * 8       4     capacity C: size of the data area in bytes, a power of two from 64 to 2^30
 * 12      4     flags: bit 0 = the producer closed, bit 1 = the consumer closed
 * 16      4     producer pid (0 = none yet)
 * 20      4     consumer pid (0 = none yet)
 * 24      4     producer start-time tag (0 = unknown; see `os/liveness.ts`: start time in ticks modulo 2^32)
 * 28      4     consumer start-time tag (0 = unknown)
 * 32      32    reserved, 0
 * 64      4     write position W: bytes ever published by the producer, modulo 2^32 (own cache line)
 * 68      4     consumer sleeping: 1 while the consumer waits for W to change (futex/Atomics.wait on W)
 * 72      56    reserved, 0
 * 128     4     read position R: bytes ever consumed, modulo 2^32 (own cache line)
 * 132     4     producer sleeping: 1 while the producer waits for R to change (futex/Atomics.wait on R)
 * 136     56    reserved, 0
 * 192     C     data
 * ```
 *
 * Used bytes are `W - R` (modulo 2^32); free bytes `C - (W - R)`. C divides 2^32, so `W mod C` stays right when
 * the positions wrap. A record starts at data offset `W mod C` (always
 * a multiple of 8): a 4-byte length `n`, then `n` payload bytes, continuing at data offset 0 when the end of the
 * area is reached; the record takes `(4 + n)` rounded up to a multiple of 8 bytes. The producer writes the record,
 * then stores `W + size` (a sequentially consistent atomic store); the consumer loads W atomically, reads the
 * record, then stores `R + size`. A sleeping side is woken after the position it waits on changed.
 *
 * A peer can write anything into a shared segment, so a reader trusts nothing it reads there: a record longer than
 * the used bytes, or positions that claim more used bytes than the capacity, are a `ProtocolError`; no read or write
 * ever leaves the data area, whatever the header says.
 *
 * @module
 */
import { MessageTooLargeError, ProtocolError } from "../errors.ts";
import { allocate, copy } from "../runtimes/bytes.ts";
import type { Identity } from "../os/liveness.ts";

/** Header size; the data area follows. */
export const RING_HEADER = 192;
const MAGIC = 0x52435049;
const VERSION = 1;

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
/** Int32 index of the read position (a futex word). */
export const I_READ = 32;
const I_PRODUCER_SLEEPING = 33;

/** Flag: the producer closed the ring (the consumer sees the end once it drained it). */
export const PRODUCER_CLOSED = 1;
/** Flag: the consumer closed the ring (the producer's sends fail). */
export const CONSUMER_CLOSED = 2;

/** The error for positions no honest peer writes: more used bytes than the capacity, or not a multiple of 8. */
function badPositions(what: string, w: number, r: number, capacity: number): ProtocolError {
  return new ProtocolError(
    `Cannot ${what} the ring: its positions are corrupt (write ${w >>> 0}, read ${r >>> 0}, capacity ${capacity})`,
  );
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
  readonly #view: DataView;
  // The other side's position as last seen: re-read only when it looks like there is no room (producer) or
  // nothing to read (consumer), which saves a cache miss on most messages.
  #readSeen = 0;
  #writeSeen = 0;

  private constructor(buffer: ArrayBufferLike, offset: number, capacity: number) {
    this.offset = offset;
    this.words = new Int32Array(buffer, offset, RING_HEADER / 4);
    this.capacity = capacity;
    this.maxMessage = capacity - 8;
    this.#data = new Uint8Array(buffer, offset + RING_HEADER, capacity);
    this.#view = new DataView(buffer, offset + RING_HEADER, capacity);
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

  /** Sets a flag. */
  setFlag(flag: number): void {
    Atomics.or(this.words, I_FLAGS, flag);
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
    return (4 + n + 7) & ~7;
  }

  /** True when a message is waiting. */
  readable(): boolean {
    return Atomics.load(this.words, I_WRITE) !== Atomics.load(this.words, I_READ);
  }

  /** The current write position (what a waiting consumer compares against). */
  writePosition(): number {
    return Atomics.load(this.words, I_WRITE);
  }

  /** The current read position (what a waiting producer compares against). */
  readPosition(): number {
    return Atomics.load(this.words, I_READ);
  }

  /**
   * Producer: appends one message if there is room. Returns false (and writes nothing) when the ring is full.
   * The caller checks `message.byteLength <= maxMessage` first.
   *
   * @throws {ProtocolError} when the positions are impossible (more used bytes than the capacity, not aligned).
   */
  tryWrite(message: Uint8Array): boolean {
    const n = message.byteLength;
    const size = Ring.recordSize(n);
    const w = Atomics.load(this.words, I_WRITE);
    let r = this.#readSeen;
    if (this.capacity - ((w - r) >>> 0) < size || (w & 7) !== 0) {
      r = this.#readSeen = Atomics.load(this.words, I_READ);
      const used = (w - r) >>> 0;
      if (used > this.capacity || ((w | r) & 7) !== 0) throw badPositions("write to", w, r, this.capacity);
      if (this.capacity - used < size) return false;
    }
    const cap = this.capacity;
    const at = w & (cap - 1);
    this.#view.setUint32(at, n, true);
    const start = at + 4 === cap ? 0 : at + 4;
    const first = Math.min(n, cap - start);
    this.#data.set(first === n ? message : message.subarray(0, first), start);
    if (first < n) this.#data.set(message.subarray(first), 0);
    Atomics.store(this.words, I_WRITE, (w + size) | 0);
    return true;
  }

  /**
   * Consumer: takes one message (a fresh copy) or returns undefined when the ring is empty.
   *
   * @throws {ProtocolError} when the record is corrupt (a length larger than the used bytes) or the positions are
   * (more used bytes than the capacity, not aligned).
   * @throws {MessageTooLargeError} when the message is larger than `limit` (it stays in the ring).
   */
  tryRead(limit = this.maxMessage): Uint8Array | undefined {
    const r = Atomics.load(this.words, I_READ);
    let w = this.#writeSeen;
    if (w === r) {
      w = this.#writeSeen = Atomics.load(this.words, I_WRITE);
      if (w === r) return undefined;
    }
    const used = (w - r) >>> 0;
    const cap = this.capacity;
    if (used > cap || (r & 7) !== 0) throw badPositions("read from", w, r, cap);
    const at = r & (cap - 1);
    const n = this.#view.getUint32(at, true);
    const size = Ring.recordSize(n);
    if (size > used || n > this.maxMessage) {
      throw new ProtocolError(`Cannot read from the ring: a record of ${n} bytes, but only ${used} bytes are used`);
    }
    if (n > limit) {
      throw new MessageTooLargeError(
        `Cannot receive a message of ${n} bytes: it exceeds maxMessage (${limit} bytes)`,
        n,
        limit,
      );
    }
    const start = at + 4 === cap ? 0 : at + 4;
    const first = Math.min(n, cap - start);
    let out: Uint8Array;
    if (first === n) {
      out = copy(this.#data, start, start + n);
    } else {
      out = allocate(n);
      out.set(this.#data.subarray(start, cap));
      out.set(this.#data.subarray(0, n - first), first);
    }
    Atomics.store(this.words, I_READ, (r + size) | 0);
    return out;
  }

  /** Marks the consumer as sleeping (before it re-checks and waits). */
  set consumerSleeping(on: boolean) {
    Atomics.store(this.words, I_CONSUMER_SLEEPING, on ? 1 : 0);
  }

  get consumerSleeping(): boolean {
    return Atomics.load(this.words, I_CONSUMER_SLEEPING) !== 0;
  }

  /** Marks the producer as sleeping (waiting for room). */
  set producerSleeping(on: boolean) {
    Atomics.store(this.words, I_PRODUCER_SLEEPING, on ? 1 : 0);
  }

  get producerSleeping(): boolean {
    return Atomics.load(this.words, I_PRODUCER_SLEEPING) !== 0;
  }
}
