// Run from a project that installed the ipckit tarball (tests/package.test.ts), on Node: the same checks as
// smoke.mjs through require() (the CommonJS build in script/), without top-level await.
const process = require("node:process");
const ipckit = require("ipckit");
const { IpcError, NotFoundError } = require("ipckit/errors");
const { encodeFrame, FrameDecoder } = require("ipckit/framing");
const { Pool, worker } = require("ipckit/pool");
const { connect, serve } = require("ipckit/rpc");
const { runtime } = require("ipckit/runtime");

async function main() {
  const rt = await runtime();
  const name = `/ipckit-pkg-smoke-cjs-${process.pid}`;
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
  new FrameDecoder(1024, (p) => frames.push(p)).push(encodeFrame(new TextEncoder().encode("frame")), false);
  console.log(JSON.stringify({
    format: "cjs",
    runtime: rt.name,
    resolved: require.resolve("ipckit"),
    version: require("ipckit/package.json").version,
    exports: Object.keys(ipckit).length,
    seen,
    afterUnlink,
    frame: new TextDecoder().decode(frames[0]),
    sameClasses: ipckit.NotFoundError === NotFoundError && ipckit.Pool === Pool && ipckit.runtime === runtime,
    functions: [worker, connect, serve].every((f) => typeof f === "function"),
  }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
