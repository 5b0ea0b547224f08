/**
 * The conformance fixture of TCP with mutual TLS (`tcp.listen({ tls })` with `requestCert`, `tcp.connect({ tls })`
 * with a client certificate), using the throw-away CA that `tests/tls.test.ts` makes (`useCa`). The child peer loads
 * it through `peer.ts tls <port>@<base64 JSON of the client's PEM texts> [flags]`.
 */
import * as tcp from "../../transports/tcp.ts";
import type { ChannelOptions } from "../../mod.ts";
import type { TcpListener } from "../../transports/tcp.ts";
import type { TestCa } from "../helpers/tls_ca.ts";
import { type Fixture, listenerFixture } from "./fixtures.ts";

let current: TestCa | undefined;

/** Points the fixture at a CA made by `makeTestCa()`. */
export function useCa(ca: TestCa): void {
  current = ca;
}

function ca(): TestCa {
  if (current === undefined) throw new Error("the TLS fixture has no CA: call useCa() in a before hook");
  return current;
}

function listen(options: ChannelOptions): Promise<TcpListener> {
  const { cert, key, ca: authority } = ca();
  return tcp.listen({ ...options, port: 0, tls: { cert, key, ca: authority, requestCert: true } });
}

type ClientPems = Pick<TestCa, "ca" | "clientCert" | "clientKey">;

function connect(port: number, c: ClientPems, options: ChannelOptions) {
  return tcp.connect({ ...options, port, tls: { ca: c.ca, cert: c.clientCert, key: c.clientKey } });
}

function address(port: number): string {
  const { ca: authority, clientCert, clientKey } = ca();
  return `${port}@${btoa(JSON.stringify({ ca: authority, clientCert, clientKey }))}`;
}

export const fixture: Fixture = {
  name: "tls",
  capabilities: tcp.capabilities,
  ...listenerFixture("tls", {
    async listen(options) {
      const listener = await listen(options);
      return { listener, address: address(listener.port), cleanup: () => listener.close() };
    },
    connect(address, options) {
      const at = address.indexOf("@");
      const pems = JSON.parse(atob(address.slice(at + 1))) as ClientPems;
      return connect(Number(address.slice(0, at)), pems, options);
    },
  }),
  raw: "TLS carries the framing of tcp unchanged: the tcp fixture feeds it raw bytes",
};
