/**
 * What the datagram fixtures share: the parent binds a socket, the child connects a channel to it and says hello
 * with one datagram, and the parent turns its socket into a channel to the hello's sender. Datagram channels have
 * no end-of-stream, so the parent stops the child with SIGTERM instead of waiting for it to leave.
 */
import type { Channel, Datagram, DatagramSocket } from "../../mod.ts";
import { beforeExit, type Remote, spawnPeer, stopChild } from "./fixtures.ts";
import type { RuntimeName } from "../../mod.ts";

/** The child's first datagram. */
export const HELLO: Uint8Array = new TextEncoder().encode("ipckit-conformance-hello");

/** Spawns the peer on `runtime` and turns `socket` into a channel to it when its hello arrives. */
export async function remoteOver<A>(
  socket: DatagramSocket<A>,
  rtName: RuntimeName,
  peerArgs: string[],
  cleanup: () => Promise<void> = () => Promise.resolve(),
): Promise<Remote> {
  const child = await spawnPeer(rtName, peerArgs);
  let channel: Channel;
  try {
    const hello: Datagram<A> = await beforeExit(socket.receive(), child, `${peerArgs[0]} hello`);
    if (new TextDecoder().decode(hello.data) !== new TextDecoder().decode(HELLO)) {
      throw new Error(`${peerArgs[0]}: the child's first datagram is not the hello`);
    }
    channel = await socket.connect(hello.from);
  } catch (e) {
    child.kill("SIGKILL");
    await stopChild(child);
    await socket.close();
    await cleanup();
    throw e;
  }
  return {
    channel,
    child,
    async cleanup() {
      await channel.close();
      child.kill("SIGTERM");
      await stopChild(child);
      await cleanup();
    },
  };
}

/** The child side: a channel that has said hello. */
export async function helloOver(channel: Channel): Promise<Channel> {
  await channel.send(HELLO);
  return channel;
}
