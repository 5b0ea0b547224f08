/**
 * The conformance fixture of NATS channels (`nats.listen` / `nats.connect`), against the real nats-server that
 * `tests/nats.test.ts` starts (`useServer`). The child peer loads it through `peer.ts nats <url>|<subject> [flags]`
 * and connects with its own NATS connection, as a process on another host would.
 */
import * as nats from "../../transports/nats.ts";
import { CONNECT_TIMEOUT, createWithPeer, type Fixture, remoteOf } from "./fixtures.ts";

let serverUrl: string | undefined;

/** Points the fixture at a running server. */
export function useServer(url: string): void {
  serverUrl = url;
}

function url(): string {
  if (serverUrl === undefined) throw new Error("the NATS fixture has no server: call useServer() in a before hook");
  return serverUrl;
}

export const subject = (): string => `ipckit.test.${Math.random().toString(36).slice(2, 12)}`;

/**
 * Death detection in 6 s (3 beats), above the pauses of a loaded machine's event loop: 3 beats of 500 ms were missed
 * once with a load average of 14 on 2 cores (a flood case on Node, the peer alive all along).
 */
const HEARTBEAT = 2000;

export const fixture: Fixture = {
  name: "nats",
  capabilities: nats.capabilities,
  async pair(options = {}) {
    const link = await nats.open({ servers: url() });
    const s = subject();
    try {
      const listener = await nats.listen(s, { link, ...options });
      const [a, b] = await Promise.all([
        nats.connect(s, { link, heartbeat: HEARTBEAT, ...options }),
        listener.accept(),
      ]);
      await listener.close();
      return {
        a,
        b,
        async cleanup() {
          await Promise.all([a.close(), b.close()]);
          await link.close();
        },
      };
    } catch (e) {
      await link.close();
      throw e;
    }
  },
  async remote(rtName, flags, options = {}) {
    const s = subject();
    const listener = await nats.listen(s, { servers: url(), heartbeat: HEARTBEAT, ...options });
    const { channel, child } = await createWithPeer(
      (signal) => listener.accept({ signal }),
      rtName,
      ["nats", `${url()}|${s}`, ...flags],
      () => listener.close(),
    );
    await listener.link.connection.flush();
    return remoteOf(channel, child, () => listener.close()); // closes the link it opened
  },
  childSide(address, options) {
    const [servers, s] = address.split("|") as [string, string];
    return nats.connect(s, { servers, heartbeat: HEARTBEAT, timeout: CONNECT_TIMEOUT, ...options });
  },
  raw:
    "NATS carries whole messages, not a byte stream: tests/nats.test.ts checks the wire format with raw NATS messages",
};
