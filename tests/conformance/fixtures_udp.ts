/** The conformance fixture of UDP channels (`udp.connect`, `socket.connect`). */
import * as udp from "../../transports/udp.ts";
import type { Fixture } from "./fixtures.ts";
import { helloOver, remoteOver } from "./fixtures_datagram.ts";

export const fixture: Fixture = {
  name: "udp",
  capabilities: udp.capabilities,
  async pair(options = {}) {
    const [sa, sb] = await Promise.all([udp.bind(options), udp.bind(options)]);
    const [a, b] = await Promise.all([sa.connect(sb.address, options), sb.connect(sa.address, options)]);
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const socket = await udp.bind(options);
    return remoteOver(socket, rtName, ["udp", String(socket.address.port), ...flags]);
  },
  childSide: async (port, options) => helloOver(await udp.connect({ port: Number(port) }, options)),
  raw: "UDP carries datagrams as they are: tests/udp.test.ts talks to a Python peer instead",
};
