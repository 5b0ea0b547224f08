/**
 * The soak's messages and the consumer's check of them.
 *
 * A data message is a 12-byte header and a payload (all integers big-endian):
 *
 * ```text
 *  0  u32  producer id (0, 1, 2, 3)
 *  4  u32  sequence number (0, 1, 2... per producer)
 *  8  u32  CRC-32 (zlib's) of bytes 0..7 followed by the payload (bytes 12..end)
 * 12  ...  payload: bytes of a seeded random pool, from a random offset
 * ```
 *
 * The CRC covers the header's id and sequence as well as the payload, so a flipped, lost, added or misplaced byte
 * anywhere, and a message cut short or run together with the next, all count as corrupt.
 *
 * Control messages are shorter than a header, so they can never be taken for data: `G` (go), `H<id>` (hello of a
 * datagram producer), `D<id>` (done, datagram producers), and the chaos run's commands (`scripts/soak/chaos.ts`).
 *
 * Sizes (whole messages, header included): 50 % uniform in 12 B..1 KiB, 45 % log-uniform in 1..8 KiB, 5 %
 * log-uniform in 8..64 KiB, clipped to the transport's limit. The mean is about 3.1 KiB, so a million messages are
 * about 3.2 GB: the run takes minutes, and one message in twenty still crosses the 8 KiB pieces of the queue
 * transports (mq, sysv) several times over.
 *
 * @module
 */

/** Bytes of a data message's header. */
export const HEADER = 12;
/** The largest soak message: 64 KiB. */
export const MAX_SOAK_MESSAGE = 64 * 1024;

/** First bytes of the control messages. */
export const HELLO = 0x48, DONE = 0x44;
export const GO: Uint8Array = new Uint8Array([0x47]);
export const hello = (id: number): Uint8Array => new Uint8Array([HELLO, id]);
export const done = (id: number): Uint8Array => new Uint8Array([DONE, id]);

// CRC-32 eight bytes at a time ("slicing-by-8"): the same checksum as `fileQueue.crc32`, 2-5 times faster, which
// matters when the consumer checks gigabytes.
const T = new Int32Array(256 * 8);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  T[n] = c;
}
for (let n = 0; n < 256; n++) {
  for (let k = 1; k < 8; k++) T[k * 256 + n] = (T[(k - 1) * 256 + n]! >>> 8) ^ T[T[(k - 1) * 256 + n]! & 0xff]!;
}

/** CRC-32 (IEEE, reflected, zlib's) of `b`, continuing from `crc`. */
export function crc32(b: Uint8Array, crc = 0): number {
  let c = ~crc;
  let i = 0;
  const n = b.length;
  for (; i + 8 <= n; i += 8) {
    const lo = c ^ (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
    c = T[1792 + (lo & 255)]! ^ T[1536 + ((lo >>> 8) & 255)]! ^ T[1280 + ((lo >>> 16) & 255)]! ^
      T[1024 + (lo >>> 24)]! ^ T[768 + b[i + 4]!]! ^ T[512 + b[i + 5]!]! ^ T[256 + b[i + 6]!]! ^ T[b[i + 7]!]!;
  }
  for (; i < n; i++) c = T[(c ^ b[i]!) & 255]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** A seeded 32-bit generator (mulberry32): the same seed gives the same sizes and payloads on every runtime. */
export function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The size of the next message (header included), from the distribution above, at most `max`. */
export function drawSize(next: () => number, max: number): number {
  const band = next();
  const u = next();
  let size: number;
  if (band < 0.5) size = HEADER + Math.floor(u * (1024 - HEADER));
  else if (band < 0.95) size = Math.floor(1024 * 8 ** u);
  else size = Math.floor(8192 * 8 ** u);
  return Math.min(size, max, MAX_SOAK_MESSAGE);
}

const POOL = 128 * 1024;

/** Builds the messages of one producer into one reused buffer (a channel may reuse it once `send()` settled). */
export class MessageWriter {
  readonly #buffer: Uint8Array;
  readonly #view: DataView;
  readonly #pool: Uint8Array;
  readonly #next: () => number;
  readonly #id: number;
  readonly #max: number;
  #seq = 0;

  constructor(id: number, seed: number, max: number) {
    this.#id = id;
    this.#max = max;
    this.#next = random(seed * 31 + id + 1);
    this.#pool = new Uint8Array(POOL);
    const fill = random(seed);
    for (let i = 0; i < POOL; i += 4) new DataView(this.#pool.buffer).setUint32(i, (fill() * 4294967296) >>> 0);
    this.#buffer = new Uint8Array(Math.max(max, HEADER));
    this.#view = new DataView(this.#buffer.buffer);
  }

  /** The next message: a view of the writer's buffer, valid until the next call. */
  next(): Uint8Array {
    const size = Math.max(HEADER, drawSize(this.#next, this.#max));
    const offset = Math.floor(this.#next() * (POOL - MAX_SOAK_MESSAGE));
    return this.fill(size, offset);
  }

  /** A message of exactly `size` bytes (at least the header) with the next sequence number. */
  fill(size: number, offset = 0): Uint8Array {
    const m = this.#buffer.subarray(0, size);
    this.#view.setUint32(0, this.#id);
    this.#view.setUint32(4, this.#seq++);
    m.set(this.#pool.subarray(offset, offset + size - HEADER), HEADER);
    this.#view.setUint32(8, crc32(m.subarray(HEADER), crc32(m.subarray(0, 8))));
    return m;
  }
}

/** A large message (the chaos run's): `size` bytes, a valid header with producer id `id`, the pool repeated. */
export function largeMessage(size: number, id: number, seed: number): Uint8Array {
  const writer = new MessageWriter(id, seed, MAX_SOAK_MESSAGE);
  const chunk = writer.fill(MAX_SOAK_MESSAGE).subarray(HEADER);
  const m = new Uint8Array(Math.max(size, HEADER));
  for (let i = HEADER; i < m.length; i += chunk.length) m.set(chunk.subarray(0, m.length - i), i);
  const v = new DataView(m.buffer);
  v.setUint32(0, id);
  v.setUint32(4, 0);
  v.setUint32(8, crc32(m.subarray(HEADER), crc32(m.subarray(0, 8))));
  return m;
}

/** Whether `m` is a data message whose CRC holds. */
export function intact(m: Uint8Array): boolean {
  if (m.byteLength < HEADER) return false;
  const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
  return v.getUint32(8) === crc32(m.subarray(HEADER), crc32(m.subarray(0, 8)));
}

/** What a {@linkcode Tally} counted. */
export interface Counts {
  messages: number;
  bytes: number;
  lost: number;
  duplicated: number;
  reordered: number;
  corrupt: number;
}

/**
 * The consumer's check: every data message is counted once as received, and as corrupt (bad CRC, unknown producer
 * or sequence number), duplicated (a sequence number seen before), or reordered (a sequence number lower than one
 * already seen from that producer: order per producer is what the transports promise). At the end, lost is what
 * was expected and never seen.
 */
export class Tally {
  readonly #expected: number[];
  readonly #seen: Uint8Array[];
  readonly #highest: number[];
  #distinct = 0;
  readonly counts: Counts = { messages: 0, bytes: 0, lost: 0, duplicated: 0, reordered: 0, corrupt: 0 };

  /** `expected[i]`: how many messages producer i sends. */
  constructor(expected: number[]) {
    this.#expected = expected;
    this.#seen = expected.map((n) => new Uint8Array(Math.ceil(n / 8)));
    this.#highest = expected.map(() => -1);
  }

  /** Counts one received message. */
  add(m: Uint8Array): void {
    const c = this.counts;
    c.messages++;
    c.bytes += m.byteLength;
    if (!intact(m)) {
      c.corrupt++;
      return;
    }
    const v = new DataView(m.buffer, m.byteOffset, m.byteLength);
    const id = v.getUint32(0);
    const seq = v.getUint32(4);
    const seen = this.#seen[id];
    if (seen === undefined || seq >= this.#expected[id]!) {
      c.corrupt++;
      return;
    }
    const bit = 1 << (seq & 7);
    if (seen[seq >>> 3]! & bit) {
      c.duplicated++;
      return;
    }
    seen[seq >>> 3] = seen[seq >>> 3]! | bit;
    this.#distinct++;
    if (seq < this.#highest[id]!) c.reordered++;
    else this.#highest[id] = seq;
  }

  /** The counts, with `lost` as of now. */
  result(): Counts {
    const expected = this.#expected.reduce((a, b) => a + b, 0);
    return { ...this.counts, lost: expected - this.#distinct };
  }
}

/** Splits `total` messages among `n` producers as evenly as possible. */
export function split(total: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
}
