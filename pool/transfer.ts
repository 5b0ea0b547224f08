/**
 * Transfer lists (`RunOptions.transfer`): the ArrayBuffers a task moves to its worker instead of copying.
 *
 * Worker threads talk to the master over a shared-memory ring, which copies bytes; transferred memory needs the
 * thread's own message port. So `run()` moves the buffers at once (a structured clone of the arguments with the
 * buffers transferred: the caller's are detached, nothing is copied), the task waits in the queue with them, and when
 * it goes to a thread the arguments are posted to the thread (transferred again) and the call over the ring carries
 * only their number (`TRANSFERRED` in `pool/worker.ts`, which waits for them if the call came first). A worker
 * process gets the arguments over its channel like any others (copied), the caller's buffers detached all the same.
 *
 * @module
 */

/** The arguments of a task with a transfer list, moved out of the caller's hands: the clone, and its buffers. */
export interface Moved {
  readonly args: unknown[];
  readonly buffers: ArrayBuffer[];
}

/**
 * Checks `transfer` and moves its buffers: the caller's are detached when this returns, the clone holds them.
 *
 * @throws {TypeError} for a list that is not an array of distinct, attached ArrayBuffers (a SharedArrayBuffer, a
 * typed array, the same buffer twice, one detached already): the buffers stay the caller's. Or for arguments a
 * structured clone cannot copy (a function): Deno has detached the listed buffers by then.
 */
export function moveTransfer(args: unknown[], transfer: unknown): Moved {
  if (!Array.isArray(transfer)) {
    throw new TypeError(`Cannot run a task with transfer ${describe(transfer)}: it must be an array of ArrayBuffers`);
  }
  const seen = new Map<ArrayBuffer, number>();
  for (let i = 0; i < transfer.length; i++) {
    const b: unknown = transfer[i];
    if (typeof SharedArrayBuffer === "function" && b instanceof SharedArrayBuffer) {
      throw new TypeError(
        `Cannot transfer item ${i}, a SharedArrayBuffer: it is shared, not moved (pass it in the arguments, and not ` +
          "in transfer)",
      );
    }
    if (ArrayBuffer.isView(b)) {
      throw new TypeError(
        `Cannot transfer item ${i}, a ${b.constructor.name}: transfer takes ArrayBuffers (give its .buffer; the whole ` +
          "buffer moves)",
      );
    }
    if (!(b instanceof ArrayBuffer)) {
      throw new TypeError(`Cannot transfer item ${i}, ${describe(b)}: transfer takes ArrayBuffers only`);
    }
    const first = seen.get(b);
    if (first !== undefined) {
      throw new TypeError(`Cannot transfer the same ArrayBuffer twice (items ${first} and ${i})`);
    }
    seen.set(b, i);
    if (detached(b)) throw new TypeError(`Cannot transfer item ${i}: the ArrayBuffer is detached (moved already)`);
  }
  try {
    return structuredClone({ args, buffers: transfer as ArrayBuffer[] }, { transfer: transfer as ArrayBuffer[] });
  } catch (e) {
    throw new TypeError(`Cannot run a task with transfer: its arguments cannot be cloned (${(e as Error)?.message})`, {
      cause: e,
    });
  }
}

/** Whether `b` was transferred away (Node 20 has no `ArrayBuffer.prototype.detached`: a view on it throws). */
function detached(b: ArrayBuffer): boolean {
  const flag = (b as { detached?: boolean }).detached;
  if (typeof flag === "boolean") return flag;
  if (b.byteLength > 0) return false;
  try {
    new Uint8Array(b);
    return false;
  } catch {
    return true;
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (typeof v === "object") return `a ${(v as object).constructor?.name ?? "object"}`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}
