/**
 * The layout of a publish-subscribe segment and the lock-free moves on it: one publisher writes each message once
 * into a ring; every subscriber reads it with a position of its own. Over a shared memory segment (processes of any
 * runtime, C, Python) or a SharedArrayBuffer (threads). Waiting and waking live in `pubsub.ts`; this file moves bytes.
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
 * 136     4     publisher sleeping: 1 while the publisher waits for a subscriber (block policy)
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
 * records live in `[T, W)`. Publishing a record at W: write payload and header, set `index[(s+1) mod K]` to the next
 * position W', zero the commit word at W' when W' is free space, store the commit word (atomically, last of the
 * record), then W = W', then S = s + 1, then wake subscribers if `sleepers` > 0. A subscriber at R sees a record
 * when the commit word at R is `R + 1`.
 *
 * Room: a record needs `W + size - T <= C`; the publisher moves T past the oldest records until it fits. Policy
 * `overwrite` moves T regardless. Policy `block` first stores the T it wants, then scans the active slots: a
 * subscriber whose R lies in the records to be dropped stops T at R (T is stored again, back at R's record) and the
 * publisher waits for it (checking every 100 ms that it lives: a dead one, by pid and start-time tag, is dropped).
 * Subscribers of a `block` segment never see their record overwritten. Subscribers of an `overwrite` one copy a
 * record and then load T: T past R means the publisher may have overwritten it meanwhile, the copy is dropped and
 * the subscriber lagged (`LaggedError` with the count of messages missed, from the sequence number of the record
 * now at T, where it goes on). That re-check needs the copy's loads to stay before the load of T: true on x86-64
 * (loads are not reordered with loads); elsewhere (arm64) an atomic read-modify-write of a private word stands in
 * for the fence JavaScript lacks (release, then acquire), as the C peer's `atomic_thread_fence`.
 *
 * Joining: claim a free slot (compare-and-swap 0 -> 1), write id and tag, choose the start (the record with
 * sequence `S - h`, from the index, checked against its own header), store R, state 2, then load T: if T passed R
 * (the publisher reclaimed it meanwhile) choose again. The store of R before the load of T, against the
 * publisher's store of T before its scan of R, makes sure one of them sees the other.
 *
 * Everything a peer writes is checked: lengths, positions and slots that no honest peer writes are a
 * `ProtocolError`, and no access leaves the data area whatever they say.
 *
 * @module
 */
import { IpcError, LaggedError, ProtocolError } from "../errors.ts";
import { SYS_futex } from "../ffi/constants.ts";
import type { Identity } from "../os/liveness.ts";

/** Whether loads may pass earlier loads here (all but x86-64, whose futex syscall is 202): then fence. */
const WEAK_ORDER = SYS_futex !== 202;
const fenceWord = new Int32Array(new SharedArrayBuffer(4));

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

/** The publisher's moves. Only one process publishes; it keeps its own copies of W, T and the sequences. */
export class PublisherCore {
  readonly m: PubSubMemory;
  #w = 0;
  #t = 0;
  #tseq = 0;
  #seq = 0;
  /** The slot that stopped the last `makeRoom`, and its generation. */
  blocker = -1;
  blockerGen = 0;

  constructor(m: PubSubMemory) {
    this.m = m;
  }

  /** Messages published so far. */
  get published(): number {
    return this.#seq;
  }

  /**
   * Moves T until a record of `size` bytes fits after W. True when it fits; false when a subscriber stops it
   * (block policy): `blocker` says which.
   *
   * @throws {ProtocolError} when the records in the ring are not what this publisher wrote.
   */
  makeRoom(size: number): boolean {
    const m = this.m;
    const w = this.#w;
    const t0 = this.#t;
    if (((w - t0) >>> 0) + size <= m.capacity) return true;
    let t = t0;
    let s = this.#tseq;
    while (((w - t) >>> 0) + size > m.capacity) {
      t = this.#next(t, w);
      s = (s + 1) >>> 0;
    }
    if (m.policy === "overwrite") {
      this.#setTail(t, s);
      return true;
    }
    Atomics.store(m.h, I_TAIL, t); // the T this publisher wants, before it looks at the slots
    const span = (t - t0) >>> 0;
    let stop = -1;
    let stopAt = span;
    const limit = m.slotLimit();
    for (let i = 0; i < limit; i++) {
      if (Atomics.load(m.slots, m.at(i, S_STATE)) !== ACTIVE) continue;
      const d = (Atomics.load(m.slots, m.at(i, S_READ)) - t0) >>> 0;
      if (d < stopAt) {
        stopAt = d;
        stop = i;
      }
    }
    if (stop < 0) {
      this.#setTail(t, s);
      return true;
    }
    // Stop at the last record boundary at or before the subscriber's position.
    t = t0;
    s = this.#tseq;
    for (;;) {
      const next = this.#next(t, w);
      if (((next - t0) >>> 0) > stopAt) break;
      t = next;
      s = (s + 1) >>> 0;
    }
    this.#setTail(t, s);
    this.blocker = stop;
    this.blockerGen = Atomics.load(m.slots, m.at(stop, S_GEN));
    return false;
  }

  #setTail(t: number, s: number): void {
    this.#t = t;
    this.#tseq = s;
    Atomics.store(this.m.h, I_TAIL, t);
    Atomics.store(this.m.h, I_TAIL_SEQ, s);
  }

  /** The position after the record at t (which must lie before w). */
  #next(t: number, w: number): number {
    const m = this.m;
    const n = m.d32[m.word(t, 0)]!;
    if (m.d32[m.word(t, 1)] !== ((t + 1) | 0) || n < 0 || n > m.maxMessage) {
      throw m.corrupt(`the record at position ${t} is not the publisher's`);
    }
    const next = (t + recordSize(n)) >>> 0;
    if (((next - t) >>> 0) > ((w - t) >>> 0)) throw m.corrupt(`the record at position ${t} runs past the end`);
    return next;
  }

  /** Where the payload of the next record goes (its position + 16, not reduced modulo C). */
  get payloadAt(): number {
    return (this.#w + RECORD_HEADER) >>> 0;
  }

  /** The payload bytes of the next record when they do not wrap around the end of the data area. */
  view(n: number): Uint8Array | undefined {
    const at = this.payloadAt & this.m.mask;
    return at + n <= this.m.capacity ? this.m.data.subarray(at, at + n) : undefined;
  }

  /** Copies `bytes` into the next record's payload (wrapping around the end). */
  write(bytes: Uint8Array): void {
    const m = this.m;
    const at = this.payloadAt & m.mask;
    const n = bytes.length;
    const first = Math.min(n, m.capacity - at);
    if (n <= 16) { for (let i = 0; i < first; i++) m.data[at + i] = bytes[i]!; }
    else m.data.set(first === n ? bytes : bytes.subarray(0, first), at);
    if (first < n) m.data.set(bytes.subarray(first), 0);
  }

  /** Publishes the next record with `n` payload bytes (written already); room was made for it. */
  commit(n: number): void {
    const m = this.m;
    const p = this.#w;
    const seq = this.#seq;
    const next = (p + recordSize(n)) >>> 0;
    m.d32[m.word(p, 0)] = n;
    m.d32[m.word(p, 2)] = seq;
    m.d32[m.word(p, 3)] = 0;
    m.index[(seq + 1) & (m.g.index - 1)] = next;
    // The commit word where the next record goes reads as "nothing yet", unless that is the live record at T.
    if (next !== ((this.#t + m.capacity) >>> 0)) m.d32[m.word(next, 1)] = 0;
    Atomics.store(m.d32, m.word(p, 1), (p + 1) | 0);
    this.#w = next;
    this.#seq = (seq + 1) >>> 0;
    Atomics.store(m.h, I_WRITE, next | 0);
    Atomics.store(m.h, I_SEQ, this.#seq | 0);
  }
}

/** Reading positions of one subscriber. */
export class SubscriberCore {
  readonly m: PubSubMemory;
  readonly slot: number;
  readonly gen: number;
  /** R, and the sequence number the record at R must have. */
  r = 0;
  seq = 0;
  /** The record found by `peek`: its size in the ring. */
  #size = 0;

  private constructor(m: PubSubMemory, slot: number, gen: number) {
    this.m = m;
    this.slot = slot;
    this.gen = gen;
  }

  /**
   * Claims a slot and places it `history` records back (fewer if fewer are still there).
   *
   * @throws {IpcError} when every slot is taken by a live subscriber; {@linkcode ProtocolError} for a corrupt
   * segment.
   */
  static join(
    m: PubSubMemory,
    me: Identity,
    history: number,
    alive: (id: number, tag: number) => boolean,
  ): SubscriberCore {
    let slot = -1;
    for (let pass = 0; pass < 2 && slot < 0; pass++) {
      for (let i = 0; i < m.g.slots; i++) {
        if (Atomics.compareExchange(m.slots, m.at(i, S_STATE), FREE, JOINING) === FREE) {
          slot = i;
          break;
        }
      }
      if (slot < 0 && pass === 0) sweep(m, alive);
    }
    if (slot < 0) throw new IpcError(`Cannot ${m.what}: all ${m.g.slots} subscriber slots are taken`);
    const s = m.slots;
    const gen = Atomics.add(s, m.at(slot, S_GEN), 1) + 1;
    Atomics.store(s, m.at(slot, S_TAG), me.tag);
    Atomics.store(s, m.at(slot, S_ID), me.id);
    Atomics.store(s, m.at(slot, S_SLEEPING), 0);
    m.coverSlot(slot);
    const core = new SubscriberCore(m, slot, gen);
    try {
      core.#place(Math.min(history, m.history));
    } catch (e) {
      Atomics.store(s, m.at(slot, S_STATE), FREE);
      throw e;
    }
    return core;
  }

  #place(history: number): void {
    const m = this.m;
    const kmask = m.g.index - 1;
    for (let attempt = 0;; attempt++) {
      if (attempt > 100_000) throw m.corrupt("no consistent start position");
      const S = Atomics.load(m.h, I_SEQ) >>> 0;
      const base = Atomics.load(m.index, S & kmask) >>> 0;
      if ((Atomics.load(m.h, I_SEQ) >>> 0) !== S) continue;
      const behind = (S - (Atomics.load(m.h, I_TAIL_SEQ) >>> 0)) >>> 0;
      const h = attempt > 50 ? 0 : Math.min(history, m.g.index - 2, behind);
      const s0 = (S - h) >>> 0;
      let p = base;
      if (h > 0) {
        p = Atomics.load(m.index, s0 & kmask) >>> 0;
        if (
          Atomics.load(m.d32, m.word(p, 1)) !== ((p + 1) | 0) || (m.d32[m.word(p, 2)]! >>> 0) !== s0 ||
          ((Atomics.load(m.h, I_SEQ) - S) >>> 0) > m.g.index - 2
        ) continue;
      }
      if ((p & 7) !== 0) throw m.corrupt(`start position ${p}`);
      this.r = p;
      this.seq = s0;
      this.#publish();
      Atomics.store(m.slots, m.at(this.slot, S_STATE), ACTIVE);
      const t = Atomics.load(m.h, I_TAIL) >>> 0;
      const w = Atomics.load(m.h, I_WRITE) >>> 0;
      if (((p - t) | 0) >= 0 && ((w - p) | 0) >= 0) return;
    }
  }

  #publish(): void {
    const s = this.m.slots;
    Atomics.store(s, this.m.at(this.slot, S_SEQ), this.seq | 0);
    Atomics.store(s, this.m.at(this.slot, S_READ), this.r | 0);
  }

  /** Whether this subscriber still owns its slot (the publisher drops subscribers it finds dead). */
  owned(): boolean {
    const s = this.m.slots;
    return Atomics.load(s, this.m.at(this.slot, S_GEN)) === this.gen &&
      Atomics.load(s, this.m.at(this.slot, S_STATE)) === ACTIVE;
  }

  /**
   * The payload length of the record at R, or -1 when there is none yet.
   *
   * @throws {LaggedError} (overwrite policy) when the publisher overwrote records not read yet; R moved to the
   * oldest one still there. {@linkcode ProtocolError} when the record is corrupt.
   */
  peek(): number {
    const m = this.m;
    const r = this.r;
    if (Atomics.load(m.d32, m.word(r, 1)) !== ((r + 1) | 0)) {
      if (m.policy === "overwrite") this.#checkLag();
      return -1;
    }
    const n = m.d32[m.word(r, 0)]!;
    const seq = m.d32[m.word(r, 2)]! >>> 0;
    if (n < 0 || n > m.maxMessage || seq !== this.seq) {
      if (m.policy === "overwrite") this.#checkLag();
      throw m.corrupt(`record at position ${r}: length ${n}, sequence ${seq}, expected ${this.seq}`);
    }
    this.#size = recordSize(n);
    return n;
  }

  /** Data offset of the payload of the record `peek` found. */
  get payloadOffset(): number {
    return (this.r + RECORD_HEADER) & this.m.mask;
  }

  /** Copies `n` payload bytes of the record at R into `out`. */
  copyTo(out: Uint8Array, n: number): void {
    const m = this.m;
    const at = this.payloadOffset;
    const first = Math.min(n, m.capacity - at);
    if (n <= 16) { for (let i = 0; i < first; i++) out[i] = m.data[at + i]!; }
    else out.set(m.data.subarray(at, at + first));
    if (first < n) out.set(m.data.subarray(0, n - first), first);
  }

  /**
   * After a copy (overwrite policy): whether the record was still there all along.
   *
   * @throws {LaggedError} when it may have been overwritten.
   */
  confirm(): void {
    if (this.m.policy !== "overwrite") return;
    if (WEAK_ORDER) Atomics.add(fenceWord, 0, 0); // the copy's loads before the load of T (see the module doc)
    this.#checkLag();
  }

  /** Moves past the record `peek` found. Returns true when the publisher sleeps (wake it). */
  advance(): boolean {
    this.r = (this.r + this.#size) >>> 0;
    this.seq = (this.seq + 1) >>> 0;
    this.#publish();
    return Atomics.load(this.m.h, I_PUB_SLEEPING) !== 0;
  }

  /** Throws LaggedError when T passed R (and R goes to T); otherwise checks that R is not past W. */
  #checkLag(): void {
    const m = this.m;
    const r = this.r;
    const t = Atomics.load(m.h, I_TAIL) >>> 0;
    // (R may be one record past W for a moment: the publisher stores the commit word before W.)
    if (((r - t) | 0) >= 0) return;
    for (let i = 0; i < 10_000; i++) {
      const t = Atomics.load(m.h, I_TAIL) >>> 0;
      const ok = Atomics.load(m.d32, m.word(t, 1)) === ((t + 1) | 0);
      const seq = m.d32[m.word(t, 2)]! >>> 0;
      if (!ok || (Atomics.load(m.h, I_TAIL) >>> 0) !== t) continue;
      const missed = (seq - this.seq) >>> 0;
      if (missed === 0 || missed > 2 ** 31) throw m.corrupt(`tail sequence ${seq}, expected past ${this.seq}`);
      this.r = t;
      this.seq = seq;
      this.#publish();
      throw new LaggedError(
        `Cannot ${m.what}: the subscriber lagged and missed ${missed} message${missed === 1 ? "" : "s"}`,
        missed,
      );
    }
    // The publisher is between moving T and committing (or died there): nothing to read yet.
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
