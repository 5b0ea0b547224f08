/**
 * Readiness of file descriptors that ipckit reaches through libc (Unix datagram sockets), for the whole thread: one
 * off-thread `poll(2)` call over every fd that something waits on, instead of one blocked call per fd.
 *
 * Why: an off-thread call holds a thread of a small shared pool for as long as it blocks (libuv's pool, 4 threads
 * on Node and fewer on Bun, also runs koffi's `.async` calls, Node's fs and dns). One blocked `recvfrom` per idle
 * socket starved every other off-thread call of the process and could deadlock it. Here any number of waiting fds
 * cost one pool thread, and only while something waits; each poll lasts at most {@linkcode POLL_MS}, so the thread
 * goes back to the pool regularly and the process can always exit (Node's `process.exit()` waits for a pending
 * koffi call).
 *
 * How: {@linkcode Poller.wait} registers an fd and the events awaited; on the next microtask the poller starts one
 * `poll(2)` over all registered fds plus an eventfd. An fd registered while a poll runs wakes it through the
 * eventfd, so it joins at once. When the poll returns, the waits it found ready resolve with `true` and their owners
 * do the non-blocking I/O on the main thread (one thread hop per idle wake). `cancel()` resolves a wait with
 * `false` at once and never waits for the pool thread. Readiness is a hint: owners always retry their
 * non-blocking call and wait again on EAGAIN.
 *
 * @module
 */
import { EFD_CLOEXEC, EFD_NONBLOCK, POLLERR, POLLHUP, POLLIN, POLLNVAL } from "../ffi/constants.ts";
import { errnoError } from "../ffi/errno.ts";
import type { Native } from "../ffi/native.ts";

/** The longest single poll, in milliseconds: the pool thread is returned at least this often. */
export const POLL_MS = 100;

/** Conditions poll(2) reports whatever was asked: they end any wait (the owner's next call sees the error). */
const ALWAYS = POLLERR | POLLHUP | POLLNVAL;

/** One registered wait. */
export interface FdWait {
  /** Resolves with `true` when the fd may be ready, `false` when cancelled. Never rejects. */
  readonly ready: Promise<boolean>;
  /** Stops waiting: `ready` resolves with `false` now (no effect once settled). */
  cancel(): void;
}

class Entry implements FdWait {
  readonly ready: Promise<boolean>;
  /** Whether the running poll includes this entry. */
  polled = false;
  settle!: (ready: boolean) => void;

  constructor(readonly fd: number, readonly events: number, readonly poller: Poller) {
    this.ready = new Promise((resolve) => (this.settle = resolve));
  }

  cancel(): void {
    this.poller.cancel(this);
  }
}

/** The poller of one thread: see the module doc. Get it with {@linkcode poller}. */
export class Poller {
  #ffi: Native;
  #entries = new Set<Entry>();
  /** The entries of the running poll by pollfd slot (slot 0 is the eventfd); undefined while no poll runs. */
  #slots: Entry[][] | undefined;
  #scheduled = false;
  /** The eventfd was written since the running poll started. */
  #woken = false;
  /** The eventfd, open while anything waits (-1: closed), so that an idle thread holds no fd. */
  #wakeFd = -1;
  /** `struct pollfd[]`: int fd; short events; short revents (8 bytes each). */
  #pollfds = new Int32Array(16);
  /** What a wake adds to the eventfd's count, and where a read resets it. */
  #one = new BigUint64Array([1n]);
  #count = new BigUint64Array(1);

  constructor(ffi: Native) {
    this.#ffi = ffi;
  }

  /** Waits until `fd` is ready for `events` (POLLIN, POLLOUT), an error or hangup shows on it, or `cancel()`. */
  wait(fd: number, events: number): FdWait {
    if (this.#wakeFd < 0) {
      const wakeFd = this.#ffi.call.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
      if (wakeFd < 0) throw errnoError(this.#ffi.errno(), "wait for a socket: create an eventfd");
      this.#wakeFd = wakeFd;
    }
    const entry = new Entry(fd, events, this);
    this.#entries.add(entry);
    if (this.#slots !== undefined) this.#wake();
    else this.#schedule();
    return entry;
  }

  /** @internal `entry.cancel()`. */
  cancel(entry: Entry): void {
    if (!this.#entries.delete(entry)) return;
    entry.settle(false);
    // Its fd is likely about to be closed: let the running poll drop the kernel's reference to it now, and free the
    // pool thread when nothing else waits.
    if (entry.polled) this.#wake();
    else if (this.#slots === undefined) this.#schedule();
  }

  #wake(): void {
    if (this.#woken) return;
    this.#woken = true;
    this.#ffi.call.write(this.#wakeFd, this.#one, 8);
  }

  /** (Re)starts the poll on a microtask, after the owners just settled have registered again. */
  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#start();
    });
  }

  #start(): void {
    if (this.#slots !== undefined) return;
    if (this.#entries.size === 0) {
      if (this.#wakeFd >= 0) this.#ffi.call.close(this.#wakeFd);
      this.#wakeFd = -1;
      return;
    }
    const byFd = new Map<number, Entry[]>();
    for (const entry of this.#entries) {
      entry.polled = true;
      const list = byFd.get(entry.fd);
      if (list) list.push(entry);
      else byFd.set(entry.fd, [entry]);
    }
    const count = byFd.size + 1;
    if (this.#pollfds.length < count * 2) this.#pollfds = new Int32Array(2 ** Math.ceil(Math.log2(count * 2)));
    const pollfds = this.#pollfds;
    const halves = new Int16Array(pollfds.buffer);
    const slots: Entry[][] = [[]];
    pollfds[0] = this.#wakeFd;
    halves[2] = POLLIN;
    halves[3] = 0;
    for (const [fd, list] of byFd) {
      const i = slots.length;
      let events = 0;
      for (const entry of list) events |= entry.events;
      pollfds[2 * i] = fd;
      halves[4 * i + 2] = events;
      halves[4 * i + 3] = 0;
      slots.push(list);
    }
    this.#slots = slots;
    // The array is not touched again until the call returns (a later poll that needs more slots gets a new one).
    this.#ffi.callAsync.poll(pollfds, count, POLL_MS).then(
      (r) => this.#returned(r, halves),
      () => this.#returned(-1, halves),
    );
  }

  #returned(result: number, halves: Int16Array): void {
    const slots = this.#slots!;
    this.#slots = undefined;
    for (const list of slots) for (const entry of list) entry.polled = false;
    if (this.#woken) {
      this.#woken = false;
      this.#ffi.call.read(this.#wakeFd, this.#count, 8); // resets the eventfd's count to 0
    }
    // result < 0 (EINTR, or a failure: errno is not reliable here): every owner retries its non-blocking call,
    // which reports a real error.
    if (result !== 0) {
      for (let i = 1; i < slots.length; i++) {
        const revents = result < 0 ? -1 : halves[4 * i + 3]!;
        if (revents === 0) continue;
        for (const entry of slots[i]!) {
          if ((revents & (entry.events | ALWAYS)) !== 0 && this.#entries.delete(entry)) entry.settle(true);
        }
      }
    }
    this.#schedule();
  }
}

let shared: Poller | undefined;

/** This thread's poller (module state is per thread: each Worker has its own). */
export function poller(ffi: Native): Poller {
  return (shared ??= new Poller(ffi));
}
