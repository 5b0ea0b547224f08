/**
 * The conformance fixture of Unix sockets with the shared-secret handshake (`unix.listen(path, { auth })`,
 * `unix.connect(path, { auth })`): every connection runs the handshake before its first frame. The child peer loads
 * it through `peer.ts auth <path> [flags]`.
 */
import { unix } from "../../mod.ts";
import type { ChannelOptions } from "../../mod.ts";
import { beforeExit, failWith, type Fixture, removeDir, spawnPeer, stopChild, tempDir } from "./fixtures.ts";

/** The secret both sides use (test data, not a secret). */
export const SECRET = "ipckit conformance secret, 36 bytes";

const listen = (path: string, options: ChannelOptions) => unix.listen(path, { ...options, auth: { secret: SECRET } });
const connect = (path: string, options: ChannelOptions) => unix.connect(path, { ...options, auth: { secret: SECRET } });

export const fixture: Fixture = {
  name: "auth",
  capabilities: unix.capabilities,
  async pair(options = {}) {
    const dir = await tempDir();
    const path = `${dir}/s.sock`;
    const listener = await listen(path, options).catch(failWith(() => removeDir(dir)));
    const [a, b] = await Promise.all([connect(path, options), listener.accept()])
      .catch(failWith(async () => {
        await listener.close();
        await removeDir(dir);
      }));
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
        await listener.close();
        await removeDir(dir);
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const dir = await tempDir();
    const path = `${dir}/s.sock`;
    const listener = await listen(path, options).catch(failWith(() => removeDir(dir)));
    const child = await spawnPeer(rtName, ["auth", path, ...flags]);
    const channel = await beforeExit(listener.accept(), child, "auth accept").catch(failWith(async () => {
      await stopChild(child);
      await listener.close();
      await removeDir(dir);
    }));
    return {
      channel,
      child,
      async cleanup() {
        await channel.close();
        await stopChild(child);
        await listener.close();
        await removeDir(dir);
      },
    };
  },
  childSide: (path, options) => connect(path, options),
  raw: "the handshake is fed raw bytes by a Python peer in tests/auth.test.ts; after it, the unix fixture's framing",
};
