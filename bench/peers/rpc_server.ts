/**
 * The server side of `bench/rpc.ts`: serves `add` over one transport until the client closes.
 *
 *   rpc_server.ts shm <name> | shm-echo <name> | unix <path> | tcp <port> | birpc <path>
 *
 * `birpc` serves the same function with birpc over a Unix socket (node:net, newline-delimited JSON), for comparison.
 *
 * @module
 */
import { rpc, runtime, shm, tcp, unix } from "../../mod.ts";
import { birpcOverLines } from "./birpc_lines.ts";

const handlers = { add: (a: number, b: number) => a + b };
const rt = await runtime();
const [kind, address] = rt.args();

if (kind === "birpc") {
  const net = await import("node:net");
  const { createBirpc } = await import("birpc");
  const socket = net.connect(address!);
  createBirpc(handlers, birpcOverLines(socket));
  await new Promise((r) => socket.on("close", r));
} else if (kind === "shm-echo") {
  // The floor under RPC: the bare channel, each message sent straight back.
  const channel = await shm.open(address!, { wait: 30_000 });
  for await (const m of channel) await channel.send(m);
} else {
  const channel = kind === "shm"
    ? await shm.open(address!, { wait: 30_000 })
    : kind === "unix"
    ? await unix.connect(address!)
    : await tcp.connect({ port: Number(address) });
  await rpc.serve(channel, handlers).done;
}
