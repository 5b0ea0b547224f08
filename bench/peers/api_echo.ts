/**
 * Raw echo peer for `bench/socket_api.ts`: connects with one socket API of this runtime (`node` = node:net, or
 * `native` = Deno.connect / Bun.connect) and writes every chunk straight back until the parent closes.
 *
 * Usage: `api_echo.ts <node|native> unix=<path> tcp=<port>`
 *
 * @module
 */
import { runtime } from "../../mod.ts";
import { socketApi } from "./socket_apis.ts";

const rt = await runtime();
const [which, ...targets] = rt.args();
const api = await socketApi(which === "native" ? "native" : "node");
await Promise.all(targets.map(async (t) => {
  const [kind, where] = t.split("=") as [string, string];
  const s = kind === "unix"
    ? await api.connectUnix(where)
    : await api.connectTcp({ port: Number(where), hostname: "127.0.0.1" });
  await new Promise<void>((resolve) => {
    s.start({
      data: (c) => void s.write(s.ownsChunks ? c : c.slice())?.catch(() => {}),
      end: () => void s.end().finally(() => (s.close(), resolve())),
    });
  });
}));
