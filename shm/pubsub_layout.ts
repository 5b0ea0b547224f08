/**
 * The layout of a publish-subscribe segment and its slot table: one publisher writes each message once into a ring;
 * every subscriber reads it with a position of its own, from a slot of the table. Over a shared memory segment
 * (processes of any runtime, C, Python) or a SharedArrayBuffer (threads). The lock-free moves on the ring are in
 * `pubsub_ring.ts`; waiting and waking in `pubsub_publisher.ts` and `pubsub_subscriber.ts`.
 *
 * ## Layout, byte for byte (all integers little-endian; positions are byte counts modulo 2^32, multiples of 8)
 *
 * ```text
 * offset  size  field
 * 0       4     magic 0x53505049 (the bytes "IPPS")
 * 4       4     version: 1
 * 8       4     capacity C: data bytes, a power of two from 64 to 2^30
 * 12      4     subscriber slots N: 1 to 1024
 * 16      4     index entries K: a power of two >= history + 2
 * 20      4     policy: 0 = block, 1 = overwrite
 * 24      4     history H: how many past messages a new subscriber may ask for
 * 28      4     flags: bit 0 = the publisher closed
 * 32      4     publisher id (pid, or tid of a thread; 0 = none)
 * 36      4     publisher start-time tag (os/liveness.ts; 0 = unknown)
 * 40      4     slot limit: 1 + the highest slot ever claimed (the publisher scans slots below it)
 * 44      20    reserved, 0
 * 64      4     write position W (futex word subscribers sleep on)
 * 68      4     sequence S: messages ever published (the next record's sequence number)
 * 72      4     sleepers: how many subscribers announced they sleep on W
 * 76      52    reserved, 0
 * 128     4     tail position T: the oldest record still in the ring
 * 132     4     tail sequence: T's record's sequence number (a hint; readers check the record itself)
 * 136     4     publisher sleeping: 1 while the publisher waits for a subscriber (block policy); taken (1 -> 0)
 *               by the first subscriber that steps, which then bumps progress and wakes it
 * 140     4     progress: bumped by a subscriber that read while the publisher sleeps (futex word)
 * 144     112   reserved, 0
 * 256     64*N  subscriber slots, one cache line each:
 *                 +0 state (0 free, 1 joining, 2 active), +4 id, +8 start-time tag, +12 read position R,
 *                 +16 next sequence number to read, +20 sleeping (1 while waiting on W), +24 generation
 *                 (bumped at each claim), +28..63 reserved
 * X       4*K   index: entry `s mod K` = the position of the record with sequence s (X = 256 + 64*N)
 * D       C     data, D = X + 4*K rounded up to a multiple of 64
 * ```
 *
 * A record starts at a position P: a 16-byte header (length n; commit word = P + 1 as an Int32; sequence number;
 * 0) then n payload bytes, continuing at data offset 0 past the end; it takes `16 + n` rounded up to 8 bytes. The
 * records live in `[T, W)`. A subscriber at R sees a record when the commit word at R is `R + 1`. How records are
 * published, room is made and subscribers join and lag: `pubsub_ring.ts`.
 *
 * Everything a peer writes is checked: lengths, positions and slots that no honest peer writes are a
 * `ProtocolError`, and no access leaves the data area whatever they say.
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import type { Identity } from "../os/liveness.ts";

export const MAGIC = 0x53505049;
export const VERSION = 1;
export const HEADER = 256;
export const SLOT = 64;
/** Bytes of a record header. */
export const RECORD_HEADER = 16;
export const MAX_SLOTS = 1024;
export const MAX_HISTORY = 65536;

// Int32 indices into the header.
const I_MAGIC = 0;
const I_VERSION = 1;
const I_CAPACITY = 2;
const I_SLOTS = 3;
const I_INDEX = 4;
const I_POLICY = 5;
const I_HISTORY = 6;
export const I_FLAGS = 7;
export const I_PUB_ID = 8;
export const I_PUB_TAG = 9;
const I_SLOT_LIMIT = 10;
/** Futex word subscribers sleep on. */
export const I_WRITE = 16;
export const I_SEQ = 17;
export const I_SLEEPERS = 18;
export const I_TAIL = 32;
export const I_TAIL_SEQ = 33;
export const I_PUB_SLEEPING = 34;
/** Futex word the publisher sleeps on. */
export const I_PROGRESS = 35;

// Int32 offsets within a slot.
export const S_STATE = 0;
export const S_ID = 1;
export const S_TAG = 2;
export const S_READ = 3;
export const S_SEQ = 4;
export const S_SLEEPING = 5;
export const S_GEN = 6;

export const FREE = 0;
export const JOINING = 1;
export const ACTIVE = 2;
export const CLOSED = 1;

/** What a slow subscriber does to the publisher: makes it wait (`block`) or loses messages (`overwrite`). */
export type Policy = "block" | "overwrite";

/** The sizes of a segment's parts. */
export interface Geometry {
  capacity: number;
  slots: number;
  index: number;
  indexAt: number;
  dataAt: number;
  size: number;
}

/** Where everything is, for a capacity, slot count and history. */
export function geometry(capacity: number, slots: number, history: number): Geometry {
  let index = 2;
  while (index < history + 2) index *= 2;
  const indexAt = HEADER + SLOT * slots;
  const dataAt = Math.ceil((indexAt + 4 * index) / 64) * 64;
  return { capacity, slots, index, indexAt, dataAt, size: dataAt + capacity };
}

/** The bytes a record of `n` payload bytes takes. */
export function recordSize(n: number): number {
  return (RECORD_HEADER + n + 7) & ~7;
}

/** Lays out a fresh segment (zeroed memory) in `buffer`, the publisher recorded; the magic is written last. */
export function initLayout(
  buffer: ArrayBufferLike,
  g: Geometry,
  policy: Policy,
  history: number,
  publisher: Identity,
): void {
  if (buffer.byteLength < g.size) throw new RangeError(`Cannot lay out pub-sub in ${buffer.byteLength} bytes`);
  const h = new Int32Array(buffer, 0, HEADER / 4);
  h[I_VERSION] = VERSION;
  h[I_CAPACITY] = g.capacity;
  h[I_SLOTS] = g.slots;
  h[I_INDEX] = g.index;
  h[I_POLICY] = policy === "overwrite" ? 1 : 0;
  h[I_HISTORY] = history;
  h[I_PUB_TAG] = publisher.tag;
  h[I_PUB_ID] = publisher.id;
  Atomics.store(h, I_MAGIC, MAGIC);
}

/** The geometry a segment's header declares, checked against its size. */
export function readLayout(buffer: ArrayBufferLike, what: string): { g: Geometry; policy: Policy; history: number } {
  if (buffer.byteLength < HEADER) throw new ProtocolError(`Cannot ${what}: the segment is too small for pub-sub`);
  const h = new Int32Array(buffer, 0, HEADER / 4);
  if (Atomics.load(h, I_MAGIC) !== MAGIC) throw new ProtocolError(`Cannot ${what}: the segment holds no pub-sub`);
  if (h[I_VERSION] !== VERSION) {
    throw new ProtocolError(`Cannot ${what}: pub-sub layout version ${h[I_VERSION]}, expected ${VERSION}`);
  }
  const capacity = h[I_CAPACITY]!;
  const slots = h[I_SLOTS]!;
  const history = h[I_HISTORY]!;
  const policy = h[I_POLICY];
  if (capacity < 64 || capacity > 2 ** 30 || (capacity & (capacity - 1)) !== 0) {
    throw new ProtocolError(`Cannot ${what}: bad capacity ${capacity}`);
  }
  if (slots < 1 || slots > MAX_SLOTS || history < 0 || history > MAX_HISTORY || (policy !== 0 && policy !== 1)) {
    throw new ProtocolError(`Cannot ${what}: bad header (slots ${slots}, history ${history}, policy ${policy})`);
  }
  const g = geometry(capacity, slots, history);
  if (h[I_INDEX] !== g.index || buffer.byteLength < g.size) {
    throw new ProtocolError(`Cannot ${what}: the segment is smaller than its layout`);
  }
  return { g, policy: policy === 1 ? "overwrite" : "block", history };
}

/** The memory of one segment, as both sides see it. */
export class PubSubMemory {
  readonly h: Int32Array;
  readonly g: Geometry;
  readonly policy: Policy;
  readonly history: number;
  readonly capacity: number;
  readonly mask: number;
  readonly maxMessage: number;
  readonly data: Uint8Array;
  readonly d32: Int32Array;
  readonly index: Int32Array;
  readonly slots: Int32Array;
  readonly what: string;

  constructor(buffer: ArrayBufferLike, what: string) {
    const { g, policy, history } = readLayout(buffer, what);
    this.what = what;
    this.g = g;
    this.policy = policy;
    this.history = history;
    this.capacity = g.capacity;
    this.mask = g.capacity - 1;
    this.maxMessage = g.capacity - RECORD_HEADER;
    this.h = new Int32Array(buffer, 0, HEADER / 4);
    this.slots = new Int32Array(buffer, HEADER, (SLOT / 4) * g.slots);
    this.index = new Int32Array(buffer, g.indexAt, g.index);
    this.data = new Uint8Array(buffer, g.dataAt, g.capacity);
    this.d32 = new Int32Array(buffer, g.dataAt, g.capacity / 4);
  }

  /** Int32 index in the data of the word `k` (0-3) of the record header at position p. */
  word(p: number, k: number): number {
    return ((p + 4 * k) & this.mask) >>> 2;
  }

  /** The number of slots to scan, bounded by the table. */
  slotLimit(): number {
    const n = Atomics.load(this.h, I_SLOT_LIMIT);
    return n < 0 || n > this.g.slots ? this.g.slots : n;
  }

  /** Raises the slot limit to cover slot `i`. */
  coverSlot(i: number): void {
    for (;;) {
      const n = Atomics.load(this.h, I_SLOT_LIMIT);
      if (n > i && n <= this.g.slots) return;
      if (Atomics.compareExchange(this.h, I_SLOT_LIMIT, n, i + 1) === n) return;
    }
  }

  /** Int32 index of field `f` of slot `i`. */
  at(i: number, f: number): number {
    return i * (SLOT / 4) + f;
  }

  /** Frees slot `i` if it still holds generation `gen` (wakes a publisher that may wait for it). */
  drop(i: number, gen: number): void {
    const s = this.slots;
    if (Atomics.load(s, this.at(i, S_GEN)) !== gen) return;
    if (Atomics.exchange(s, this.at(i, S_SLEEPING), 0) === 1) Atomics.sub(this.h, I_SLEEPERS, 1);
    Atomics.store(s, this.at(i, S_ID), 0);
    const state = Atomics.load(s, this.at(i, S_STATE));
    if (state !== FREE) Atomics.compareExchange(s, this.at(i, S_STATE), state, FREE);
  }

  corrupt(detail: string): ProtocolError {
    return new ProtocolError(`Cannot ${this.what}: the segment is corrupt (${detail})`);
  }
}

/** Frees the slots of subscribers that died (by id and start-time tag). Returns how many live ones remain. */
export function sweep(m: PubSubMemory, alive: (id: number, tag: number) => boolean): number {
  let live = 0;
  const limit = m.slotLimit();
  for (let i = 0; i < limit; i++) {
    const state = Atomics.load(m.slots, m.at(i, S_STATE));
    if (state === FREE) continue;
    const gen = Atomics.load(m.slots, m.at(i, S_GEN));
    const id = Atomics.load(m.slots, m.at(i, S_ID));
    const tag = Atomics.load(m.slots, m.at(i, S_TAG)) >>> 0;
    if (id > 0 && alive(id, tag)) {
      if (state === ACTIVE) live++;
    } else if (state === ACTIVE || id > 0) m.drop(i, gen);
  }
  return live;
}
