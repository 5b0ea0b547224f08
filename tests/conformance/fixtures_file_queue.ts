/**
 * The conformance fixture of the file queue channel (`fileQueue.channel`). The child peer loads it through
 * `peer.ts file_queue <dir> [flags]`. Every channel lives in a fresh temporary directory, removed by cleanup.
 */
import * as fileQueue from "../../transports/file_queue.ts";
import { CONNECT_TIMEOUT, createWithPeer, type Fixture, remoteOf, removeDir, tempDir } from "./fixtures.ts";

export const fixture: Fixture = {
  name: "file_queue",
  capabilities: fileQueue.capabilities,
  async pair(options = {}) {
    const dir = await tempDir();
    const path = `${dir}/ch`;
    try {
      const [a, b] = await Promise.all([
        fileQueue.channel(path, { ...options, create: true }),
        fileQueue.channel(path, { ...options, wait: 10_000 }),
      ]);
      return {
        a,
        b,
        async cleanup() {
          await Promise.all([a.close(), b.close()]);
          await removeDir(dir);
        },
      };
    } catch (e) {
      await removeDir(dir);
      throw e;
    }
  },
  async remote(rtName, flags, options = {}) {
    const dir = await tempDir();
    const path = `${dir}/ch`;
    const { channel, child } = await createWithPeer(
      (signal) => fileQueue.channel(path, { ...options, create: true, signal }),
      rtName,
      ["file_queue", path, ...flags],
      () => removeDir(dir),
    );
    return remoteOf(channel, child, () => removeDir(dir));
  },
  childSide: (path, options) => fileQueue.channel(path, { ...options, wait: CONNECT_TIMEOUT }),
  raw: "a file queue carries CRC-checked records, not a byte stream: tests/file_queue.test.ts writes raw records " +
    "(torn, corrupt, and from Python) instead",
};
