/**
 * birpc's channel options over a node:net socket with newline-delimited JSON, the way birpc's README wires a
 * socket: shared by both sides of bench/rpc.ts's birpc comparison.
 *
 * @module
 */
import type { Socket } from "node:net";

export function birpcOverLines(socket: Socket) {
  let onMessage: (data: string) => void = () => {};
  let pending = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      onMessage(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });
  return {
    post: (data: string) => void socket.write(data + "\n"),
    on: (fn: (data: string) => void) => void (onMessage = fn),
    serialize: (v: unknown) => JSON.stringify(v),
    deserialize: (v: string) => JSON.parse(v),
  };
}
