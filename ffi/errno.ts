/**
 * errno values (Linux; macOS where they differ) and their mapping to ipckit's error classes, in one place.
 *
 * @module
 */
import {
  AlreadyExistsError,
  IpcError,
  MessageTooLargeError,
  NotFoundError,
  PermissionError,
  TimeoutError,
  UnsupportedError,
} from "../errors.ts";

const LINUX: Record<string, number> = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EROFS: 30,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOLCK: 37,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENOMSG: 42,
  EIDRM: 43,
  EOVERFLOW: 75,
  ENOTSOCK: 88,
  EDESTADDRREQ: 89,
  EMSGSIZE: 90,
  EPROTOTYPE: 91,
  EOPNOTSUPP: 95,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ECONNRESET: 104,
  ENOBUFS: 105,
  EISCONN: 106,
  ENOTCONN: 107,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  EDQUOT: 122,
};

const NAMES = new Map(Object.entries(LINUX).map(([k, v]) => [v, k]));

/** The numeric value of an errno name on Linux. */
export const ERRNO: Readonly<Record<string, number>> = LINUX;

/** The symbolic name of an errno value (`"ENOENT"`), or `"E<n>"` when unknown. */
export function errnoName(errno: number): string {
  return NAMES.get(errno) ?? `E${errno}`;
}

const TEXT: Record<string, string> = {
  EPERM: "operation not permitted",
  ENOENT: "it does not exist",
  EACCES: "permission denied",
  EEXIST: "it already exists",
  EINVAL: "invalid argument",
  ENAMETOOLONG: "the name is too long",
  ENOSPC: "no space left (or a system limit was reached)",
  EMFILE: "too many open files in this process",
  ENFILE: "too many open files in the system",
  ENOMEM: "out of memory",
  ENOSYS: "not implemented on this system",
  EOPNOTSUPP: "not supported",
  ECONNREFUSED: "nothing is listening there",
  EPROTOTYPE: "the socket there is of another type",
  ENOTSOCK: "it is not a socket",
  EOVERFLOW: "the value would overflow its maximum",
  EROFS: "the file system is read-only",
  EDQUOT: "the disk quota is exceeded",
  ELOOP: "too many levels of symbolic links",
  ENOBUFS: "no buffer space available",
  EBUSY: "it is busy",
  EXDEV: "it is on another file system",
};

/**
 * Builds the ipckit error for a failed call: `Cannot <what>: <why>`, with the class that fits the errno.
 *
 * @example
 * ```ts
 * throw errnoError(2, 'create FIFO "/tmp/x/y"'); // NotFoundError: Cannot create FIFO "/tmp/x/y": it does not exist
 * ```
 */
export function errnoError(errno: number, what: string): IpcError {
  const code = errnoName(errno);
  const message = `Cannot ${what}: ${TEXT[code] ?? code}`;
  switch (code) {
    case "ENOENT":
      return new NotFoundError(message, { code });
    case "EEXIST":
    case "EADDRINUSE":
      return new AlreadyExistsError(message, { code });
    case "EACCES":
    case "EPERM":
      return new PermissionError(message, { code });
    case "ETIMEDOUT":
      return new TimeoutError(message, { code });
    case "EMSGSIZE":
      return new MessageTooLargeError(message, -1, -1, { code });
    case "ENOSYS":
    case "EOPNOTSUPP":
      return new UnsupportedError(message, { code });
    default:
      return new IpcError(message, { code });
  }
}
