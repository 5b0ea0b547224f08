/**
 * The shared memory channel: two rings (one per direction, see `shm/ring.ts`) in one POSIX shared memory segment
 * between processes of any runtime, or in one SharedArrayBuffer between threads. This file is the adapter: the
 * four ways to make a channel end (`create`, `open`, `pair`, `fromHandle`) and the Channel contract's face of it;
 * the mechanics (framing onto the rings, spinning and sleeping, wake-ups, peer checks, close) are
 * `shm/ring_channel.ts`, the segment layout byte for byte `shm/ring_channel_layout.ts`.
 *
 * Waiting (`shm/ring_channel.ts`, `shm/idle.ts`): by default spin up to `spin` microseconds (less when spinning
 * does not pay), then sleep at most 100 ms at a time until the peer rings: between processes through a doorbell, a
 * Unix socket between the two that each event loop polls (`shm/doorbell.ts`; futex(2) when none can be made),
 * between threads with `Atomics.waitAsync`. If the peer process died, `receive()`/`send()` reject with
 * `ClosedError` at once (its doorbell connection ends), or within about 100 ms without a doorbell.
 *
 * Messages larger than the ring (`capacity - 8` bytes) are rejected with `MessageTooLargeError`; choose the
 * capacity for the largest message. A full ring makes `send()` wait (backpressure).
 *
 * A server with many clients: `shm.listen(name)` and `shm.connect(name)` (`transports/shm_listener.ts`) give each
 * client a channel of its own, made as `create`/`open` make one, after a rendezvous on a Unix socket.
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const name = `/ipckit-app-${(await runtime()).pid}`;
 * // Usually two processes (a Deno and a Bun one, say): create waits for open.
 * const [a, b] = await Promise.all([
 *   shm.create(name, { capacity: 1 << 20 }),
 *   shm.open(name, { wait: 5000 }),
 * ]);
 * await b.send(new TextEncoder().encode("hello"));
 * console.log(new TextDecoder().decode(await a.receive())); // "hello"
 * await a.close();
 * await b.close();
 * ```
 *
 * @module
 */
import { native } from "../ffi/native.ts";
import { alive } from "../os/liveness.ts";
import { runtime } from "../runtimes/detect.ts";
import { Doorbell } from "../shm/doorbell.ts";
import { idleOption, type IdleStrategy } from "../shm/idle.ts";
import {
  attachOpener,
  awaitOpener,
  bellPath,
  channelSize,
  checkMaxMessage,
  openLaidOut,
  processParts,
  spinOption,
  threadBuffer,
  threadParts,
} from "../shm/ring_channel_layout.ts";
import { ringCapacity } from "../shm/ring.ts";
import { type ChannelParts, RingChannel, type ShmHandle } from "../shm/ring_channel.ts";
import { checkName, SharedMemory } from "../shm/segment.ts";
import { type Capabilities, type Channel, messageIterator } from "./channel.ts";

export { channelSize } from "../shm/ring_channel_layout.ts";
export { connect, listen, type ShmConnectOptions, ShmListener, type ShmListenOptions } from "./shm_listener.ts";
export type { ShmHandle } from "../shm/ring_channel.ts";
export { ReceiveLoan, SendLoan } from "../shm/loan.ts";
export type { IdleStrategy } from "../shm/idle.ts";
export * from "./shm_mpsc.ts";
export * from "./shm_pubsub.ts";

const DEFAULT_CAPACITY = 1 << 20;

/** Options of the shm channel. */
export interface ShmOptions {
  /** Data bytes of each ring (rounded up to a power of two, at least 64); 1 MiB by default. create/pair only. */
  capacity?: number;
  /** Largest message, at most `capacity - 8`; the ring's limit by default. */
  maxMessage?: number;
  /**
   * How a side waits when there is nothing to receive (or no room): `"spin-then-park"` (the default: spin up to
   * `spin` microseconds, adapting to whether spinning pays, then sleep until the peer rings), `"park"` (never spin)
   * or `"spin"` (never sleep: a core while waiting). See the idle strategies in docs/performance.md.
   */
  idle?: IdleStrategy;
  /** Microseconds to spin at most before sleeping (with `idle: "spin-then-park"`); 50 by default. */
  spin?: number;
  /** Aborts waiting for the peer (create) or for the segment (open). */
  signal?: AbortSignal;
  /** open only: milliseconds to wait for the creator's segment to appear; 0 (the default) fails at once. */
  wait?: number;
  /** create only: permission bits of the segment; 0o600 by default. */
  mode?: number;
}

/**
 * One end of a shared-memory channel.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 4096 });
 * const b: shm.ShmChannel = shm.fromHandle(handle);
 * // The hot-loop forms: no promise, no wait.
 * let sent = 0;
 * while (a.trySend(new Uint8Array([sent]))) sent++; // until the ring is full
 * let received = 0;
 * while (b.tryReceive() !== undefined) received++;
 * console.log(sent === received, sent > 100); // true true
 * console.log(a.handle !== undefined); // true: a thread channel, which another worker can rebuild
 * await a.close();
 * await b.close();
 * ```
 */
export class ShmChannel extends RingChannel implements Channel {
  readonly capabilities: Capabilities;

  /** @internal Use `shm.create`, `shm.open`, `shm.pair` or `shm.fromHandle`. */
  constructor(parts: ChannelParts, handle?: ShmHandle) {
    super(parts, handle);
    const maxMessage = parts.out.maxMessage;
    this.capabilities = { ordered: true, reliable: true, maxMessage, crossHost: false, datagram: false };
  }

  /** Iterates received messages until the channel ends. */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return messageIterator(this);
  }
}

/**
 * Creates the segment `name` holding a channel and waits for a peer to `open` it. Once the peer attached, the name
 * is removed (so nothing is left in /dev/shm if either process dies later); the mapping lives on.
 *
 * @throws {AlreadyExistsError} when the name exists.
 *
 * @example
 * ```ts
 * import { runtime, runtimeArgv, shm } from "ipckit";
 * const rt = await runtime();
 * const [role, name] = rt.args();
 * if (role === "child") {
 *   await using parent = await shm.open(name!, { wait: 10_000 });
 *   for await (const message of parent) await parent.send(message.reverse()); // until the parent closes
 * } else {
 *   const segment = `/ipckit-calc-${rt.pid}`;
 *   const argv = [...runtimeArgv("bun", rt.fromFileUrl(import.meta.url)), "child", segment];
 *   const child = rt.spawn(argv, { stdio: "inherit" });
 *   // Waits for the child to open it, then removes the name: nothing is left in /dev/shm after a crash.
 *   await using channel = await shm.create(segment, { capacity: 1 << 16, signal: AbortSignal.timeout(10_000) });
 *   await channel.send(new Uint8Array([1, 2, 3]));
 *   console.log(await channel.receive()); // Uint8Array [3, 2, 1], from a Bun process
 *   await channel.close();
 *   await child.exited;
 * }
 * ```
 */
export async function create(name: string, options: ShmOptions = {}): Promise<ShmChannel> {
  checkName(name);
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  spinOption(options.spin);
  idleOption(options.idle);
  checkMaxMessage(options.maxMessage, capacity);
  const [ffi, rt] = await Promise.all([native(), runtime()]);
  const segment = await SharedMemory.create(name, {
    size: channelSize(capacity),
    ...(options.mode === undefined ? {} : { mode: options.mode }),
  });
  let unlinked = false;
  const listener = await Doorbell.listen(rt);
  try {
    const { peer, bell } = await awaitOpener(ffi, segment, capacity, options.signal, listener?.path);
    segment.unlink();
    unlinked = true;
    const doorbell = bell && listener
      ? await listener.accepted(peer.id, () => alive(peer.id, peer.tag, ffi), options.signal)
      : undefined;
    return new ShmChannel(processParts(ffi, segment, 0, peer, options, doorbell, rt.availableCpus()));
  } catch (e) {
    if (!unlinked) segment.unlink();
    segment.close();
    throw e;
  } finally {
    await listener?.close();
  }
}

/**
 * Opens the channel a peer created at `name`.
 *
 * @throws {NotFoundError} when there is no such segment (after `wait` milliseconds).
 * @throws {AlreadyExistsError} when the channel already has its peer.
 *
 * @example
 * ```ts
 * import { NotFoundError, runtime, shm } from "ipckit";
 * const name = `/ipckit-late-${(await runtime()).pid}`;
 * try {
 *   await shm.open(name); // wait 0 (the default): fails at once when nobody created it
 * } catch (e) {
 *   console.log(e instanceof NotFoundError); // true
 * }
 * const opening = shm.open(name, { wait: 5000 }); // retries until the creator is there
 * const created = await shm.create(name);
 * const opened = await opening;
 * await opened.send(new Uint8Array([1]));
 * console.log(await created.receive()); // Uint8Array [1]
 * await opened.close();
 * await created.close();
 * ```
 */
export async function open(name: string, options: ShmOptions = {}): Promise<ShmChannel> {
  checkName(name);
  spinOption(options.spin);
  idleOption(options.idle);
  const wait = options.wait ?? 0;
  if (!(wait >= 0)) throw new RangeError(`Cannot open shm channel "${name}": wait must be >= 0 milliseconds`);
  const [ffi, rt] = await Promise.all([native(), runtime()]);
  const segment = await openLaidOut(name, wait, options.signal);
  let doorbell: Doorbell | undefined;
  try {
    // Connect the doorbell before attaching: once attached, the creator waits for it. Without one (no path, or
    // the connection failed), both sides wake each other with futexes.
    const path = bellPath(segment);
    if (path !== undefined) doorbell = await Doorbell.connect(rt, path, rt.pid).catch(() => undefined);
    const peer = attachOpener(ffi, segment, name, doorbell !== undefined);
    return new ShmChannel(processParts(ffi, segment, 1, peer, options, doorbell, rt.availableCpus()));
  } catch (e) {
    doorbell?.close();
    segment.close();
    throw e;
  }
}

/**
 * A channel between threads over a SharedArrayBuffer: returns this end and the handle of the other end. Post the
 * handle to a Worker and rebuild it there with {@linkcode fromHandle} (once, in one place).
 *
 * @example
 * ```ts
 * import { runtime, shm } from "ipckit";
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * if (parent !== null) {
 *   // In the worker thread (this same module): rebuild the other end and echo one message.
 *   parent.onMessage(async (handle) => {
 *     const channel = shm.fromHandle(handle as shm.ShmHandle);
 *     await channel.send(await channel.receive());
 *     await channel.close();
 *   });
 * } else {
 *   const [here, there] = shm.pair({ capacity: 64 * 1024 });
 *   const worker = rt.worker(new URL(import.meta.url));
 *   worker.postMessage(there);
 *   await here.send(new TextEncoder().encode("to the worker and back"));
 *   console.log(new TextDecoder().decode(await here.receive())); // "to the worker and back"
 *   await here.close();
 *   await worker.terminate();
 * }
 * ```
 */
export function pair(options: ShmOptions = {}): [ShmChannel, ShmHandle] {
  const capacity = ringCapacity(options.capacity ?? DEFAULT_CAPACITY);
  const spin = spinOption(options.spin);
  const idle = idleOption(options.idle);
  checkMaxMessage(options.maxMessage, capacity);
  const buffer = threadBuffer(capacity);
  const mine: ShmHandle = { buffer, side: 0, spin, idle };
  return [fromHandle(mine, options.maxMessage), { buffer, side: 1, spin, idle }];
}

/**
 * Rebuilds a thread channel end from its handle.
 *
 * @throws {ProtocolError} when the buffer holds no channel.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [here, handle] = shm.pair({ capacity: 4096 });
 * const there = shm.fromHandle(handle); // usually in another worker, from a posted handle (see pair)
 * await there.send(new Uint8Array([9]));
 * console.log(await here.receive()); // Uint8Array [9]
 * await here.close();
 * await there.close();
 * ```
 */
export function fromHandle(handle: ShmHandle, maxMessage?: number): ShmChannel {
  if (!(handle?.buffer instanceof SharedArrayBuffer) || (handle.side !== 0 && handle.side !== 1)) {
    throw new TypeError("Cannot rebuild a shm channel: the handle needs a SharedArrayBuffer and a side of 0 or 1");
  }
  return new ShmChannel(threadParts(handle, maxMessage), handle);
}
