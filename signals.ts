/**
 * POSIX signals as notifications between processes: send one to a pid, handle it, or wait for the next one.
 * Signals carry no data and are not a channel: pair them with a transport when a message must go along.
 *
 * Semantics (the same on Deno, Bun and Node, checked by `tests/signals.test.ts`):
 * - **Delivery is asynchronous.** `send()` returns when the kernel accepted the signal; handlers run later, on the
 *   receiver's event loop, never in the middle of other JavaScript.
 * - **Signals coalesce.** A signal that arrives while the same one is still pending is merged with it: ten quick
 *   `send()`s may run the handlers anywhere from once to ten times. The guarantee is "at least once after the
 *   last send": count events with a transport or shared memory, not with signals.
 * - **Handlers run in registration order.** ipckit installs one runtime listener per signal and calls its own
 *   handlers in the order they were added, so the order does not depend on the runtime. A handler that throws does
 *   not stop the others; the first error is rethrown afterwards (an uncaught exception, as with any event).
 * - **Default action.** While at least one handler is installed the runtime's default action (for most signals:
 *   end the process) does not happen; when the last handler is disposed it is restored.
 * - **A handler does not keep the process alive**; `wait()` does, until it settles.
 *
 * Supported: SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2, SIGCHLD, SIGCONT and SIGWINCH can be handled and sent;
 * SIGKILL and SIGSTOP can only be sent (no process can handle them). **SIGUSR1 is refused** with a `RangeError`:
 * Node starts its inspector (a debugger port) when it receives SIGUSR1, and Deno 2.9 was seen to open one on
 * 127.0.0.1:9229 after a few quick SIGUSR1s even with a listener installed. Use SIGUSR2.
 *
 * @example
 * ```ts
 * import { runtime, signals } from "ipckit";
 * const { pid } = await runtime();
 * using _reload = await signals.on("SIGHUP", () => console.log("reloading"));
 * const hangUp = signals.wait("SIGHUP", { timeout: 10_000 }); // keeps the process alive meanwhile
 * await signals.send(pid, "SIGHUP"); // usually from elsewhere: kill -HUP <pid>
 * await hangUp; // "reloading" was printed first: handlers run in the order they were added
 * ```
 *
 * @module
 */
import { onAbort } from "./async/abort.ts";
import { abortError, IpcError, NotFoundError, PermissionError, TimeoutError } from "./errors.ts";
import { runtime } from "./runtimes/detect.ts";
import type { Runtime, SignalName } from "./runtimes/runtime.ts";

export type { SignalName };

/**
 * Signals that `on()` and `wait()` accept.
 *
 * @example
 * ```ts
 * import { signals } from "ipckit";
 * console.log(signals.HANDLEABLE.includes("SIGUSR2"), signals.HANDLEABLE.includes("SIGKILL")); // true false
 * ```
 */
export const HANDLEABLE: readonly SignalName[] = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGTERM",
  "SIGUSR2",
  "SIGCHLD",
  "SIGCONT",
  "SIGWINCH",
];

/**
 * Signals that `send()` accepts: the handleable ones, SIGKILL and SIGSTOP.
 *
 * @example
 * ```ts
 * import { signals } from "ipckit";
 * console.log(signals.SENDABLE.filter((s) => !signals.HANDLEABLE.includes(s))); // ["SIGKILL", "SIGSTOP"]
 * ```
 */
export const SENDABLE: readonly SignalName[] = [...HANDLEABLE, "SIGKILL", "SIGSTOP"];

/** A signal handler; it receives the signal's name. */
export type SignalHandler = (signal: SignalName) => void;

/** Options of {@linkcode wait}. */
export interface WaitOptions {
  /** Aborts the wait: the promise rejects with the signal's reason (an `AbortError` by default). */
  signal?: AbortSignal;
  /** Gives up after this many milliseconds with a `TimeoutError`. Waits forever by default. */
  timeout?: number;
}

function checkName(name: unknown, allowed: readonly SignalName[], what: string): SignalName {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot ${what} signal ${String(name)}: the name must be a string such as "SIGUSR2"`);
  }
  if (name === "SIGUSR1") {
    throw new RangeError(
      `Cannot ${what} signal SIGUSR1: ipckit refuses it because Node and Deno start their inspector on it; use SIGUSR2`,
    );
  }
  if (!(allowed as readonly string[]).includes(name)) {
    throw new RangeError(`Cannot ${what} signal "${name}": supported are ${allowed.join(", ")}`);
  }
  return name as SignalName;
}

interface Entry {
  fn: SignalHandler;
  active: boolean;
}

interface Slot {
  listener: Disposable;
  entries: Entry[];
}

const slots = new Map<SignalName, Slot>();

function dispatch(name: SignalName): void {
  const slot = slots.get(name);
  if (!slot) return;
  let failure: { error: unknown } | undefined;
  // A snapshot: handlers added during this delivery wait for the next one; removed ones do not run.
  for (const entry of [...slot.entries]) {
    if (!entry.active) continue;
    try {
      entry.fn(name);
    } catch (error) {
      failure ??= { error };
    }
  }
  if (failure) throw failure.error;
}

function add(rt: Runtime, name: SignalName, fn: SignalHandler): Disposable {
  const entry: Entry = { fn, active: true };
  let slot = slots.get(name);
  if (!slot) {
    slot = { listener: rt.onSignal(name, () => dispatch(name)), entries: [] };
    slots.set(name, slot);
  }
  slot.entries.push(entry);
  return {
    [Symbol.dispose]() {
      if (!entry.active) return;
      entry.active = false;
      const current = slots.get(name);
      if (!current) return;
      current.entries = current.entries.filter((e) => e !== entry);
      if (current.entries.length === 0) {
        slots.delete(name);
        current.listener[Symbol.dispose](); // the default action is back
      }
    },
  };
}

/**
 * Calls `handler` each time this process receives `name`, until the returned handle is disposed. The promise
 * settles once the handler is installed, so a signal sent after `await` reaches it.
 *
 * @param name The signal, e.g. `"SIGUSR2"`.
 * @param handler Called with the signal's name, on the event loop.
 * @returns A handle: dispose it to remove the handler (idempotent).
 * @throws {RangeError} for SIGUSR1, SIGKILL, SIGSTOP or an unknown name.
 * @throws {TypeError} when `handler` is not a function.
 *
 * @example
 * ```ts
 * import { runtime, signals } from "ipckit";
 * const { pid } = await runtime();
 * const seen: string[] = [];
 * {
 *   using _h = await signals.on("SIGUSR2", (sig) => seen.push(sig)); // installed once this resolves
 *   const next = signals.wait("SIGUSR2", { timeout: 10_000 }); // a handler alone does not keep the process alive
 *   await signals.send(pid, "SIGUSR2");
 *   await next;
 * } // disposed: the default action of SIGUSR2 is back
 * console.log(seen); // ["SIGUSR2"]
 * ```
 */
export async function on(name: SignalName, handler: SignalHandler): Promise<Disposable> {
  const sig = checkName(name, HANDLEABLE, "handle");
  if (typeof handler !== "function") throw new TypeError(`Cannot handle signal ${sig}: the handler must be a function`);
  return add(await runtime(), sig, handler);
}

/**
 * Sends `name` to the process `pid`.
 *
 * @throws {TypeError} when `pid` is not a number or `name` not a string.
 * @throws {RangeError} when `pid` is not a positive integer, or `name` is not supported (SIGUSR1 is refused).
 * @throws {NotFoundError} when no process has that pid.
 * @throws {PermissionError} when this process may not signal it.
 *
 * @example
 * ```ts
 * import { runtime, signals } from "ipckit";
 * const rt = await runtime();
 * const child = rt.spawn(["sleep", "30"], { stdio: "null" });
 * await signals.send(child.pid, "SIGTERM");
 * console.log(await child.exited); // { code: null, signal: "SIGTERM" }
 * ```
 */
export async function send(pid: number, name: SignalName): Promise<void> {
  if (typeof pid !== "number") throw new TypeError(`Cannot send a signal to pid ${String(pid)}: it must be a number`);
  if (!Number.isSafeInteger(pid) || pid <= 0) {
    // 0 and negative pids address process groups: not supported on purpose.
    throw new RangeError(`Cannot send a signal to pid ${pid}: it must be a positive integer`);
  }
  const sig = checkName(name, SENDABLE, "send");
  const rt = await runtime();
  try {
    rt.kill(pid, sig);
  } catch (cause) {
    // Deno: NotFound/PermissionDenied with the text; Node and Bun: an error with `code`.
    const text = `${(cause as { code?: unknown }).code ?? ""} ${(cause as Error).name} ${(cause as Error).message}`;
    const message = `Cannot send ${sig} to pid ${pid}`;
    if (/ESRCH|NotFound/.test(text)) throw new NotFoundError(`${message}: no such process`, { cause, code: "ESRCH" });
    if (/EPERM|PermissionDenied/.test(text)) {
      throw new PermissionError(`${message}: operation not permitted`, { cause, code: "EPERM" });
    }
    throw new IpcError(`${message}: ${(cause as Error).message}`, { cause });
  }
}

/**
 * Waits for the next delivery of `name` to this process, keeping the process alive meanwhile. The handler is
 * removed when the promise settles (so the default action is back, unless other handlers are installed).
 *
 * @returns The signal's name.
 * @throws {TimeoutError} when `timeout` ran out.
 * @throws The signal's reason (an `AbortError` by default) when `signal` aborts.
 * @throws {RangeError} for a name `on()` refuses.
 *
 * @example
 * ```ts
 * import { runtime, signals } from "ipckit";
 * const { pid } = await runtime();
 * const next = signals.wait("SIGUSR2", { timeout: 10_000 });
 * await signals.send(pid, "SIGUSR2"); // usually another process: kill -USR2 <pid>
 * console.log(await next); // "SIGUSR2"
 * ```
 */
export async function wait(name: SignalName, options: WaitOptions = {}): Promise<SignalName> {
  const sig = checkName(name, HANDLEABLE, "wait for");
  const { signal, timeout } = options;
  if (timeout !== undefined && (typeof timeout !== "number" || Number.isNaN(timeout) || timeout < 0)) {
    throw new RangeError(`Cannot wait for signal ${sig}: timeout must be a number of milliseconds >= 0`);
  }
  if (signal?.aborted) throw abortError(signal);
  const rt = await runtime();
  if (signal?.aborted) throw abortError(signal);
  return await new Promise<SignalName>((resolve, reject) => {
    let handle: Disposable | undefined = undefined;
    let unlisten = (): void => {};
    const done = (error?: unknown): void => {
      clearTimeout(timer);
      clearInterval(keepAlive);
      unlisten();
      handle?.[Symbol.dispose]();
      handle = undefined;
      if (error === undefined) resolve(sig);
      else reject(error);
    };
    const timer = timeout === undefined ? undefined : setTimeout(
      () => done(new TimeoutError(`Cannot wait for signal ${sig}: none came within ${timeout} ms`)),
      timeout,
    );
    // A signal listener alone does not keep the process alive; a timer does.
    const keepAlive = setInterval(() => {}, 2 ** 30);
    handle = add(rt, sig, () => done());
    unlisten = onAbort(signal, () => done(abortError(signal!)));
  });
}
