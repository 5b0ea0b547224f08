// An ES module client of server.mjs (Bun, Deno or Node), run from a project that installed the tarball: calls the
// RPC server, and with an shm name also talks over the shm channel. Prints what it got.
//   <runtime> client.mjs <name> <socket path> [<shm name>]
import process from "node:process";
import { rpc, runtime, shm, typed, unix } from "ipckit";

const [who, socketPath, shmName] = process.argv.slice(2);
const rt = await runtime();
const report = { who, runtime: rt.name };
if (shmName) {
  const channel = typed(await shm.open(shmName, { wait: 60_000 }));
  await channel.send({ from: who, n: 41 });
  report.shm = await channel.receive();
  await channel.send("bye");
  await channel.close();
}
const client = rpc.connect(await unix.connect(socketPath));
report.hello = await client.api.hello(who);
await client.api.done();
await client.close();
console.log(JSON.stringify(report));
