/**
 * The layout of a shared-memory channel, and how the parts of one end are made from it: two rings (`shm/ring.ts`),
 * one per direction, behind a small header, in one POSIX shared memory segment between processes of any runtime
 * (`processParts`) or in one SharedArrayBuffer between threads (`threadParts`). The creator of a segment waits on
 * the header's `attached` word until its opener claimed the other side (`awaitOpener`, `attachOpener`).
 *
 * ## Segment layout (little-endian)
 *
 * ```text
 * offset       size          field
 * 0            4             magic 0x43435049 (the bytes "IPCC")
 * 4            4             version: 2
 * 8            4             ring capacity C
 * 12           4             attached: 0, then once the opener attached 1 (with the doorbell) or 2 (without;
 *                            both sides then wake each other with futexes) (a futex word)
 * 16           4             doorbell path length L (0: no doorbell)
 * 20           44            reserved, 0
 * 64           128           doorbell path: L bytes of UTF-8 (at most 107), the creator's Unix socket
 * 192          192 + C       ring 0: creator -> opener
 * 384 + C      192 + C       ring 1: opener -> creator
 * ```
 *
 * The doorbell (`shm/doorbell.ts`) is how a sleeping side is woken between processes: the opener connects to the
 * path and says its pid before it attaches; the creator takes that connection once the opener attached, then
 * removes the socket and its private directory.
 *
 * @module
 */
import { Backoff, onAbort, retry } from "../async/mod.ts";
import { AlreadyExistsError, NotFoundError, ProtocolError } from "../errors.ts";
import { loadedNative, type Native } from "../ffi/native.ts";
import { alive, type Identity, self } from "../os/liveness.ts";
import { crowding } from "../os/load.ts";
import { processFence } from "../os/fence.ts";
import { CONSUMER_FENCES, Ring, ringSize } from "./ring.ts";
import { type ChannelParts, type ShmHandle, SLEEP_MS } from "./ring_channel.ts";
import { SharedMemory } from "./segment.ts";
import { type Doorbell, MAX_PATH } from "./doorbell.ts";
import { idleOption, type IdleStrategy } from "./idle.ts";
import { atomicsWaiter, futexWaiter } from "./wait.ts";

const MAGIC = 0x43435049;
const VERSION = 2;
/** Bytes of the channel header; ring 0 follows it. */
export const CHANNEL_HEADER = 192;
const HEADER = CHANNEL_HEADER;
const I_CAPACITY = 2;
const I_ATTACHED = 3;
const I_BELL_LENGTH = 4;
const BELL_AT = 64;
/** `attached` once the opener attached: with its doorbell connected, or without one. */
const WITH_BELL = 1;
const WITHOUT_BELL = 2;
const DEFAULT_SPIN_US = 50;

/**
 * Total bytes of a channel's buffer for a ring capacity.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * console.log(shm.channelSize(1 << 20)); // 2097728: a 192-byte header and two rings of 192 + 1 MiB
 * ```
 */
export function channelSize(capacity: number): number {
  return HEADER + 2 * ringSize(capacity);
}

/**
 * Lays a channel out in `buffer`. With `creator`, side 0's owner (it writes ring 0 and reads ring 1) is recorded
 * before the magic word, and so is the doorbell's path: an opener that sees the magic sees whose liveness to watch
 * and where to connect.
 *
 * @throws {RangeError} when `bellPath` is longer than 107 bytes.
 */
export function initLayout(
  buffer: ArrayBufferLike,
  capacity: number,
  creator?: Identity,
  bellPath?: string,
): Int32Array {
  const head = new Int32Array(buffer, 0, HEADER / 4);
  const r0 = Ring.init(buffer, HEADER, capacity);
  const r1 = Ring.init(buffer, HEADER + ringSize(capacity), capacity);
  if (creator !== undefined) {
    r0.setOwner("producer", creator);
    r1.setOwner("consumer", creator);
  }
  if (bellPath !== undefined) {
    const bytes = new TextEncoder().encode(bellPath);
    if (bytes.byteLength > MAX_PATH) {
      throw new RangeError(`Cannot lay out a doorbell path of ${bytes.byteLength} bytes`);
    }
    new Uint8Array(buffer, BELL_AT, bytes.byteLength).set(bytes);
    head[I_BELL_LENGTH] = bytes.byteLength;
  }
  head[1] = VERSION;
  head[I_CAPACITY] = capacity;
  Atomics.store(head, 0, MAGIC);
  return head;
}

function rings(buffer: ArrayBufferLike, side: 0 | 1): { out: Ring; in: Ring } {
  const head = new Int32Array(buffer, 0, HEADER / 4);
  if (Atomics.load(head, 0) !== MAGIC || head[1] !== VERSION) {
    throw new ProtocolError("Cannot attach to the shm channel: the segment holds no ipckit channel of this version");
  }
  const capacity = head[I_CAPACITY]!;
  const r0 = Ring.attach(buffer, HEADER);
  const r1 = Ring.attach(buffer, HEADER + ringSize(capacity));
  return side === 0 ? { out: r0, in: r1 } : { out: r1, in: r0 };
}

/**
 * Checks `maxMessage` against a ring capacity before anything is created.
 *
 * @throws {RangeError} when it is not an integer from 0 to `capacity - 8`.
 */
export function checkMaxMessage(maxMessage: unknown, capacity: number): void {
  if (maxMessage === undefined) return;
  const limit = capacity - 8;
  if (!Number.isSafeInteger(maxMessage) || (maxMessage as number) < 0 || (maxMessage as number) > limit) {
    throw new RangeError(`Cannot use maxMessage ${String(maxMessage)}: it must be an integer from 0 to ${limit}`);
  }
}

/**
 * The spin option in microseconds (50 when not given).
 *
 * @throws {RangeError} when it is not a number >= 0.
 */
export function spinOption(spin: unknown): number {
  const us = spin ?? DEFAULT_SPIN_US;
  if (typeof us !== "number" || !(us >= 0)) throw new RangeError(`Cannot use spin ${String(spin)}: it must be >= 0`);
  return us;
}

/**
 * Opens the segment `name` once its creator made it (`NotFoundError` until then) and wrote the channel's header
 * (`ProtocolError` until then), retrying for `wait` milliseconds.
 *
 * @throws {NotFoundError} / {ProtocolError} when that did not happen within `wait` ms; the signal's reason.
 */
export function openLaidOut(name: string, wait: number, signal: AbortSignal | undefined): Promise<SharedMemory> {
  return retry(async () => {
    const segment = await SharedMemory.open(name);
    const head = new Int32Array(segment.buffer, 0, HEADER / 4);
    if (segment.size >= HEADER && Atomics.load(head, 0) === MAGIC) {
      // Ready once, with the magic word, who created the channel is there too (id 0: a creator still laying it out,
      // or an older one that records itself after the magic): attaching before would take the creator for dead.
      if (creatorKnown(segment)) return segment;
      segment.close();
      throw new ProtocolError(`Cannot open shm channel "${name}": its creator has not recorded itself`);
    }
    segment.close();
    throw new ProtocolError(`Cannot open shm channel "${name}": the segment holds no ipckit channel`);
  }, {
    wait,
    retryable: (e) => e instanceof NotFoundError || e instanceof ProtocolError,
    ...(signal === undefined ? {} : { signal }),
    backoff: new Backoff({ first: 1, max: 20 }),
  });
}

/** Whether side 0's owner (the creator) is recorded in the channel laid out in `segment`. */
function creatorKnown(segment: SharedMemory): boolean {
  const head = new Int32Array(segment.buffer, 0, HEADER / 4);
  try {
    if (head[1] !== VERSION || segment.size < channelSize(head[I_CAPACITY]!)) return true;
    return rings(segment.buffer, 0).out.owner("producer").id !== 0;
  } catch {
    return true; // a header that is wrong: attaching says what is wrong with it
  }
}

/**
 * The creator's side: lays the channel out in `segment`, takes side 0, and waits until the opener attached.
 * Returns the opener's identity, for its liveness.
 *
 * @throws the signal's reason when it aborts the wait.
 */
export async function awaitOpener(
  ffi: Native,
  segment: SharedMemory,
  capacity: number,
  signal: AbortSignal | undefined,
  bellPath?: string,
): Promise<{ peer: Identity; bell: boolean }> {
  const head = initLayout(segment.buffer, capacity, self(ffi), bellPath);
  const { out } = rings(segment.buffer, 0);
  const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
  const unlisten = onAbort(signal, () => waiter.wake(I_ATTACHED));
  try {
    while (Atomics.load(head, I_ATTACHED) === 0) {
      signal?.throwIfAborted();
      await waiter.wait(I_ATTACHED, 0, SLEEP_MS);
    }
  } finally {
    unlisten();
  }
  return { peer: out.owner("consumer"), bell: Atomics.load(head, I_ATTACHED) === WITH_BELL };
}

/**
 * The creator's side without waiting: once the opener attached to the channel laid out in `buffer` (by
 * `initLayout` with the creator recorded), its identity and whether it attached with a doorbell; undefined until
 * then. For a creator that learns of the attach another way (the shm listener: its client says so on their
 * connection), so that nothing blocks in a futex wait meanwhile.
 */
export function attachedOpener(buffer: ArrayBufferLike): { peer: Identity; bell: boolean } | undefined {
  const attached = Atomics.load(new Int32Array(buffer, 0, HEADER / 4), I_ATTACHED);
  if (attached === 0) return undefined;
  return { peer: rings(buffer, 0).out.owner("consumer"), bell: attached === WITH_BELL };
}

/** The doorbell path the creator laid out in `segment`, if any. */
export function bellPath(segment: SharedMemory): string | undefined {
  const head = new Int32Array(segment.buffer, 0, HEADER / 4);
  const n = head[I_BELL_LENGTH]!;
  if (n <= 0 || n > MAX_PATH) return undefined;
  return new TextDecoder().decode(new Uint8Array(segment.buffer, BELL_AT, n));
}

/**
 * The opener's side: claims side 1 of the channel in `segment` and wakes its creator. Returns the creator's
 * identity, for its liveness.
 *
 * @throws {ProtocolError} when the segment holds no channel of this version, or is smaller than its layout.
 * @throws {AlreadyExistsError} when the channel already has its peer.
 */
export function attachOpener(ffi: Native, segment: SharedMemory, name: string, bell: boolean): Identity {
  const head = new Int32Array(segment.buffer, 0, HEADER / 4);
  const { out, in: input } = rings(segment.buffer, 1);
  if (segment.size < channelSize(head[I_CAPACITY]!)) {
    throw new ProtocolError(`Cannot open shm channel "${name}": the segment is smaller than its layout`);
  }
  const me = self(ffi);
  out.setOwner("producer", me);
  input.setOwner("consumer", me);
  if (Atomics.compareExchange(head, I_ATTACHED, 0, bell ? WITH_BELL : WITHOUT_BELL) !== 0) {
    throw new AlreadyExistsError(`Cannot open shm channel "${name}": it already has its peer`);
  }
  const waiter = futexWaiter(ffi, new Int32Array(segment.buffer), segment.address);
  waiter.wake(I_ATTACHED);
  return input.owner("producer");
}

/**
 * The parts of a process channel's end on `side` of `segment`; `peer` is the other side's process, `bell` the
 * doorbell between them (none: futexes), `cpus` how many CPUs this process may run on.
 */
export function processParts(
  ffi: Native,
  segment: SharedMemory,
  side: 0 | 1,
  peer: Identity,
  options: { spin?: number; idle?: IdleStrategy; maxMessage?: number },
  bell: Doorbell | undefined,
  cpus: number,
): ChannelParts {
  const words = new Int32Array(segment.buffer);
  const { out, in: input } = rings(segment.buffer, side);
  return {
    fence: plainPublication(ffi, out, input),
    description: `shm channel "${segment.name}"`,
    out,
    in: input,
    waiter: futexWaiter(ffi, words, segment.address),
    outBase: out.offset / 4,
    inBase: input.offset / 4,
    spinUs: spinOption(options.spin),
    idle: idleOption(options.idle),
    cpus,
    crowded: crowding(ffi, cpus),
    bell,
    maxMessage: options.maxMessage,
    peerAlive: () => alive(peer.id, peer.tag, ffi),
    release: () => segment.close(),
  };
}

/**
 * Plain publication where this process can fence (`os/fence.ts`): this end's producer may publish plainly, and its
 * consumer says it can fence. Returns that fence, which the consumer runs before it sleeps while its producer
 * publishes plainly; or undefined.
 */
function plainPublication(ffi: Native, out: Ring, input: Ring): (() => boolean) | undefined {
  const fence = processFence(ffi);
  if (fence === undefined) return undefined;
  out.publishPlainly(true);
  input.setFlag(CONSUMER_FENCES);
  return fence;
}

/** A SharedArrayBuffer laid out as a thread channel, both sides attached. */
export function threadBuffer(capacity: number): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(channelSize(capacity));
  initLayout(buffer, capacity);
  Atomics.store(new Int32Array(buffer, 0, HEADER / 4), I_ATTACHED, 1);
  return buffer;
}

/**
 * The parts of a thread channel's end, from its handle.
 *
 * @throws {ProtocolError} when the buffer holds no channel.
 */
export function threadParts(handle: ShmHandle, maxMessage: number | undefined, cpus = 2): ChannelParts {
  const { out, in: input } = rings(handle.buffer, handle.side);
  const words = new Int32Array(handle.buffer);
  const ffi = loadedNative();
  return {
    fence: ffi ? plainPublication(ffi, out, input) : undefined,
    description: `shm thread channel (side ${handle.side})`,
    out,
    in: input,
    waiter: atomicsWaiter(words),
    outBase: out.offset / 4,
    inBase: input.offset / 4,
    spinUs: spinOption(handle.spin),
    idle: idleOption(handle.idle),
    cpus,
    crowded: ffi ? crowding(ffi, cpus) : undefined,
    maxMessage,
    peerAlive: () => true,
    release: () => {},
  };
}
