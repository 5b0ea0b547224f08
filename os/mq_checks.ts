/**
 * The checks of POSIX message queue arguments (names, sizes, modes), the kernel limits that refuse a create (named
 * in the error), and loading libc where it has `mq_open`. The queue handle is `os/mq.ts`; the named-object
 * descriptor (look up, remove, list `/dev/mqueue`) is `os/mq_name.ts`.
 *
 * @module
 */
import { type IpcError, UnsupportedError } from "../errors.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";

/** Linux defaults of /proc/sys/fs/mqueue (what an unprivileged process may use unless an admin raised them). */
export const DEFAULT_LIMITS = { msg_max: 10, msgsize_max: 8192, queues_max: 256 };
/** Limits no process can exceed, privileged or not (include/linux/ipc_namespace.h). */
const HARD_MSGMAX = 65536, HARD_MSGSIZEMAX = 16 * 1024 * 1024;
const { EINVAL, EMFILE, ENOSPC, ENOMEM } = ERRNO as Record<string, number>;

/** Sizes and permission bits of a new queue. */
export interface QueueSizes {
  /** How many messages the queue holds before `send()` waits (mq_maxmsg). */
  maxMessages: number;
  /** The largest message in bytes (mq_msgsize). */
  messageSize: number;
  /** Permission bits of the new queue. Default 0o600. */
  mode?: number;
}

const encoder = new TextEncoder();

/**
 * Checks a queue name: `"/"` then 1 to 254 - `suffix` bytes without `"/"` or NUL (`suffix`: bytes a caller appends).
 *
 * @throws {TypeError} for anything else.
 */
export function checkName(name: unknown, suffix = 0): string {
  if (typeof name !== "string") throw new TypeError(`Cannot use message queue name ${String(name)}: not a string`);
  const bytes = encoder.encode(name).byteLength + suffix;
  if (!name.startsWith("/") || name.indexOf("/", 1) >= 0 || name.includes("\0") || bytes < 2 || bytes > 255) {
    throw new TypeError(
      `Cannot use message queue name "${name}": it must be "/" then 1 to ${254 - suffix} bytes without "/" or NUL`,
    );
  }
  return name;
}

function positive(value: unknown, what: string, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1) {
    throw new RangeError(`Cannot create message queue "${name}": ${what} must be a positive integer, got ${value}`);
  }
  return value;
}

/** The loaded libc, or UnsupportedError where there are no POSIX message queues. */
export async function loadNative(): Promise<Native> {
  const ffi = await native();
  if (typeof ffi.call.mq_open !== "function") {
    throw new UnsupportedError("Cannot use POSIX message queues: this platform has none (macOS lacks mq_open)");
  }
  return ffi;
}

/** The error of a failed mq_open, naming the kernel limit that refused it. */
export function openError(errno: number, what: string, sizes?: { maxMessages: number; messageSize: number }): IpcError {
  const e = errnoError(errno, what);
  const limit = (key: keyof typeof DEFAULT_LIMITS) =>
    `the kernel limit ${
      DEFAULT_LIMITS[key]
    } (/proc/sys/fs/mqueue/${key}, the Linux default; privileged processes may go higher)`;
  let detail: string | undefined;
  if (errno === EINVAL && sizes) {
    const over = [];
    if (sizes.messageSize > HARD_MSGSIZEMAX) {
      over.push(`messageSize ${sizes.messageSize} exceeds the hard kernel limit ${HARD_MSGSIZEMAX} (HARD_MSGSIZEMAX)`);
    } else if (sizes.messageSize > DEFAULT_LIMITS.msgsize_max) {
      over.push(`messageSize ${sizes.messageSize} exceeds ${limit("msgsize_max")}`);
    }
    if (sizes.maxMessages > HARD_MSGMAX) {
      over.push(`maxMessages ${sizes.maxMessages} exceeds the hard kernel limit ${HARD_MSGMAX} (HARD_MSGMAX)`);
    } else if (sizes.maxMessages > DEFAULT_LIMITS.msg_max) {
      over.push(`maxMessages ${sizes.maxMessages} exceeds ${limit("msg_max")}`);
    }
    if (over.length) detail = over.join("; ");
  } else if (errno === EMFILE && sizes) {
    detail = `maxMessages × messageSize (${sizes.maxMessages * sizes.messageSize} bytes plus overhead) with this ` +
      `user's other queues exceeds RLIMIT_MSGQUEUE (\`ulimit -q\`, 819200 bytes by default), or too many open files`;
  } else if (errno === ENOSPC) {
    detail = `the system-wide number of queues reached ${limit("queues_max")}`;
  } else if (errno === ENOMEM) {
    detail = "out of memory for the queue";
  }
  if (detail === undefined) return e;
  e.message = `Cannot ${what}: ${detail}`;
  return e;
}

/** How messages name a queue. */
export function nameOf(name: string): string {
  return `message queue "${name}"`;
}

/** Checks the options of a create: positive sizes, mode 0 to 0o777 (default 0o600). */
export function checkSizes(name: string, options: QueueSizes): QueueSizes {
  if (options === null || typeof options !== "object") {
    throw new TypeError(`Cannot create ${nameOf(name)}: options { maxMessages, messageSize } are required`);
  }
  const mode = options.mode ?? 0o600;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw new RangeError(`Cannot create ${nameOf(name)}: mode must be from 0 to 0o777`);
  }
  return {
    maxMessages: positive(options.maxMessages, "maxMessages", name),
    messageSize: positive(options.messageSize, "messageSize", name),
    mode,
  };
}
