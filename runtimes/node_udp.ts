/**
 * UDP through `node:dgram`, which all three runtimes implement (Deno's own `Deno.listenDatagram` needs
 * `--unstable-net`; Bun's `node:dgram` rides on its native UDP socket).
 *
 * @module
 */
import * as dgram from "node:dgram";
import { mapNodeError } from "./node_api.ts";
import type { UdpAddress, UdpHandle } from "./runtime.ts";

/** Binds a UDP socket through node:dgram. */
export function bindUdp(
  options: { host: string; port: number; ipv6: boolean; reuseAddress: boolean },
): Promise<UdpHandle> {
  const where = `${options.ipv6 ? `[${options.host}]` : options.host}:${options.port}`;
  const socket = dgram.createSocket({ type: options.ipv6 ? "udp6" : "udp4", reuseAddr: options.reuseAddress });
  return new Promise<UdpHandle>((resolve, reject) => {
    const onBindError = (e: Error) => {
      socket.close();
      reject(mapNodeError(e, `Cannot bind UDP ${where}`));
    };
    socket.once("error", onBindError);
    socket.bind(options.port, options.host, () => {
      socket.off("error", onBindError);
      resolve(handle(socket));
    });
  });
}

function handle(socket: dgram.Socket): UdpHandle {
  const a = socket.address();
  const address: UdpAddress = { host: a.address, port: a.port };
  let closed = false;
  return {
    address,
    start(deliver, onError) {
      socket.on("message", (buf: Uint8Array, rinfo: dgram.RemoteInfo) => {
        deliver(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength), { host: rinfo.address, port: rinfo.port });
      });
      socket.on("error", (e) => onError(e));
    },
    connect(to) {
      return new Promise((resolve, reject) => {
        const onError = (e: Error) => reject(mapNodeError(e, `Cannot connect UDP to ${to.host}:${to.port}`));
        socket.once("error", onError);
        socket.connect(to.port, to.host, () => {
          socket.off("error", onError);
          resolve();
        });
      });
    },
    send(data, to) {
      return new Promise((resolve, reject) => {
        const done = (e: Error | null) => (e ? reject(e) : resolve());
        if (to === undefined) socket.send(data, done);
        else socket.send(data, to.port, to.host, done);
      });
    },
    close() {
      if (closed) return;
      closed = true;
      socket.close();
    },
  };
}
