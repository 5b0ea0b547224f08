/** The conformance fixture of Unix datagram channels (`unixDgram.connect`, `socket.connect`). */
import * as unixDgram from "../../transports/unix_dgram.ts";
import { type Fixture, removeDir, tempDir } from "./fixtures.ts";
import { helloOver, remoteOver } from "./fixtures_datagram.ts";

export const fixture: Fixture = {
  name: "unix_dgram",
  capabilities: unixDgram.capabilities,
  async pair(options = {}) {
    const dir = await tempDir();
    try {
      const [sa, sb] = await Promise.all([unixDgram.bind(`${dir}/a`, options), unixDgram.bind(`${dir}/b`, options)]);
      const [a, b] = await Promise.all([sa.connect(sb.address, options), sb.connect(sa.address, options)]);
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
    const socket = await unixDgram.bind(`${dir}/parent`, options).catch(async (e) => {
      await removeDir(dir);
      throw e;
    });
    return remoteOver(socket, rtName, ["unix_dgram", socket.address, ...flags], () => removeDir(dir));
  },
  childSide: async (path, options) => helloOver(await unixDgram.connect(path, options)),
  raw: "a Unix datagram socket carries datagrams as they are: tests/unix_dgram.test.ts talks to a Python peer instead",
};
