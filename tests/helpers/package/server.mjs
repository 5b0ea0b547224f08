// The Node ESM side of the round trip in tests/package.test.ts, run from a project that installed the tarball:
// serves RPC on a Unix socket until `clients` clients said done(), and answers one shm channel peer.
//   node server.mjs <shm name> <socket path> <clients>
import process from "node:process";
import { rpc, shm, typed, unix } from "ipckit";

const [shmName, socketPath, clients] = process.argv.slice(2);
let done = 0;
let allDone;
const finished = new Promise((resolve) => (allDone = resolve));
const server = rpc.serve(await unix.listen(socketPath), {
  hello: (from) => ({ from: "node-esm", to: from, pid: process.pid }),
  done: () => {
    if (++done === Number(clients)) allDone();
    return done;
  },
});
console.log("ready");

const channel = typed(await shm.create(shmName));
const first = await channel.receive();
await channel.send({ from: "node-esm", n: first.n + 1 });
const last = await channel.receive();
await channel.close();
await finished;
await server.close();
console.log(JSON.stringify({ shm: [first, last], rpcClients: done }));
