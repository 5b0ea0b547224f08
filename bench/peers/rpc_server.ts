/**
 * The server side of `bench/rpc.ts`: serves `add` over one transport until the client closes.
 *
 *   rpc_server.ts shm <name> | shm-echo <name> | unix <path> | tcp <port> | birpc <path> | nats <url>|<subject>
 *     | nats-raw <url>|<subject>
 *
 * `birpc` serves the same function with birpc over a Unix socket (node:net, newline-delimited JSON), for comparison.
 *
 * @module
 */
import { nats, rpc, runtime, shm, tcp, unix } from "../../mod.ts";
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
} else if (kind === "nats" || kind === "nats-raw") {
  // address: <url>|<subject>. "nats": connect a channel to the bench's listener and serve RPC on it; "nats-raw":
  // answer nats.js requests on the subject with the request's bytes (the client library's own round trip).
  const [servers, subject] = address!.split("|") as [string, string];
  if (kind === "nats") {
    await rpc.serve(await nats.connect(subject, { servers }), handlers).done;
  } else {
    const link = await nats.open({ servers });
    link.connection.subscribe(subject, { callback: (_e, m) => m.reply && link.connection.publish(m.reply, m.data) });
    link.connection.subscribe(`${subject}.stop`, { callback: () => void link.close() });
    await link.connection.flush();
    link.connection.publish(`${subject}.up`, new Uint8Array());
    await link.connection.closed();
  }
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
