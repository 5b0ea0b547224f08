/**
 * A process's live counters, kept in a shared memory segment of its own that any process may read while it runs
 * (`ipckit stats`): what Aeron's counters file is to Aeron. Objects (a shm channel, a pool...) take a slot with
 * {@linkcode track} and count with plain stores into it; nothing on a send or receive path calls the OS.
 *
 * The segment is `/ipckit-stats-<pid>-<start tag>-<random>`, one per process, made 0600 by the main thread on its
 * first `track()` (a worker thread's objects count in the thread's memory only: a terminated thread runs no exit
 * hook that would remove a segment of its own), recorded like any object (so `ipckit clean` removes it once the
 * process is dead) and removed when the process exits; a process killed by a signal cannot remove its own, so the
 * next process that makes one removes those of processes that are gone. Until it is
 * made (it takes a turn of the event loop), and when stats are off (`IPCKIT_STATS=off`, or {@linkcode setStats}),
 * counters live in process memory: counting never waits and never fails.
 *
 * Layout, version 1, little-endian (`docs/monitor.md` has it too):
 *
 * | offset | size | header field                                                                |
 * | ------ | ---- | --------------------------------------------------------------------------- |
 * | 0      | 4    | magic `0x54534b49` ("IKST")                                                 |
 * | 4      | 4    | layout version (1)                                                          |
 * | 8      | 4    | header size in bytes (64)                                                   |
 * | 12     | 4    | slot size in bytes (256)                                                    |
 * | 16     | 4    | slot count                                                                  |
 * | 20     | 4    | pid                                                                         |
 * | 24     | 8    | f64: when the process made the segment (ms since the epoch)                 |
 * | 32     | 16   | runtime name, ASCII, NUL-padded                                             |
 * | 48     | 4    | slots ever taken (the reader looks at no slot past it)                      |
 *
 * | offset in slot | size | slot field                                                           |
 * | -------------- | ---- | -------------------------------------------------------------------- |
 * | 0              | 4    | state: 0 free, 1 live, 2 closed (its counters stay until reused)      |
 * | 4              | 4    | kind: 1 channel, 2 pool, 3 rpc, 4 latency, 5 lock, 6 semaphore, 7 nats, 8 worker |
 * | 8              | 4    | generation: bumped each time the slot is taken                       |
 * | 12             | 4    | name length in bytes (at most 52)                                     |
 * | 16             | 52   | name, UTF-8                                                           |
 * | 72             | 184  | 23 f64 counters, their meaning per kind in {@linkcode COUNTERS}       |
 *
 * A slot is filled, then its state stored (atomically) last; a reader takes a slot whose state is 1 or 2 and whose
 * generation is the same before and after it copied the slot. Within version 1 a kind only ever gains counters at
 * the end of its list, and a new kind only a new number: a writer zeroes every counter it does not know, a reader
 * skips a kind it does not know and the counters past its list.
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";
import { O_RDONLY } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { alive, self } from "../os/liveness.ts";
import { shmName } from "../os/shm_name.ts";
import { runtime } from "../runtimes/detect.ts";
import type { Runtime } from "../runtimes/runtime.ts";
import { SharedMemory } from "./segment.ts";

/** The first bytes of every stats segment's name; the pid and a random part follow. */
export const STATS_PREFIX = "/ipckit-stats-";
/**
 * The layout version this code writes and reads (a reader of another version says so, it does not guess).
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * console.log(stats.STATS_VERSION); // 1
 * ```
 */
export const STATS_VERSION = 1;
const MAGIC = 0x54534b49;
const HEADER = 64;
const SLOT = 256;
const SLOTS = 255;
const NAME_BYTES = 52;
const COUNTERS_AT = 72;
/**
 * Buckets of a latency slot, after its three counters (shm/stats_latency.ts says what they hold).
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * console.log(stats.LATENCY_BUCKETS); // 20: 2 us doubling to 0.52 s, the last open
 * ```
 */
export const LATENCY_BUCKETS = 20;
/** Counters per slot. */
export const COUNTER_SLOTS = (SLOT - COUNTERS_AT) / 8;

// Header and slot fields, as indices of 32-bit words.
const H_MAGIC = 0, H_VERSION = 1, H_HEADER = 2, H_SLOT = 3, H_SLOTS = 4, H_PID = 5, H_USED = 12;
const S_STATE = 0, S_KIND = 1, S_GENERATION = 2, S_NAME_LENGTH = 3;
const FREE = 0, LIVE = 1, CLOSED = 2;

/** What a slot counts. */
export type StatsKind = "channel" | "pool" | "rpc" | "latency" | "lock" | "semaphore" | "nats" | "worker";
const KINDS: readonly StatsKind[] = ["channel", "pool", "rpc", "latency", "lock", "semaphore", "nats", "worker"]; // 1-8

/**
 * The counters of each kind, in slot order. Counts only grow; the ones marked "now" are the current value.
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * console.log(stats.COUNTERS.channel.slice(0, 4)); // ["messagesOut", "bytesOut", "messagesIn", "bytesIn"]
 * ```
 */
export const COUNTERS = {
  channel: [
    "messagesOut",
    "bytesOut",
    "messagesIn",
    "bytesIn",
    "sleeps", // this side parked, waiting for a message or for room
    "wakes", // this side woke its parked peer
    "capacity", // now: the ring's size in bytes, each way (shm)
    "errors", // the channel ended with an error (a broken frame, a peer that stopped answering...)
    "credit", // now (NATS): bytes this side may still send before the peer grants more
    // a shm collector: records it skipped because their producer died before committing them; a shm subscriber:
    // messages it missed by lagging (the `missed` of its LaggedErrors)
    "lost",
  ],
  pool: [
    "submitted",
    "done",
    "failed",
    "retried",
    "restarts", // workers started again after dying
    "queued", // now
    "running", // now
    "workers", // now: workers ready
  ],
  // in flight: calls - callsSettled (made here), served - servedDone (run here)
  rpc: ["calls", "callsFailed", "callsSettled", "served", "servedFailed", "servedDone"],
  // then LATENCY_BUCKETS buckets of the timed operations (shm/stats_latency.ts), read as ObjectStats.buckets
  latency: ["count", "failed", "sumUs"],
  // an observed Mutex (sync/lock_stats.ts), as this process uses it
  lock: [
    "acquired",
    "contended", // acquisitions that had to wait
    "ownerDied", // taken over from an owner that died holding it
    "gaveUp", // waits that timed out or were aborted
    "waiting", // now
    "holder", // now: the thread of this process that holds it (its tid, or a thread id), 0 when none here does
    "heldSince", // now: when that thread took it, ms since the epoch (0: not held here)
    "longestHoldUs",
  ],
  // an observed Semaphore, as this process uses it
  semaphore: ["acquired", "contended", "gaveUp", "released", "waiting", "value"],
  // a NATS link (connection): whether it is connected now, how often it dropped and came back, channels on it now
  nats: ["connected", "disconnects", "reconnects", "channels"],
  // a pool's worker slot (`<pool> worker <i>`): `id` its worker's pid (a thread: a number unique in the process);
  // `state` 0 none (being restarted, or given up), 1 starting, 2 ready, 3 draining, 4 stopping, 5 dead
  worker: ["slot", "id", "state", "running", "done", "restarts"],
} as const satisfies Record<StatsKind, readonly string[]>;

/**
 * One object's counters: `values[i]` is `COUNTERS[kind][i]`. Count with plain stores (`c.values[0]++`); `values`
 * is replaced once, when the process's segment is ready, so keep the Counters and read `values` each time.
 */
export class Counters {
  values: Float64Array = new Float64Array(COUNTER_SLOTS);
  readonly kind: StatsKind;
  readonly name: string;
  /** The slot in the segment, or -1 while the counters live in process memory. */
  slot = -1;
  closed = false;

  constructor(kind: StatsKind, name: string) {
    this.kind = kind;
    this.name = name;
  }

  /** The object is gone: its slot shows it closed, with its last counts, until another object takes it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    release(this);
  }
}

// ---- this process's segment

interface Segment {
  readonly shm: SharedMemory;
  readonly words: Uint32Array;
  readonly bytes: Uint8Array;
  /** Slots closed, in the order they were, to be taken again when every slot has been used. */
  readonly closed: number[];
  used: number;
}

/** undefined: not made yet; null: off (or it could not be made). */
let segment: Segment | null | undefined;
/** The segment is null because stats were off (not because it could not be made). */
let off = false;
let making = false;
/** Counters tracked before the segment was ready. */
const waiting = new Set<Counters>();
let forced: boolean | undefined;

/**
 * Turns stats on or off for this process, over `IPCKIT_STATS` (`off` turns them off; on by default); undefined
 * goes back to the environment. Objects made before keep counting where they did (turned on, the objects made from
 * now on are shown; turned off once the segment exists, it stays, with what it shows).
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * stats.setStats(true); // whatever IPCKIT_STATS says
 * stats.setStats(undefined); // IPCKIT_STATS decides again
 * ```
 */
export function setStats(on: boolean | undefined): void {
  forced = on;
  if (segment === null && off) segment = undefined; // decide again at the next track()
}

/**
 * Takes a slot for an object's counters (in process memory until the segment is ready; there for good when stats are
 * off or the 255 slots are taken).
 */
export function track(kind: StatsKind, name: string): Counters {
  const c = new Counters(kind, name);
  if (segment === null) return c;
  if (segment !== undefined) {
    place(segment, c);
    return c;
  }
  waiting.add(c);
  if (!making) {
    making = true;
    void make();
  }
  return c;
}

async function make(): Promise<void> {
  try {
    const rt = await runtime();
    const on = forced ?? rt.env("IPCKIT_STATS")?.toLowerCase() !== "off";
    off = !on;
    // One segment per process, the main thread's: a worker thread can be terminated without any exit hook.
    segment = on && rt.ffiAllowed() && rt.parentPort() === null ? await open(rt) : null;
  } catch {
    segment = null; // no segment (no /dev/shm, no FFI): the counters stay in process memory
  }
  const s = segment;
  for (const c of waiting) if (s && !c.closed) place(s, c);
  waiting.clear();
  making = false;
}

async function open(rt: Runtime): Promise<Segment> {
  const ffi = await native();
  const me = self(ffi);
  const random = Math.floor(Math.random() * 0xffffffff).toString(16).padStart(8, "0");
  const shm = await SharedMemory.create(`${STATS_PREFIX}${me.id}-${me.tag.toString(16)}-${random}`, {
    size: HEADER + SLOTS * SLOT,
  });
  const words = new Uint32Array(shm.buffer);
  const bytes = new Uint8Array(shm.buffer);
  words[H_VERSION] = STATS_VERSION;
  words[H_HEADER] = HEADER;
  words[H_SLOT] = SLOT;
  words[H_SLOTS] = SLOTS;
  words[H_PID] = me.id;
  new DataView(shm.buffer).setFloat64(24, Date.now(), true);
  bytes.set(new TextEncoder().encode(rt.name).subarray(0, 16), 32);
  Atomics.store(words, H_MAGIC, MAGIC); // last: a reader that sees the magic sees the rest
  rt.onProcessExit(() => {
    try {
      shm.unlink();
    } catch { /* removed already (ipckit clean) */ }
  });
  await sweep(rt, ffi);
  return { shm, words, bytes, closed: [], used: 0 };
}

/**
 * Removes the stats segments of processes that are gone (killed by a signal, they could not remove their own), so
 * that /dev/shm does not fill up with them between two `ipckit clean`s. The pid and start-time tag in the name say
 * whose a segment is; a process of another user keeps its segments (they cannot be removed from here anyway).
 */
async function sweep(rt: Runtime, ffi: Native): Promise<void> {
  for (const name of await shmName.list!(rt)) {
    const owner = ownerOf(name);
    if (owner === undefined || alive(owner.id, owner.tag, ffi)) continue;
    try {
      await SharedMemory.unlink(name);
    } catch { /* another process removed it first, or it is not ours */ }
  }
}

/** The pid and start-time tag in a stats segment's name, or undefined for another name. */
export function ownerOf(name: string): { id: number; tag: number } | undefined {
  const m = /^\/ipckit-stats-(\d+)-([0-9a-f]+)-[0-9a-f]+$/.exec(name);
  return m ? { id: Number(m[1]), tag: parseInt(m[2]!, 16) } : undefined;
}

function place(s: Segment, c: Counters): void {
  let slot: number;
  if (s.used < SLOTS) slot = s.used++;
  else if (s.closed.length > 0) slot = s.closed.shift()!;
  else return; // every slot is taken: these counters are not shown
  const at = HEADER + slot * SLOT;
  const base = at / 4;
  // Free while it is rewritten: a reader skips it until it is whole.
  Atomics.store(s.words, base + S_STATE, FREE);
  const view = new Float64Array(s.bytes.buffer, s.bytes.byteOffset + at + COUNTERS_AT, COUNTER_SLOTS);
  view.set(c.values);
  const name = new TextEncoder().encode(c.name);
  const cut = name.subarray(0, cutUtf8(name, NAME_BYTES));
  s.bytes.fill(0, at + 16, at + 16 + NAME_BYTES);
  s.bytes.set(cut, at + 16);
  s.words[base + S_NAME_LENGTH] = cut.length;
  s.words[base + S_KIND] = KINDS.indexOf(c.kind) + 1;
  s.words[base + S_GENERATION] = (s.words[base + S_GENERATION]! + 1) >>> 0;
  Atomics.store(s.words, base + S_STATE, LIVE);
  Atomics.store(s.words, H_USED, s.used);
  c.values = view;
  c.slot = slot;
}

function release(c: Counters): void {
  waiting.delete(c);
  const s = segment;
  if (!s || c.slot < 0) return;
  Atomics.store(s.words, (HEADER + c.slot * SLOT) / 4 + S_STATE, CLOSED);
  s.closed.push(c.slot);
  c.values = c.values.slice(); // what it counts from now on is its own
  c.slot = -1;
}

/** The length of the longest prefix of `bytes` of at most `max` bytes that ends on a whole UTF-8 character. */
function cutUtf8(bytes: Uint8Array, max: number): number {
  if (bytes.length <= max) return bytes.length;
  let n = max;
  while (n > 0 && (bytes[n]! & 0xc0) === 0x80) n--;
  return n;
}

/** The name of this process's stats segment, once it is made. */
export function segmentName(): string | undefined {
  return segment ? segment.shm.name : undefined;
}

// ---- reading, from any process

/** One object's counters, as read. */
export interface ObjectStats {
  kind: StatsKind;
  name: string;
  state: "live" | "closed";
  counters: Record<string, number>;
  /**
   * Kind `latency` only: how many of the timed operations took [2^k, 2^(k+1)) microseconds, bucket k (the first
   * from 0, the last to Infinity); `quantile()` reads p50 or p99 from them.
   */
  buckets?: number[];
}

/** One process's stats segment, as read. */
export interface ProcessStats {
  segment: string;
  pid: number;
  runtime: string;
  /** When the process made its segment (ms since the epoch). */
  since: number;
  objects: ObjectStats[];
}

/**
 * Parses a stats segment's bytes (a copy: see {@linkcode readStats}).
 *
 * @throws {ProtocolError} for bytes that are no stats segment, of a newer layout, or cut short.
 */
export function parseStats(segment: string, bytes: Uint8Array): ProcessStats {
  const what = `Cannot read the stats segment "${segment}"`;
  if (bytes.byteLength < HEADER) throw new ProtocolError(`${what}: it is ${bytes.byteLength} bytes, no header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const word = (i: number) => view.getUint32(i * 4, true);
  if (word(H_MAGIC) !== MAGIC) throw new ProtocolError(`${what}: it is no ipckit stats segment (or not ready yet)`);
  const version = word(H_VERSION);
  if (version !== STATS_VERSION) {
    throw new ProtocolError(
      `${what}: its layout is version ${version}${version > STATS_VERSION ? " (a newer ipckit wrote it)" : ""}; ` +
        `this ipckit reads version ${STATS_VERSION}`,
    );
  }
  const header = word(H_HEADER), slot = word(H_SLOT), slots = word(H_SLOTS);
  if (header !== HEADER || slot !== SLOT || slots === 0 || slots > 65536) {
    throw new ProtocolError(`${what}: its sizes (header ${header}, slot ${slot}, ${slots} slots) are not version 1's`);
  }
  const used = Math.min(word(H_USED), slots);
  if (bytes.byteLength < HEADER + used * SLOT) {
    throw new ProtocolError(`${what}: it is cut short (${bytes.byteLength} bytes for ${used} slots)`);
  }
  const runtimeBytes = bytes.subarray(32, 48);
  const end = runtimeBytes.indexOf(0);
  const objects: ObjectStats[] = [];
  const decoder = new TextDecoder();
  for (let i = 0; i < used; i++) {
    const at = HEADER + i * SLOT;
    const state = view.getUint32(at, true);
    const kind = KINDS[view.getUint32(at + 4, true) - 1];
    if ((state !== LIVE && state !== CLOSED) || kind === undefined) continue;
    const length = Math.min(view.getUint32(at + 12, true), NAME_BYTES);
    const counters: Record<string, number> = {};
    const names = COUNTERS[kind];
    names.forEach((key, k) => (counters[key] = view.getFloat64(at + COUNTERS_AT + k * 8, true)));
    const o: ObjectStats = {
      kind,
      name: decoder.decode(bytes.subarray(at + 16, at + 16 + length)),
      state: state === LIVE ? "live" : "closed",
      counters,
    };
    if (kind === "latency") {
      o.buckets = Array.from(
        { length: LATENCY_BUCKETS },
        (_, k) => view.getFloat64(at + COUNTERS_AT + (names.length + k) * 8, true),
      );
    }
    objects.push(o);
  }
  return {
    segment,
    pid: word(H_PID),
    runtime: decoder.decode(runtimeBytes.subarray(0, end < 0 ? 16 : end)),
    since: view.getFloat64(24, true),
    objects,
  };
}

/** The most bytes read of one segment: a header and 4096 slots (version 1 writes 255). */
const READ_MAX = HEADER + 4096 * SLOT;

/** A copy of a segment's bytes, read through its file descriptor (not mapped: see readStats). */
function readBytes(ffi: Native, name: string): Uint8Array {
  const what = `read the stats segment "${name}"`;
  const fd = ffi.call.shm_open(ffi.cstring(name), O_RDONLY, 0);
  if (fd < 0) throw errnoError(ffi.errno(), what);
  try {
    const buf = new Uint8Array(READ_MAX);
    let done = 0;
    while (done < buf.byteLength) {
      const n = ffi.call.pread(fd, done === 0 ? buf : buf.subarray(done), buf.byteLength - done, done);
      if (n < 0) {
        const errno = ffi.errno();
        if (errno === ERRNO.EINTR) continue;
        throw errnoError(errno, what);
      }
      if (n === 0) break;
      done += n;
    }
    return buf.subarray(0, done);
  } finally {
    ffi.call.close(fd);
  }
}

/**
 * Reads one process's stats segment by name (the `segment` of what {@linkcode listStats} returns). The segment is read through its file descriptor, not mapped: one cut
 * short meanwhile gives a short read (and a clear error), never a crash. It is read twice, and only the objects that
 * read alike both times are kept (a slot being taken again meanwhile is left out), with the later counts.
 *
 * @throws {ProtocolError} for a segment that is no stats segment, of another layout version, or cut short;
 * {@linkcode NotFoundError} when it is gone.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, stats } from "ipckit";
 * const gone = await stats.readStats(`/ipckit-stats-${(await runtime()).pid}-0-0`).catch((e) => e);
 * console.log(gone instanceof NotFoundError); // true: no such segment
 * ```
 */
export async function readStats(name: string): Promise<ProcessStats> {
  const ffi = await native();
  const first = parseStats(name, readBytes(ffi, name));
  const second = parseStats(name, readBytes(ffi, name));
  const key = (o: ObjectStats) => `${o.kind}\0${o.name}\0${o.state}`;
  const before = new Set(first.objects.map(key));
  second.objects = second.objects.filter((o) => before.has(key(o)));
  return second;
}

/** A stats segment that could not be read, and why. */
export interface Unreadable {
  segment: string;
  error: string;
}

/**
 * Reads every stats segment on this machine (those this user may read), oldest process first; the ones that cannot
 * be read come with the reason.
 *
 * @example
 * ```ts
 * import { stats } from "ipckit";
 * for (const p of await stats.listStats()) {
 *   if ("error" in p) console.log(p.segment, "unreadable:", p.error);
 *   else console.log(p.pid, p.runtime, p.objects.length); // e.g. 4242 "node" 3
 * }
 * ```
 */
export async function listStats(): Promise<Array<ProcessStats | Unreadable>> {
  const names = (await shmName.list!(await runtime())).filter((n) => n.startsWith(STATS_PREFIX));
  const out: Array<ProcessStats | Unreadable> = [];
  for (const segment of names) {
    try {
      out.push(await readStats(segment));
    } catch (e) {
      out.push({ segment, error: (e as Error).message });
    }
  }
  return out.sort((a, b) => ("since" in a ? a.since : 0) - ("since" in b ? b.since : 0));
}
