/**
 * Making a Unix datagram socket (`os/unix_dgram_socket.ts`): the socket, its send buffer, and its bind: autobound,
 * abstract, or at a socket file that appears with the asked mode and never wider (see `bindWithMode`).
 *
 * @module
 */
import { PermissionError, UnsupportedError } from "../errors.ts";
import {
  AF_UNIX,
  AT_EMPTY_PATH,
  O_CLOEXEC,
  O_NOFOLLOW,
  O_PATH,
  S_IFMT,
  S_IFSOCK,
  SO_SNDBUF,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOL_SOCKET,
  STATX_MODE,
  STATX_SIZE,
  STATX_TYPE,
  STATX_UID,
  STX_MODE,
  STX_UID,
} from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { type Native, native } from "../ffi/native.ts";
import { prepare, register } from "../registry.ts";
import { parseSockaddr, type Sockaddr, sockaddr, SOCKADDR_SIZE, UnixDgramSocket } from "./unix_dgram_socket.ts";

const { EADDRINUSE } = ERRNO as Record<string, number>;

/** Validates a socket file mode. */
function checkMode(mode: unknown, what: string): number {
  if (mode === undefined) return DEFAULT_MODE;
  if (!Number.isInteger(mode) || (mode as number) < 0 || (mode as number) > 0o777) {
    throw new RangeError(`Cannot ${what}: mode ${String(mode)} must be permission bits from 0 to 0o777`);
  }
  return mode as number;
}

const DEFAULT_MODE = 0o600;
const STATX_TYPE_MODE_UID = STATX_TYPE | STATX_MODE | STATX_UID;

/**
 * Binds `fd` at the file `path` with permission bits `mode`. Linux creates a socket file with the mode of the
 * socket's inode minus the umask (net/unix/af_unix.c), so an fchmod before bind makes the file appear with at most
 * `mode`: never wider, not even for an instant. Bits the umask removed are added back through an `O_PATH`
 * descriptor checked to be this user's socket, so a symlink planted at `path` is never followed.
 */
function bindWithMode(ffi: Native, fd: number, path: string, addr: Sockaddr, mode: number, what: string): void {
  const { call } = ffi;
  if (call.fchmod(fd, mode) !== 0) throw errnoError(ffi.errno(), `${what}: set its mode`);
  if (call.bind(fd, addr.bytes, addr.length) !== 0) {
    const errno = ffi.errno();
    if (errno === EADDRINUSE) {
      throw errnoError(
        errno,
        `${what}: something already exists at "${path}" (a socket file left by a dead process can be removed)`,
      );
    }
    throw errnoError(errno, what);
  }
  const file = call.open(ffi.cstring(path), O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
  if (file < 0) throw errnoError(ffi.errno(), `${what}: inspect the socket file`);
  try {
    const stx = new Uint8Array(STATX_SIZE);
    if (call.statx(file, new Uint8Array(1), AT_EMPTY_PATH, STATX_TYPE_MODE_UID, stx) !== 0) {
      throw errnoError(ffi.errno(), `${what}: inspect the socket file`);
    }
    const v = new DataView(stx.buffer);
    const fileMode = v.getUint16(STX_MODE, true);
    if ((fileMode & S_IFMT) !== S_IFSOCK || v.getUint32(STX_UID, true) !== call.getuid()) {
      throw new PermissionError(`Cannot ${what}: "${path}" was replaced by something else while it was bound`);
    }
    if ((fileMode & 0o7777) !== mode && call.chmod(ffi.cstring(`/proc/self/fd/${file}`), mode) !== 0) {
      throw errnoError(ffi.errno(), `${what}: set its mode`);
    }
  } catch (e) {
    call.unlink(ffi.cstring(path));
    throw e;
  } finally {
    call.close(file);
  }
}

/**
 * Opens a socket bound at `path` (`""`: autobind; `@name`: abstract), with `options.sendBuffer` and, for a path,
 * the socket file's `options.mode` (0o600 by default). A socket file is recorded in the registry until `close()`.
 *
 * @throws {UnsupportedError} without FFI; {@linkcode TypeError}/{@linkcode RangeError} for a bad address, mode or
 * sendBuffer; the errno's error (`AlreadyExistsError`, `NotFoundError`, ...) when the socket cannot be bound.
 */
export async function openSocket(
  path: string,
  options: { sendBuffer?: number; mode?: number },
  what: string,
): Promise<UnixDgramSocket> {
  const addr = sockaddr(path, what);
  const mode = checkMode(options.mode, what);
  const ffi = await native().catch((e) => {
    throw new UnsupportedError(`Cannot ${what}: Unix datagram sockets need FFI (${(e as Error).message})`, {
      cause: e,
    });
  });
  const { call } = ffi;
  if (path !== "" && !path.startsWith("@")) await prepare();
  const fd = call.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errnoError(ffi.errno(), what);
  try {
    const sendBuffer = options.sendBuffer;
    if (sendBuffer !== undefined) {
      if (!Number.isSafeInteger(sendBuffer) || sendBuffer < 1024 || sendBuffer > 0x3fff_ffff) {
        throw new RangeError(`Cannot ${what}: sendBuffer ${sendBuffer} must be an integer from 1024 to 2^30 - 1`);
      }
      if (call.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, new Int32Array([sendBuffer]), 4) !== 0) {
        throw errnoError(ffi.errno(), `${what}: set sendBuffer`);
      }
    }
    if (path !== "" && !path.startsWith("@")) {
      bindWithMode(ffi, fd, path, addr, mode, what);
    } else if (call.bind(fd, addr.bytes, addr.length) !== 0) {
      throw errnoError(ffi.errno(), what);
    }
    const name = new Uint8Array(SOCKADDR_SIZE);
    const nameLength = new Uint32Array([SOCKADDR_SIZE]);
    if (call.getsockname(fd, name, nameLength) !== 0) throw errnoError(ffi.errno(), what);
    const address = parseSockaddr(name, nameLength[0]!);
    const owned = path === "" || path.startsWith("@") ? undefined : path;
    if (owned !== undefined) register("unix_dgram", owned);
    return new UnixDgramSocket(ffi, fd, address, owned);
  } catch (e) {
    call.close(fd);
    throw e;
  }
}
