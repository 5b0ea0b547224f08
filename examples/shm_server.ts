/**
 * One server, many clients, over shared memory: this process listens with `shm.listen` and serves RPC to a Deno, a
 * Bun and a Node client, each on a ring pair of its own (`shm.connect`).
 *
 *   deno run -A examples/shm_server.ts        (the clients run `<runtime> examples/shm_server.ts client <name>`)
 *
 * @module
 */
import { rpc, runtime, runtimeArgv, shm } from "../mod.ts";

const rt = await runtime();
const [role, name] = rt.args();
type Api = { square(x: number): number };

if (role === "client") {
  // A client: its own channel to the server, then RPC over it.
  await using client = rpc.connect<Api>(await shm.connect(name!, { timeout: 30_000 }));
  let sum = 0;
  for (let i = 1; i <= 10; i++) sum += await client.api.square(i);
  console.log(`${rt.name} client: the squares of 1..10 add up to ${sum}`);
} else {
  // The server: one listener, one RpcPeer per client, each client on its own rings.
  const service = `/ipckit-squares-${rt.pid}`;
  let calls = 0;
  await using _server = rpc.serve(await shm.listen(service, { capacity: 64 * 1024 }), {
    square: (x: number) => (calls++, x * x),
  });
  const script = rt.fromFileUrl(import.meta.url);
  const clients = (["deno", "bun", "node"] as const).map((r) =>
    rt.spawn([...runtimeArgv(r, script), "client", service], { stdio: "inherit" })
  );
  const codes = (await Promise.all(clients.map((c) => c.exited))).map((s) => s.code);
  console.log(`${rt.name} server: answered ${calls} calls from 3 clients; exit codes ${codes.join(", ")}`);
}
