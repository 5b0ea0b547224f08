/**
 * Many producers, one consumer, over shared memory: a **collector** creates a named segment and receives what any
 * number of **producers** (up to 64 at a time; processes of any runtime) send into it, each message tagged with who
 * sent it. A pool's results, a log collector. The ring and its fault behaviour are `shm/mpsc.ts`, its layout byte
 * for byte `shm/mpsc_layout.ts`; docs/shm_mpsc.md says when to use it.
 *
 * Unlike `shm.create`, the collector keeps its name while it lives (producers come and go): `close()` removes it,
 * and `ipckit clean` removes the name of a collector whose process died.
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const name = `/ipckit-logs-${(await runtime()).pid}`;
 * await using logs = await shm.collector(name, { capacity: 1 << 16 });
 * // Usually other processes (a Deno, a Bun, a Node one): each opens its own producer.
 * await using worker = await shm.producer(name, { wait: 5000 });
 * await worker.send(new TextEncoder().encode("started"));
 * const { data, pid, sequence } = await logs.receive();
 * console.log(new TextDecoder().decode(data), pid === (await runtime()).pid, sequence); // started true 0
 * ```
 *
 * @module
 */
import { Backoff, retry } from "../async/mod.ts";
import { IpcError, NotFoundError, ProtocolError } from "../errors.ts";
import { loadedNative, native } from "../ffi/native.ts";
import { alive, self, selfThread } from "../os/liveness.ts";
import { Collector, type MpscHandle, type MpscParts } from "../shm/mpsc.ts";
import { Producer } from "../shm/mpsc_producer.ts";
import { MpscRing, mpscSize, RECORD_HEADER } from "../shm/mpsc_layout.ts";
import { ringCapacity } from "../shm/ring.ts";
import { checkName, SharedMemory } from "../shm/segment.ts";
import { spinOption } from "../shm/ring_channel_layout.ts";
import { atomicsWaiter, futexWaiter } from "../shm/wait.ts";

export { Collector, type Delivery, DeliveryLoan, type MpscHandle } from "../shm/mpsc.ts";
export { Producer } from "../shm/mpsc_producer.ts";
export type { ProducerInfo } from "../shm/mpsc_layout.ts";

const DEFAULT_CAPACITY = 1 << 20;

/** Options of {@linkcode collector} and {@linkcode threadCollector}. */
export interface CollectorOptions {
  /** Data bytes of the ring (rounded up to a power of two, at least 64); 1 MiB by default. */
  capacity?: number;
  /** Largest message producers may send, at most `capacity - 16`; that by default. */
  maxMessage?: number;
  /** Microseconds to spin before sleeping when there is nothing to receive; 50 by default. */
  spin?: number;
  /** Permission bits of the segment; 0o600 by default. */
  mode?: number;
}

/** Options of {@linkcode producer}. */
export interface ProducerOptions {
  /** Milliseconds to wait for the collector's segment to appear (and for a free producer slot); 0 by default. */
  wait?: number;
  /** Aborts that wait. */
  signal?: AbortSignal;
  /** Microseconds to spin before sleeping when the ring is full; 50 by default. */
  spin?: number;
}

function checkMax(maxMessage: unknown, capacity: number): number {
  const limit = capacity - RECORD_HEADER;
  if (maxMessage === undefined) return limit;
  if (!Number.isSafeInteger(maxMessage) || (maxMessage as number) < 0 || (maxMessage as number) > limit) {
    throw new RangeError(`Cannot use maxMessage ${String(maxMessage)}: it must be an integer from 0 to ${limit}`);
  }
  return maxMessage as number;
}

/**
 * Creates the segment `name` and the collector that receives from its producers. The name stays until `close()`.
 *
 * @throws {AlreadyExistsError} when the name exists; `TypeError`/`RangeError` for bad arguments.
 *
 * @example
 * ```ts
 * import { runtime, runtimeArgv, shm } from "ipckit";
 * const rt = await runtime();
 * const [role, name] = rt.args();
 * if (role === "child") {
 *   await using log = await shm.producer(name!, { wait: 10_000 });
 *   for (let i = 0; i < 3; i++) await log.send(new TextEncoder().encode(`${rt.name} line ${i}`));
 * } else {
 *   const name = `/ipckit-collect-${rt.pid}`;
 *   await using logs = await shm.collector(name, { capacity: 1 << 16 });
 *   const argv = (r: "deno" | "bun" | "node") => [...runtimeArgv(r, rt.fromFileUrl(import.meta.url)), "child", name];
 *   const children = [rt.spawn(argv("bun"), { stdio: "inherit" }), rt.spawn(argv("deno"), { stdio: "inherit" })];
 *   const lines: string[] = [];
 *   while (lines.length < 6) lines.push(new TextDecoder().decode((await logs.receive({ timeout: 30_000 })).data));
 *   await Promise.all(children.map((c) => c.exited));
 *   console.log(lines.filter((l) => l.startsWith("bun")).join(", ")); // bun line 0, bun line 1, bun line 2
 * }
 * ```
 */
export async function collector(name: string, options: CollectorOptions = {}): Promise<Collector> {
  checkName(name);
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  const max = checkMax(options.maxMessage, capacity);
  const spinUs = spinOption(options.spin);
  const ffi = await native();
  const segment = await SharedMemory.create(name, {
    size: mpscSize(capacity),
    ...(options.mode === undefined ? {} : { mode: options.mode }),
  });
  try {
    const ring = MpscRing.init(segment.buffer, capacity, self(ffi), max);
    return new Collector({
      description: `shm collector "${name}"`,
      ring,
      waiter: futexWaiter(ffi, ring.words, segment.address),
      alive: (id, tag) => id === 0 || alive(id, tag, ffi),
      spinUs,
      maxMessage: max,
      release: () => {
        try {
          segment.unlink();
        } catch (e) {
          if (!(e instanceof NotFoundError)) throw e; // `ipckit clean` or someone else removed it: fine
        } finally {
          segment.close();
        }
      },
    });
  } catch (e) {
    segment.unlink();
    segment.close();
    throw e;
  }
}

/** Not there yet: a segment that exists but holds no laid-out ring (its creator is still writing it). */
class NotReady extends ProtocolError {}
/** Every producer slot is taken (the collector frees the slots of producers that are gone). */
class NoSlot extends IpcError {}

/**
 * Opens a producer of the collector at `name`, in a slot of its own (up to 64 producers at a time).
 *
 * @throws {NotFoundError} when there is no such segment (after `wait` ms); {@linkcode ProtocolError} when it holds
 * no many-producer channel of this version; {@linkcode IpcError} when all 64 producer slots stay taken for `wait` ms;
 * the signal's reason.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, shm } from "ipckit";
 * const name = `/ipckit-producer-${(await runtime()).pid}`;
 * await shm.producer(name).catch((e) => console.log(e instanceof NotFoundError)); // true: no collector yet
 * const opening = shm.producer(name, { wait: 5000 }); // retries until the collector is there
 * await using collector = await shm.collector(name, { capacity: 4096 });
 * await using producer = await opening;
 * await producer.send(new Uint8Array([1, 2]));
 * const { data, producer: slot } = await collector.receive();
 * console.log(data, slot === producer.slot); // Uint8Array [1, 2] true
 * ```
 */
export async function producer(name: string, options: ProducerOptions = {}): Promise<Producer> {
  checkName(name);
  const spinUs = spinOption(options.spin);
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open producer "${name}": wait must be >= 0 milliseconds`);
  const ffi = await native();
  const what = `shm producer "${name}"`;
  return await retry(async () => {
    const segment = await SharedMemory.open(name);
    try {
      if (!MpscRing.ready(segment.buffer) && new Int32Array(segment.buffer, 0, 1)[0] === 0) {
        throw new NotReady(`Cannot open ${what}: its collector has not laid it out yet`);
      }
      const ring = MpscRing.attach(segment.buffer, what);
      const slot = ring.takeSlot(self(ffi));
      if (slot < 0) throw new NoSlot(`Cannot open ${what}: all 64 producer slots are taken`);
      return new Producer({
        description: what,
        ring,
        waiter: futexWaiter(ffi, ring.words, segment.address),
        alive: (id, tag) => id === 0 || alive(id, tag, ffi),
        spinUs,
        release: () => segment.close(),
      }, slot);
    } catch (e) {
      segment.close();
      throw e;
    }
  }, {
    wait,
    retryable: (e) => e instanceof NotFoundError || e instanceof NotReady || e instanceof NoSlot,
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    backoff: new Backoff({ first: 1, max: 20 }),
  });
}

/**
 * A collector for producers in threads of this process, over a SharedArrayBuffer: post `collector.handle` to each
 * Worker and make its producer there with {@linkcode producerFromHandle}.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const collector = shm.threadCollector({ capacity: 4096 });
 * const producer = shm.producerFromHandle(collector.handle!); // in a worker, usually
 * await producer.send(new Uint8Array([7]));
 * console.log((await collector.receive()).data); // Uint8Array [7]
 * await producer.close();
 * await collector.close();
 * ```
 */
export function threadCollector(options: Omit<CollectorOptions, "mode"> = {}): Collector {
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  const max = checkMax(options.maxMessage, capacity);
  const spin = spinOption(options.spin);
  const buffer = new SharedArrayBuffer(mpscSize(capacity));
  const ring = MpscRing.init(buffer, capacity, { id: 0, tag: 0 }, max);
  return new Collector(threadParts(ring, "shm thread collector", spin), { buffer, spin });
}

function threadParts(ring: MpscRing, description: string, spinUs: number): MpscParts {
  const ffi = loadedNative();
  return {
    description,
    ring,
    waiter: atomicsWaiter(ring.words),
    alive: (id, tag) => id === 0 || ffi === undefined || alive(id, tag, ffi),
    spinUs,
    release: () => {},
  };
}

/**
 * A producer of a thread collector, from its handle (in any thread of the process).
 *
 * @throws {ProtocolError} when the buffer holds no many-producer channel; {@linkcode IpcError} when all 64
 * producer slots are taken.
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * if (parent !== null) {
 *   // In a worker thread (this same module): a producer from the posted handle.
 *   parent.onMessage(async (handle) => {
 *     const producer = shm.producerFromHandle(handle as shm.MpscHandle);
 *     await producer.send(new TextEncoder().encode("from a worker"));
 *     await producer.close();
 *   });
 * } else {
 *   const collector = shm.threadCollector({ capacity: 4096 });
 *   const worker = rt.worker(new URL(import.meta.url));
 *   worker.postMessage(collector.handle);
 *   console.log(new TextDecoder().decode((await collector.receive({ timeout: 30_000 })).data)); // from a worker
 *   await collector.close();
 *   await worker.terminate();
 * }
 * ```
 */
export function producerFromHandle(handle: MpscHandle): Producer {
  if (!(handle?.buffer instanceof SharedArrayBuffer)) {
    throw new TypeError("Cannot make a producer: the handle needs a SharedArrayBuffer");
  }
  const ring = MpscRing.attach(handle.buffer, "shm thread producer");
  // A worker terminated mid-write is told dead by its thread id where FFI is loaded; else it is never skipped.
  const ffi = loadedNative();
  const slot = ring.takeSlot(ffi ? selfThread(ffi) : { id: 0, tag: 0 });
  if (slot < 0) throw new IpcError("Cannot make a producer: all 64 producer slots are taken");
  return new Producer(threadParts(ring, "shm thread producer", spinOption(handle.spin)), slot);
}
