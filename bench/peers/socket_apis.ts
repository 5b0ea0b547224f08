/**
 * The socket APIs a runtime offers, for `bench/socket_api.ts`: `node` (node:net, what every adapter can use) and
 * `native` (Bun.listen/connect). Benchmarks may reach into runtimes/ to compare them. Deno's own sockets were
 * measured slower than its node:net (pinned, 8-byte round trip: Unix 43.0 vs 38.9 us, TCP 54.0 vs 49.3 us), so
 * the Deno adapter uses node:net and has no `native` here.
 *
 * @module
 */
import { runtimeName } from "../../mod.ts";
import type { Runtime } from "../../mod.ts";

/** The socket half of a Runtime. */
export type SocketApi = Pick<Runtime, "listenUnix" | "connectUnix" | "listenTcp" | "connectTcp">;

/** Loads one socket API of the current runtime. */
export async function socketApi(which: "node" | "native"): Promise<SocketApi> {
  const name = runtimeName();
  if (which === "node" || name !== "bun") return (await import("../../runtimes/node_api.ts")).nodeApi;
  const bunNet = "../../runtimes/bun_net.ts"; // not a literal: deno check must not follow it into Bun's types
  return (await import(bunNet)) as SocketApi;
}
