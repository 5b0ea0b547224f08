/**
 * An event, the "thread signal": `set()` lets waiters through, `reset()` closes it again.
 *
 * - manual reset (the default): once set, every `wait()` passes until `reset()`;
 * - auto reset: `set()` lets exactly one waiter through and the event closes again behind it (if nobody waits,
 *   the next `wait()` passes). Several `set()` calls before anyone waits coalesce into one.
 *
 * Layout (8 bytes): word 0 is the state (0 clear, 1 set); word 1 the mode (0 until first use, then 1 manual, 2 auto;
 * every process must place it with the same mode).
 *
 * @module
 */
import type { SharedMemory } from "../shm/segment.ts";
import { type SyncHandle, SyncPrimitive, type WaitOptions } from "./primitive.ts";
import { fromHandle, placeIn, type Steps, words } from "./words.ts";

const STATE = 0;
const MODE = 1;

/** Options of {@linkcode Event}. */
export interface EventOptions {
  /** `set()` releases one waiter and the event clears again behind it. */
  autoReset?: boolean;
}

/**
 * An event. See the module doc.
 *
 * @example
 * ```ts
 * import { Event, runtime, type SyncHandle } from "ipckit";
 * const rt = await runtime();
 * const parent = rt.parentPort();
 * if (parent !== null) {
 *   // A worker thread (this same module): block until the main thread says go.
 *   parent.onMessage((handle) => {
 *     const go = Event.from(handle as SyncHandle);
 *     go.waitSync({ timeout: 10_000 });
 *     parent.postMessage("started");
 *   });
 * } else {
 *   const go = new Event(); // manual reset: once set, every wait passes until reset()
 *   const worker = rt.worker(new URL(import.meta.url));
 *   const started = new Promise((resolve) => worker.onMessage(resolve));
 *   worker.postMessage(go.handle);
 *   go.set();
 *   console.log(await started, go.isSet); // "started" true
 *   go.reset();
 *   console.log(go.isSet); // false
 *   await worker.terminate();
 * }
 * ```
 */
export class Event extends SyncPrimitive {
  /** Bytes an Event takes in shared memory. */
  static readonly BYTES = 8;
  readonly #w = words(this);
  readonly autoReset: boolean;

  /** A new, clear Event on its own SharedArrayBuffer. */
  constructor(options: EventOptions = {}) {
    super("Event", Event.BYTES);
    // Placed words that are in use already have a mode: it holds unless the options ask for one.
    const mode = Atomics.load(this.#w.i32, this.#w.base + MODE);
    this.autoReset = mode !== 0 && options.autoReset === undefined ? mode === 2 : options.autoReset ?? false;
    this.#w.agree(MODE, this.autoReset ? 2 : 1, "place an Event", "mode");
  }

  /**
   * Rebuilds an Event in another worker from `event.handle` (its mode comes along).
   *
   * @example
   * ```ts
   * import { Event } from "ipckit";
   * const turn = new Event({ autoReset: true });
   * const same = Event.from(turn.handle!); // the mode comes along
   * turn.set();
   * await same.wait({ timeout: 1000 }); // takes the one pass...
   * console.log(turn.isSet); // false: ...and the event closed behind it
   * ```
   */
  static from(handle: SyncHandle): Event {
    return fromHandle("Event", Event.BYTES, handle, () => new Event());
  }

  /**
   * The Event at `offset` (a multiple of 8) of a shared memory segment or SharedArrayBuffer.
   *
   * @throws {RangeError} when it was placed there before with the other mode.
   *
   * @example
   * ```ts
   * import { Event, runtime, SharedMemory } from "ipckit";
   * const name = `/ipckit-ready-${(await runtime()).pid}`;
   * using segment = await SharedMemory.create(name, { size: 4096 });
   * try {
   *   const ready = Event.in(segment, 0); // every process: same offset, same mode
   *   const seen = Event.in(segment, 0);
   *   ready.set();
   *   await seen.wait({ timeout: 1000 });
   *   console.log(seen.isSet); // true: manual reset keeps it set
   * } finally {
   *   segment.unlink();
   * }
   * ```
   */
  static in(memory: SharedMemory | SharedArrayBuffer, offset: number, options: EventOptions = {}): Event {
    return placeIn("Event", Event.BYTES, memory, offset, () => new Event(options));
  }

  /** Whether the event is set (a snapshot). */
  get isSet(): boolean {
    return Atomics.load(this.#w.i32, this.#w.base + STATE) === 1;
  }

  /** Sets the event: wakes every waiter (manual reset) or one (auto reset). */
  set(): void {
    const { i32, base } = this.#w;
    if (Atomics.exchange(i32, base + STATE, 1) === 1 && this.autoReset) return;
    this.#w.waiter.wake(base + STATE, this.autoReset ? 1 : undefined);
  }

  /** Clears the event. */
  reset(): void {
    Atomics.store(this.#w.i32, this.#w.base + STATE, 0);
  }

  #pass(): boolean {
    const { i32, base } = this.#w;
    return this.autoReset
      ? Atomics.compareExchange(i32, base + STATE, 1, 0) === 1
      : Atomics.load(i32, base + STATE) === 1;
  }

  /** Waits until the event is set (and, in auto-reset mode, takes it), without blocking the event loop. */
  async wait(options?: WaitOptions): Promise<void> {
    if (!this.#pass()) await this.#w.waitAsync(this.#waitSteps(), options, "wait for an Event");
  }

  /** The blocking form of `wait()`, for workers. */
  waitSync(options?: { timeout?: number }): void {
    if (!this.#pass()) this.#w.waitSync(this.#waitSteps(), options, "wait for an Event");
  }

  *#waitSteps(): Steps<void> {
    while (!this.#pass()) yield { index: STATE, value: 0 };
  }
}
