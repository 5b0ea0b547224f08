/**
 * The heavy half of an asymmetric fence between processes: membarrier(2) with `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
 *
 * JavaScript has one ordered store, `Atomics.store`, and it is sequentially consistent: on x86-64 an `xchg`, which
 * waits until every earlier store of the CPU has reached its cache. A producer that publishes a message with it
 * waits, per message, for the cache line it just wrote to come back from the consumer's CPU (the consumer read it
 * a moment ago). A plain store is a release on x86-64 (stores are seen in program order there), and costs nothing:
 * the line comes back while the producer goes on. C publishes this way (`memory_order_release`, a plain `mov`).
 *
 * What the plain store loses is the order against the producer's next load: the check whether the consumer
 * announced that it sleeps. A consumer that announces its sleep and then looks at the ring a last time could miss a
 * message still in the producer's store buffer, while the producer misses the announcement: a lost wake-up. The
 * fix is folly's asymmetric fence: the side that is about to sleep (rare) pays for both. Between its announcement and
 * its last look, the consumer calls membarrier(2), which runs a full memory barrier on every CPU that runs a thread
 * of a process that registered for it, so the producer's buffered stores are visible before the last look, or the
 * producer's check comes after the barrier and sees the announcement. The barrier is an interrupt to each such CPU:
 * 0.5 us here with none, 17 us with one (this machine is a VM), which is why a producer publishes plainly only while
 * its consumer stays awake (`Ring.takeConsumerSleeping`).
 *
 * Used only on x86-64 (on arm64 a plain store is not a release) and only when this process could register; a
 * consumer that can fence says so in its ring's flags, and a producer publishes plainly only to such a consumer
 * (`shm/ring.ts`). `tests/fence_model.test.ts` checks the protocol on a model of x86-64's memory.
 *
 * @module
 */
import { arch } from "node:os";
import type { Native } from "../ffi/native.ts";

/** membarrier(2)'s syscall number (x86-64; the only architecture this is used on). */
const SYS_membarrier = 324;
const MEMBARRIER_CMD_QUERY = 0;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED = 1 << 2;

/** The process's answer: undefined before the first ask, null when it cannot fence. */
let fence: (() => boolean) | null | undefined;

/**
 * The heavy fence of this process (registering it for the fences of others on the first call), or undefined when
 * plain publication is not safe here: not x86-64, a kernel without expedited global membarrier (before 4.16), or a
 * seccomp filter that refuses it. `IPCKIT_STRICT_PUBLISH=1` in the environment turns it off (every publication then
 * is an `Atomics.store`).
 */
export function processFence(ffi: Native): (() => boolean) | undefined {
  if (fence === undefined) fence = makeFence(ffi, arch(), strictFromEnv()) ?? null;
  return fence ?? undefined;
}

/** {@linkcode processFence} made anew, for `cpuArch` (`os.arch()`), or none when `strict`. */
export function makeFence(ffi: Native, cpuArch: string, strict: boolean): (() => boolean) | undefined {
  if (cpuArch !== "x64" || strict) return undefined;
  const call = (cmd: number) => Number(ffi.call.syscall(SYS_membarrier, cmd, 0, 0, null, null, 0));
  const supported = call(MEMBARRIER_CMD_QUERY);
  const needed = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
  if (supported < 0 || (supported & needed) !== needed) return undefined;
  if (call(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) !== 0) return undefined;
  // Once registered it fails only when the kernel cannot allocate its CPU mask (ENOMEM): false then, and the caller
  // must not sleep on the look that follows.
  return () => call(MEMBARRIER_CMD_GLOBAL_EXPEDITED) === 0;
}

function strictFromEnv(): boolean {
  try {
    return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env
      ?.IPCKIT_STRICT_PUBLISH === "1";
  } catch {
    return false; // Deno without --allow-env
  }
}
