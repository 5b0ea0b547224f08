/**
 * The lock-free moves on a publish-subscribe ring (the layout, byte for byte: `pubsub_layout.ts`): the publisher's
 * (write, commit, make room) and a subscriber's (join, peek, copy, confirm, advance). Only moves: waiting and waking
 * are in `pubsub_publisher.ts` and `pubsub_subscriber.ts`.
 *
 * Publishing a record at W: write payload and header, set `index[(s+1) mod K]` to the next position W', zero the
 * commit word at W' when W' is free space, store the commit word (atomically, last of the record), then W = W', then
 * S = s + 1, then, if `sleepers` > 0, take the sleeping subscribers' flags and wake W once for them.
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
 * @module
 */
import { IpcError, LaggedError } from "../errors.ts";
import { SYS_futex } from "../ffi/constants.ts";
import type { Identity } from "../os/liveness.ts";
import {
  ACTIVE,
  FREE,
  I_PUB_SLEEPING,
  I_SEQ,
  I_TAIL,
  I_TAIL_SEQ,
  I_WRITE,
  JOINING,
  type PubSubMemory,
  RECORD_HEADER,
  recordSize,
  S_GEN,
  S_ID,
  S_READ,
  S_SEQ,
  S_SLEEPING,
  S_STATE,
  S_TAG,
  sweep,
} from "./pubsub_layout.ts";

/** Whether loads may pass earlier loads here (all but x86-64, whose futex syscall is 202): then fence. */
const WEAK_ORDER = SYS_futex !== 202;
const fenceWord = new Int32Array(new SharedArrayBuffer(4));

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
  /** Called with the count of messages missed, before a LaggedError says so (the subscriber's `lost` counter). */
  onLag: ((missed: number) => void) | undefined;

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
    // Taken (1 -> 0) by the first subscriber to see it: one wake-up, not one per subscriber per message while the
    // publisher gets going. A publisher woken for another subscriber's step looks again and says it sleeps again.
    const h = this.m.h;
    return h[I_PUB_SLEEPING] !== 0 && Atomics.exchange(h, I_PUB_SLEEPING, 0) !== 0;
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
      this.onLag?.(missed);
      throw new LaggedError(
        `Cannot ${m.what}: the subscriber lagged and missed ${missed} message${missed === 1 ? "" : "s"}`,
        missed,
      );
    }
    // The publisher is between moving T and committing (or died there): nothing to read yet.
  }
}
