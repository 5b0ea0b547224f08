/**
 * Race-free permissions for Unix stream socket files. `bind(2)` creates the file with `0777 & ~umask`, and no
 * runtime lets us set the mode first (Node's `readableAll`/`writableAll` chmod after the bind, leaving a window),
 * so under umask 000 anyone could connect before a chmod. Instead the socket is bound inside a fresh 0700
 * directory next to the target (nobody else can reach it there), given its mode, then hard-linked into place:
 * the target path appears with its final mode or not at all, and `link(2)` failing with EEXIST keeps "the path
 * must not exist" (`AlreadyExistsError`). The private directory is removed before this returns.
 *
 * A connection through the link reaches the socket: the kernel finds a Unix socket by its inode, not its name.
 * Node and Bun unlink the name they bound when the server closes; that name is gone already, so nothing else is
 * touched.
 *
 * @module
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { AlreadyExistsError } from "../errors.ts";
import { SUN_PATH_LINUX } from "../ffi/constants.ts";
import type { Server } from "./runtime.ts";

/** The longest path sun_path holds on Linux (its last byte is the NUL). */
const SUN_PATH_MAX = SUN_PATH_LINUX - 1;

/** What the private path adds to the directory's: "/.ipkXXXXXX" (mkdtemp's six characters), then "/s". */
const PRIVATE_SUFFIX = 13;

/** The default mode of a socket file: only its owner may connect. */
export const DEFAULT_SOCKET_MODE = 0o600;

/**
 * Binds a Unix socket at `target` with permission bits `mode`, never letting the path exist with other bits.
 *
 * @param bind Binds the runtime's server at the path it is given.
 * @throws {AlreadyExistsError} when `target` exists; what `bind` throws; the `node:fs` error (with its `code`)
 * when the private directory cannot be made (the caller maps it).
 * @throws {RangeError} when the private path next to `target` would not fit in a socket address.
 */
export async function bindWithMode(
  target: string,
  mode: number,
  bind: (at: string) => Promise<Server>,
  what: string,
): Promise<Server> {
  const dir = path.dirname(target);
  const dirBytes = new TextEncoder().encode(dir).byteLength;
  if (dirBytes + PRIVATE_SUFFIX > SUN_PATH_MAX) {
    throw new RangeError(
      `${what}: its directory path is ${dirBytes} bytes long; binding privately next to it allows at most ` +
        `${SUN_PATH_MAX - PRIVATE_SUFFIX}`,
    );
  }
  const tmpDir = fs.mkdtempSync(path.join(dir, ".ipk"));
  const tmp = path.join(tmpDir, "s");
  try {
    fs.chmodSync(tmpDir, 0o700); // mkdtemp's 0700 minus the umask: make sure this process can bind inside
    const server = await bind(tmp);
    try {
      fs.chmodSync(tmp, mode);
      fs.linkSync(tmp, target);
    } catch (e) {
      await server.close();
      if ((e as { code?: unknown }).code !== "EEXIST") throw e;
      throw new AlreadyExistsError(
        `${what}: something exists at that path already (a socket file left by a dead process can be removed)`,
        { code: "EEXIST", cause: e },
      );
    }
    return server;
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
}
