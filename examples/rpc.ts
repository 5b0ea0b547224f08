/**
 * A Deno RPC server on a Unix socket, called from a Bun and a Node client: plain calls, a streamed result, a remote
 * error and a cancelled call.
 *
 *   node --import tsx examples/rpc.ts      (or deno run -A / bun: the server is always Deno)
 *
 * @module
 */
import { type CallContext, type RemoteError, rpc, runtime, runtimeArgv, unix } from "../mod.ts";

const handlers = {
  add: (a: number, b: number) => a + b,
  async *countdown(from: number) {
    for (let i = from; i > 0; i--) yield i;
  },
  divide(a: number, b: number) {
    if (b === 0) throw new RangeError("division by zero");
    return a / b;
  },
  wait(this: CallContext, ms: number) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(resolve, ms, "waited");
      this.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        reject(this.signal.reason);
      });
    });
  },
};

const rt = await runtime();
const [role, path] = rt.args();

if (role === "server") {
  // Serve two clients, each on its own connection, then stop.
  const listener = await unix.listen(path!);
  const peers = [];
  for (let i = 0; i < 2; i++) peers.push(rpc.serve(await listener.accept(), handlers));
  await Promise.all(peers.map((p) => p.done));
  await listener.close();
} else if (role === "client") {
  const client = rpc.connect<typeof handlers>(await unix.connect(path!));
  const me = rt.name;
  console.log(`${me}: add(2, 3) = ${await client.api.add(2, 3)}`);
  const counted: number[] = [];
  for await (const n of await client.api.countdown(3)) counted.push(n);
  console.log(`${me}: countdown(3) streamed ${counted.join(", ")}`);
  await client.api.divide(1, 0).catch((e: RemoteError) =>
    console.log(`${me}: divide(1, 0) threw ${e.remoteName}: ${e.message}`)
  );
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 50);
  await client.callWith("wait", [60_000], { signal: ac.signal }).catch((e: Error) =>
    console.log(`${me}: wait cancelled (${e.name})`)
  );
  await client.close();
} else {
  const dir = await rt.makeTempDir("ipckit-example-rpc-");
  const sock = `${dir}/rpc.sock`;
  const script = rt.fromFileUrl(import.meta.url);
  try {
    const server = rt.spawn([...runtimeArgv("deno", script), "server", sock], { stdio: "inherit" });
    while (!(await rt.exists(sock))) await new Promise((r) => setTimeout(r, 20));
    const clients = (["bun", "node"] as const).map((r) =>
      rt.spawn([...runtimeArgv(r, script), "client", sock], { stdio: "inherit" })
    );
    for (const c of clients) await c.exited;
    await server.exited;
    console.log("a Deno server served a Bun and a Node client");
  } finally {
    await rt.removeDir(dir);
  }
}
