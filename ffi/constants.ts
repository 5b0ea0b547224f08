/**
 * OS constants for the calls in `libc.ts`. Linux values (x86-64 and arm64 share them); macOS where it differs.
 *
 * @module
 */

/** open(2) flags and mode bits. */
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NONBLOCK = 0o4000;
export const O_TRUNC = 0o1000;
export const O_CLOEXEC = 0o2000000;

import { arch } from "node:os";

/** open(2): fail with ELOOP when the last path component is a symbolic link (the value differs per architecture). */
export const O_NOFOLLOW: number = arch() === "arm64" ? 0o100000 : 0o400000;
/** open(2): a descriptor that only names a file (for statx and `/proc/self/fd/N`); the same on x86-64 and arm64. */
export const O_PATH = 0o10000000;

/** statx(2): the dirfd meaning "the current directory", flags, and the fields asked for. */
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_EMPTY_PATH = 0x1000;
/** STATX_BASIC_STATS | STATX_BTIME. */
export const STATX_WANTED = 0xfff;
/** STATX_BTIME, in the returned mask: the file system knows the birth time. */
export const STATX_BTIME = 0x800;
/** Size of struct statx. */
export const STATX_SIZE = 256;

/** Offsets in struct statx (the same on x86-64 and arm64): the returned mask, mode, inode, times, device. */
export const STX_MASK = 0;
export const STX_MODE = 28;
export const STX_INO = 32;
export const STX_BTIME = 80;
export const STX_CTIME = 96;
export const STX_DEV_MAJOR = 136;
export const STX_DEV_MINOR = 140;

/** File type bits of a mode (`st_mode` / `stx_mode`). */
export const S_IFMT = 0o170000;
export const S_IFIFO = 0o010000;
export const S_IFREG = 0o100000;
export const S_IFSOCK = 0o140000;

/** msgctl(2) commands, and struct msqid_ds (x86-64 and arm64): its size and where `msg_ctime` is. */
export const IPC_RMID = 0;
export const IPC_SET = 1;
export const IPC_STAT = 2;
export const IPC_INFO = 3;
export const MSQID_DS = 120;
/** msqid_ds.msg_ctime: after ipc_perm (48 bytes, `__key` first), msg_stime and msg_rtime. */
export const MSQID_DS_CTIME = 64;

/** futex(2) through syscall(2): the syscall number differs per architecture. */
export const SYS_futex: number = arch() === "arm64" ? 98 : 202;
/** futex operations (not the PRIVATE variants: the words are shared between processes). */
export const FUTEX_WAIT = 0;
export const FUTEX_WAKE = 1;

/** gettid(2) through syscall(2): a thread's kernel id (the pid on a main thread). */
export const SYS_gettid: number = arch() === "arm64" ? 178 : 186;

/** kill(2) with signal 0 probes whether a process exists. */
export const ESRCH = 3;

/** shutdown(2). */
export const SHUT_WR = 1;
export const SHUT_RDWR = 2;

/** socket(2), sendto(2)/recvfrom(2) flags and socket options (the asm-generic values of x86-64 and arm64). */
export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;
export const MSG_NOSIGNAL = 0x4000;
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVTIMEO = 20;
export const SO_SNDTIMEO = 21;

/** poll(2) events, and eventfd(2) flags (the O_ values). */
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

/** mmap(2). */
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
/** Whether an address returned by mmap is MAP_FAILED ((void *)-1, which arrives as 2^64 or -1). */
export function isMapFailed(address: number): boolean {
  return address < 0 || address >= 2 ** 63;
}

/** flock(2) operations (the same on Linux and macOS), and lseek(2)'s whence for "from the end". */
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
export const SEEK_END = 2;

/** msgget(2)/msgsnd(2)/msgrcv(2) flags, and fields of struct msqid_ds (x86-64 and arm64) besides its ctime. */
export const IPC_PRIVATE = 0;
export const IPC_CREAT = 0o1000;
export const IPC_EXCL = 0o2000;
export const IPC_NOWAIT = 0o4000;
/** msqid_ds.msg_perm.mode (u16), msg_cbytes, msg_qnum, msg_qbytes (u64 each), msg_lspid then msg_lrpid (i32). */
export const MSQID_DS_MODE = 20;
export const MSQID_DS_CBYTES = 72;
export const MSQID_DS_QNUM = 80;
export const MSQID_DS_QBYTES = 88;
export const MSQID_DS_LSPID = 96;

/**
 * Unix socket addresses: the size of struct sockaddr_un, and of its sun_path with the terminating NUL (108 on
 * Linux, 104 on macOS). statx(2) mask bits for the type, mode and owner, and `stx_uid`'s offset. NAME_MAX, the
 * longest file name (and `shm_open` name). prctl(2)'s PR_SET_PDEATHSIG. INT_MAX (a futex wake of everyone).
 * Signal numbers (Linux x86-64 and arm64; a signal's default exit status is 128 + its number).
 */
export const SOCKADDR_UN_SIZE = 110;
export const SUN_PATH_LINUX = 108;
export const SUN_PATH_MACOS = 104;
export const STATX_TYPE = 0x1;
export const STATX_MODE = 0x2;
export const STATX_UID = 0x8;
export const STX_UID = 20;
export const NAME_MAX = 255;
export const PR_SET_PDEATHSIG = 1;
export const INT_MAX = 0x7fff_ffff;
export const SIGHUP = 1;
export const SIGINT = 2;
export const SIGKILL = 9;
export const SIGTERM = 15;
