/**
 * The doorbell of a shared-memory channel between processes: a Unix stream connection between the two processes,
 * which each event loop already polls, and on which one side writes a byte only when the other announced that it
 * sleeps. A sleeping side is then one hop from the ring (the kernel wakes its event loop), where a futex wake takes
 * three (the kernel wakes a helper thread, the helper thread wakes the event loop, the loop runs the callback) and
 * each hop costs tens of microseconds when the CPUs are busy.
 *
 * The bell only wakes: what happened is always read from the ring and its flags, so a ring that comes late, twice
 * or from nobody costs one look. When the connection ends (the peer closed or died), waits fall back to sleeping
 * their whole time (at most 100 ms): the caller's flag and liveness checks end them.
 *
 * @module
 */
import { onAbort } from "../async/mod.ts";
import { ClosedError } from "../errors.ts";
import type { ByteStream, Runtime, Server } from "../runtimes/runtime.ts";

const ONE = new Uint8Array([1]);
/** The longest socket path the channel's header holds (Linux's sun_path less its NUL). */
export const MAX_PATH = 107;

/** One side's end of a doorbell connection: hears its own bell, rings the peer's. */
export class Doorbell {
  readonly #stream: ByteStream;
  readonly #wakers = new Set<() => void>();
  /** The connection ended: no ring will come any more. */
  #silent = false;

  /**
   * Takes over `stream` (a connected Unix stream socket), which no longer keeps the process alive by itself. With
   * `hello`, the first four bytes that arrive are the connecting process's pid (little-endian), handed to it.
   * While a wait is pending, the stream keeps the process alive (`ref`).
   */
  constructor(stream: ByteStream, hello?: (pid: number) => void) {
    this.#stream = stream;
    stream.unref?.();
    let greeting = hello === undefined ? undefined : new Uint8Array(0);
    stream.start({
      data: (chunk) => {
        if (greeting !== undefined) {
          const all = new Uint8Array(greeting.length + chunk.length);
          all.set(greeting);
          all.set(chunk, greeting.length);
          if (all.length < 4) return void (greeting = all);
          greeting = undefined;
          hello!(new DataView(all.buffer).getUint32(0, true));
          if (all.length === 4) return;
        }
        this.#wakeAll();
      },
      end: () => {
        this.#silent = true;
        this.#wakeAll();
      },
    });
  }

  /** Connects to the bell at `path` and says who this is (`pid`). */
  static async connect(rt: Runtime, path: string, pid: number): Promise<Doorbell> {
    const stream = await rt.connectUnix(path);
    const hello = new Uint8Array(4);
    new DataView(hello.buffer).setUint32(0, pid, true);
    stream.write(hello)?.catch(() => {});
    return new Doorbell(stream);
  }

  /**
   * Listens for the peer's bell connection in a fresh private directory (only this user can connect). Resolves
   * undefined when no Unix socket can be made there (the channel then wakes through futexes).
   */
  static async listen(rt: Runtime): Promise<DoorbellListener | undefined> {
    let dir: string | undefined;
    try {
      dir = await rt.makeTempDir("ipckit-shm-");
      const path = `${dir}/bell`;
      if (new TextEncoder().encode(path).byteLength > MAX_PATH) {
        await rt.removeDir(dir);
        return undefined;
      }
      const listener = new DoorbellListener(rt, dir, path);
      await listener.start();
      return listener;
    } catch {
      if (dir !== undefined) await rt.removeDir(dir).catch(() => {});
      return undefined;
    }
  }

  /** True once the connection ended: the peer closed its end, or died (the kernel closes a dead process's). */
  get silent(): boolean {
    return this.#silent;
  }

  /** Rings the peer's bell: one byte on the connection (nothing once it ended). */
  ring(): void {
    if (this.#silent) return;
    try {
      this.#stream.write(ONE)?.catch(() => {});
    } catch {
      // The connection is gone: the peer's flags or liveness say why.
    }
  }

  /**
   * Resolves when the bell rings, after `ms` (Infinity: no time limit), or when `signal` aborts; never rejects.
   * While a wait is pending the connection keeps the process alive. Once the connection ended, a wait lasts its
   * whole time (at most `silentMs`): the caller's own checks end it.
   */
  wait(ms: number, signal?: AbortSignal, silentMs = 100): Promise<void> {
    if (ms === Infinity && signal === undefined && !this.#silent) {
      // The usual wait (no limit, no signal): only a ring or the end settles it, and both go through `#wakeAll`.
      return new Promise((resolve) => {
        if (this.#wakers.size === 0) this.#stream.ref?.();
        this.#wakers.add(resolve);
      });
    }
    return new Promise((resolve) => {
      let unlisten = () => {};
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        if (timer !== undefined) clearTimeout(timer);
        if (this.#wakers.delete(done) && this.#wakers.size === 0) this.#stream.unref?.();
        unlisten();
        resolve();
      };
      // A timer per wait costs more than the wake-up itself on a busy machine (Node re-arms its timer list): only
      // a deadline, or a silent bell, gets one.
      const limit = this.#silent ? Math.min(ms, silentMs) : ms;
      if (limit !== Infinity) timer = setTimeout(done, Math.max(0, limit));
      if (!this.#silent) {
        if (this.#wakers.size === 0) this.#stream.ref?.();
        this.#wakers.add(done);
      }
      unlisten = onAbort(signal, done);
    });
  }

  /** Closes the connection (the peer's waits wake) and wakes this side's waits. Idempotent. */
  close(): void {
    this.#silent = true;
    this.#stream.close();
    this.#wakeAll();
  }

  #wakeAll(): void {
    if (this.#wakers.size === 0) return;
    const wakers = [...this.#wakers];
    this.#wakers.clear();
    this.#stream.unref?.();
    for (const wake of wakers) wake();
  }
}

/** The creator's side of setting a doorbell up: a listener that keeps each connection by the pid it says. */
export class DoorbellListener {
  readonly path: string;
  readonly #rt: Runtime;
  readonly #dir: string;
  #server: Server | undefined;
  readonly #bells = new Map<number, Doorbell>();
  /** Every connection not handed out yet, said who it is or not: closed with the listener. */
  readonly #open = new Set<Doorbell>();
  #arrived = () => {};

  /** @internal Use {@linkcode Doorbell.listen}. */
  constructor(rt: Runtime, dir: string, path: string) {
    this.#rt = rt;
    this.#dir = dir;
    this.path = path;
  }

  /** @internal */
  async start(): Promise<void> {
    this.#server = await this.#rt.listenUnix(this.path, (stream) => {
      const bell = new Doorbell(stream, (pid) => {
        this.#bells.get(pid)?.close();
        this.#bells.set(pid, bell);
        this.#arrived();
      });
      this.#open.add(bell);
    });
  }

  /**
   * The bell of the process `pid`, once it connected and said so; checks `alive()` every 100 ms meanwhile.
   *
   * @throws {ClosedError} when the process died first; the signal's reason when it aborts.
   */
  async accepted(pid: number, alive: () => boolean, signal: AbortSignal | undefined): Promise<Doorbell> {
    for (;;) {
      const bell = this.#bells.get(pid);
      if (bell !== undefined) {
        this.#bells.delete(pid);
        this.#open.delete(bell);
        return bell;
      }
      signal?.throwIfAborted();
      if (!alive()) throw new ClosedError("Cannot set up the shm channel: its peer died before its doorbell rang");
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 100);
        const unlisten = onAbort(signal, done);
        this.#arrived = done;
        function done() {
          clearTimeout(timer);
          unlisten();
          resolve();
        }
      });
    }
  }

  /**
   * Stops listening, closes the connections nobody took (also one that never said who it is), and removes the
   * socket and its directory.
   */
  async close(): Promise<void> {
    for (const bell of this.#open) bell.close();
    this.#open.clear();
    this.#bells.clear();
    await this.#server?.close().catch(() => {});
    await this.#rt.removeDir(this.#dir).catch(() => {});
  }
}
