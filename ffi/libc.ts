/**
 * The libc symbols ipckit calls, as data: one table that all three loaders read (Deno.dlopen, bun:ffi, koffi).
 * Adding a call is one line here; nothing else in `ffi/` changes.
 *
 * Types: `i32`/`u32`/`i64`/`u64`/`usize`/`isize` are integers; `pointer` is an address as a JS number (addresses
 * fit in 53 bits on x86-64 and arm64); `buffer` is a Uint8Array (or any TypedArray) passed by address, or null;
 * `void` returns nothing. Strings are passed as NUL-terminated `buffer`s (`Native.cstring`).
 *
 * Variadic C functions (`open`, `shm_open`) are declared with their fixed prototype, which is correct for the
 * x86-64 and arm64 Linux calling conventions.
 *
 * @module
 */

/** An FFI type name in the symbol table. */
export type FfiType = "i32" | "u32" | "i64" | "u64" | "usize" | "isize" | "pointer" | "buffer" | "void";

/** One symbol's signature. */
export interface Signature {
  readonly args: readonly FfiType[];
  readonly returns: FfiType;
  /** Also callable off the main thread (`Native.callAsync`), for calls that block (futex waits). */
  readonly async?: true;
}

/** The symbol table. */
export const LIBC = {
  open: { args: ["buffer", "i32", "u32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
  dup2: { args: ["i32", "i32"], returns: "i32" },
  pipe2: { args: ["buffer", "i32"], returns: "i32" },
  shutdown: { args: ["i32", "i32"], returns: "i32" },
  mkfifo: { args: ["buffer", "u32"], returns: "i32" },
  unlink: { args: ["buffer"], returns: "i32" },
  readlink: { args: ["buffer", "buffer", "usize"], returns: "isize" },
  shm_open: { args: ["buffer", "i32", "u32"], returns: "i32" },
  shm_unlink: { args: ["buffer"], returns: "i32" },
  ftruncate: { args: ["i32", "i64"], returns: "i32" },
  mmap: { args: ["pointer", "usize", "i32", "i32", "i32", "i64"], returns: "pointer" },
  munmap: { args: ["pointer", "usize"], returns: "i32" },
  lseek: { args: ["i32", "i64", "i32"], returns: "i64" },
  kill: { args: ["i32", "i32"], returns: "i32" },
  getpid: { args: [], returns: "i32" },
  getppid: { args: [], returns: "i32" },
  getuid: { args: [], returns: "u32" },
  getcwd: { args: ["buffer", "usize"], returns: "pointer" },
  prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
  // syscall(SYS_futex, uaddr, op, val, timeout, uaddr2, val3): waits and wakes across processes.
  syscall: { args: ["i64", "pointer", "i32", "i32", "buffer", "pointer", "i32"], returns: "i64", async: true },
  clock_gettime: { args: ["i32", "buffer"], returns: "i32" },
  // POSIX message queues (mq_open is variadic: name, oflag, mode, struct mq_attr *).
  mq_open: { args: ["buffer", "i32", "u32", "buffer"], returns: "i32" },
  mq_close: { args: ["i32"], returns: "i32" },
  mq_unlink: { args: ["buffer"], returns: "i32" },
  mq_getattr: { args: ["i32", "buffer"], returns: "i32" },
  mq_timedsend: { args: ["i32", "buffer", "usize", "u32", "buffer"], returns: "i32", async: true },
  mq_timedreceive: { args: ["i32", "buffer", "usize", "buffer", "buffer"], returns: "isize", async: true },
  // System V message queues.
  ftok: { args: ["buffer", "i32"], returns: "i32" },
  msgget: { args: ["i32", "i32"], returns: "i32" },
  msgsnd: { args: ["i32", "buffer", "usize", "i32"], returns: "i32", async: true },
  msgrcv: { args: ["i32", "buffer", "usize", "i64", "i32"], returns: "isize", async: true },
  msgctl: { args: ["i32", "i32", "buffer"], returns: "i32" },
  // POSIX named semaphores (sem_open is variadic: name, oflag, mode, value).
  sem_open: { args: ["buffer", "i32", "u32", "u32"], returns: "pointer" },
  sem_close: { args: ["pointer"], returns: "i32" },
  sem_unlink: { args: ["buffer"], returns: "i32" },
  sem_post: { args: ["pointer"], returns: "i32" },
  sem_trywait: { args: ["pointer"], returns: "i32" },
  sem_timedwait: { args: ["pointer", "buffer"], returns: "i32", async: true },
  sem_getvalue: { args: ["pointer", "buffer"], returns: "i32" },
  // File locks.
  flock: { args: ["i32", "i32"], returns: "i32", async: true },
  // Datagram sockets (AF_UNIX SOCK_DGRAM).
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  bind: { args: ["i32", "buffer", "u32"], returns: "i32" },
  connect: { args: ["i32", "buffer", "u32"], returns: "i32" },
  getsockname: { args: ["i32", "buffer", "buffer"], returns: "i32" },
  setsockopt: { args: ["i32", "i32", "i32", "buffer", "u32"], returns: "i32" },
  getsockopt: { args: ["i32", "i32", "i32", "buffer", "buffer"], returns: "i32" },
  sendto: { args: ["i32", "buffer", "usize", "i32", "buffer", "u32"], returns: "isize" },
  recvfrom: { args: ["i32", "buffer", "usize", "i32", "buffer", "buffer"], returns: "isize" },
  // Readiness (os/poller.ts): poll(2) over struct pollfd[], and an eventfd to wake it.
  poll: { args: ["buffer", "usize", "i32"], returns: "i32", async: true },
  eventfd: { args: ["u32", "i32"], returns: "i32" },
  read: { args: ["i32", "buffer", "usize"], returns: "isize" },
  write: { args: ["i32", "buffer", "usize"], returns: "isize" },
  // Files (the durable file queue): positioned I/O, durability, directories.
  pread: { args: ["i32", "buffer", "usize", "i64"], returns: "isize" },
  pwrite: { args: ["i32", "buffer", "usize", "i64"], returns: "isize" },
  fsync: { args: ["i32"], returns: "i32", async: true },
  rename: { args: ["buffer", "buffer"], returns: "i32" },
  mkdir: { args: ["buffer", "u32"], returns: "i32" },
  rmdir: { args: ["buffer"], returns: "i32" },
  // statx(dirfd, path, flags, mask, struct statx *): one layout on x86-64 and arm64 (struct stat differs).
  statx: { args: ["i32", "buffer", "i32", "u32", "buffer"], returns: "i32" },
  // Socket file modes (os/unix_dgram_open.ts): Linux gives a bound socket file the mode set by fchmod before bind.
  fchmod: { args: ["i32", "u32"], returns: "i32" },
  chmod: { args: ["buffer", "u32"], returns: "i32" },
  umask: { args: ["u32"], returns: "u32" },
} as const satisfies Record<string, Signature>;

/** The names in the table. */
export type LibcName = keyof typeof LIBC;

type ArgType<T extends FfiType> = T extends "buffer" ? ArrayBufferView | null
  : T extends "pointer" ? number | null
  : T extends "i32" | "u32" ? number
  : number | bigint;

type Args<A extends readonly FfiType[]> = { [K in keyof A]: A[K] extends FfiType ? ArgType<A[K]> : never };

/** The callable form of the table: every call returns a JS number (pointers too; -1 on most failures). */
export type LibcCalls = {
  [K in LibcName]: (...args: Args<(typeof LIBC)[K]["args"]>) => number;
};

/** The names marked `async`. */
export type AsyncName = { [K in LibcName]: (typeof LIBC)[K] extends { async: true } ? K : never }[LibcName];

/**
 * The off-thread form of the `async` symbols: the call runs on another thread and the promise settles with its
 * result. errno is not reliable after such a call: re-check the state the call was about instead.
 */
export type AsyncCalls = {
  [K in AsyncName]: (...args: Args<(typeof LIBC)[K]["args"]>) => Promise<number>;
};
