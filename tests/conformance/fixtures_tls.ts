/**
 * The conformance fixture of TCP with mutual TLS (`tcp.listen({ tls })` with `requestCert`, `tcp.connect({ tls })`
 * with a client certificate), using the throw-away CA that `tests/tls.test.ts` makes (`useCa`). The child peer loads
 * it through `peer.ts tls <port>@<ca dir> [flags]` and reads the CA's files itself.
 */
import { tcp } from "../../mod.ts";
import type { ChannelOptions } from "../../mod.ts";
import type { TcpListener } from "../../transports/tcp.ts";
import { readTestCa, type TestCa } from "../helpers/tls_ca.ts";
import { beforeExit, failWith, type Fixture, spawnPeer, stopChild } from "./fixtures.ts";

let current: Omit<TestCa, "remove"> | undefined;

/** Points the fixture at a CA made by `makeTestCa()`. */
export function useCa(ca: Omit<TestCa, "remove">): void {
  current = ca;
}

function ca(): Omit<TestCa, "remove"> {
  if (current === undefined) throw new Error("the TLS fixture has no CA: call useCa() in a before hook");
  return current;
}

function listen(options: ChannelOptions): Promise<TcpListener> {
  const { cert, key, ca: authority } = ca();
  return tcp.listen({ ...options, port: 0, tls: { cert, key, ca: authority, requestCert: true } });
}

function connect(port: number, c: Omit<TestCa, "remove">, options: ChannelOptions) {
  return tcp.connect({ ...options, port, tls: { ca: c.ca, cert: c.clientCert, key: c.clientKey } });
}

export const fixture: Fixture = {
  name: "tls",
  capabilities: tcp.capabilities,
  async pair(options = {}) {
    const listener = await listen(options);
    const [a, b] = await Promise.all([connect(listener.port, ca(), options), listener.accept()])
      .catch(failWith(() => listener.close()));
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
        await listener.close();
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const listener = await listen(options);
    const child = await spawnPeer(rtName, ["tls", `${listener.port}@${ca().dir}`, ...flags]);
    const channel = await beforeExit(listener.accept(), child, "tls accept").catch(failWith(async () => {
      await stopChild(child);
      await listener.close();
    }));
    return {
      channel,
      child,
      async cleanup() {
        await channel.close();
        await stopChild(child);
        await listener.close();
      },
    };
  },
  childSide(address, options) {
    const at = address.indexOf("@");
    return connect(Number(address.slice(0, at)), readTestCa(address.slice(at + 1)), options);
  },
  raw: "TLS carries the framing of tcp unchanged: the tcp fixture feeds it raw bytes",
};
