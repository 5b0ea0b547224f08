// The CommonJS client of server.mjs (Node require), run from a project that installed the tarball.
//   node client.cjs <name> <socket path>
const process = require("node:process");
const { rpc, runtime, unix } = require("ipckit");

async function main() {
  const [who, socketPath] = process.argv.slice(2);
  const rt = await runtime();
  const client = rpc.connect(await unix.connect(socketPath));
  const hello = await client.api.hello(who);
  await client.api.done();
  await client.close();
  console.log(JSON.stringify({ who, runtime: rt.name, hello }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
