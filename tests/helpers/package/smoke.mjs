// Run from a project that installed the ipckit tarball (tests/package.test.ts), on Node, Bun or Deno: imports every
// entry point of the package as ES modules, maps a SharedMemory segment (FFI), round-trips a frame, prints a JSON report.
import process from "node:process";
import * as ipckit from "ipckit";
import { IpcError, NotFoundError } from "ipckit/errors";
import { encodeFrame, FrameDecoder } from "ipckit/framing";
import { Pool, worker } from "ipckit/pool";
import { connect, serve } from "ipckit/rpc";
import { runtime } from "ipckit/runtime";

const rt = await runtime();
const name = `/ipckit-pkg-smoke-${process.pid}`;
const segment = await ipckit.SharedMemory.create(name, { size: 4096 });
new Uint8Array(segment.buffer).set([1, 2, 3], 100);
const again = await ipckit.SharedMemory.open(name);
const seen = [...new Uint8Array(again.buffer, 100, 3)];
again.close();
segment.unlink();
segment.close();
let afterUnlink = "opened";
try {
  (await ipckit.SharedMemory.open(name)).close();
} catch (e) {
  afterUnlink = e instanceof NotFoundError && e instanceof IpcError ? "NotFoundError" : String(e);
}

const frames = [];
new FrameDecoder(1024, (payload) => frames.push(payload)).push(encodeFrame(new TextEncoder().encode("frame")), false);

console.log(JSON.stringify({
  format: "esm",
  runtime: rt.name,
  resolved: import.meta.resolve?.("ipckit") ?? null,
  exports: Object.keys(ipckit).length,
  seen,
  afterUnlink,
  frame: new TextDecoder().decode(frames[0]),
  sameClasses: ipckit.NotFoundError === NotFoundError && ipckit.Pool === Pool && ipckit.runtime === runtime,
  functions: [worker, connect, serve].every((f) => typeof f === "function"),
}));
