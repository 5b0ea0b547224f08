/**
 * Two processes on two runtimes talking over shared memory: this process (run it with Deno) serves, and starts a
 * Bun child that sends numbers and gets them back doubled.
 *
 *   deno run -A examples/shm_deno_bun.ts        (the child runs `bun examples/shm_deno_bun.ts client <name>`)
 *
 * @module
 */
import { runtime, runtimeArgv, shm } from "../mod.ts";

const rt = await runtime();
const [role, name] = rt.args();

if (role === "client") {
  // The Bun side: open the channel the server created, send 5 numbers, print what comes back.
  const ch = await shm.open(name!, { wait: 10_000 });
  for (let i = 1; i <= 5; i++) {
    await ch.send(new Uint8Array(new Float64Array([i]).buffer));
    const reply = new Float64Array((await ch.receive()).slice().buffer)[0];
    console.log(`${rt.name} client: sent ${i}, got ${reply}`);
  }
  await ch.close();
} else {
  // The server side: create the channel, start the client on Bun, double every number until the client closes.
  const channelName = `/ipckit-example-${rt.pid}`;
  const pending = shm.create(channelName, { capacity: 64 * 1024 });
  const script = rt.fromFileUrl(import.meta.url);
  const child = rt.spawn([...runtimeArgv("bun", script), "client", channelName], { stdio: "inherit" });
  const ch = await pending;
  console.log(`${rt.name} server: a client attached (pid ${child.pid})`);
  for await (const m of ch) {
    const x = new Float64Array(m.slice().buffer)[0]!;
    await ch.send(new Uint8Array(new Float64Array([x * 2]).buffer));
  }
  await ch.close();
  console.log(`${rt.name} server: the client closed; exit status`, await child.exited);
}
