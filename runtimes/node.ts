/**
 * The Node adapter: `node:` modules throughout (they are Node's fastest APIs).
 *
 * @module
 */
import process from "node:process";
import { pathToFileURL } from "node:url";
import { fifoSocketStream, nodeApi, openFifoFd, pipePairStream, worker } from "./node_api.ts";
import { compiledCopy, tsxApi } from "./argv.ts";
import type { ByteStream, Runtime } from "./runtime.ts";
import { detachStdout } from "./stdout.ts";

let stdioStream: ByteStream | undefined;

/** The Runtime for Node. */
export const runtime: Runtime = {
  ...nodeApi,
  name: "node",
  version: process.versions.node,
  stdio() {
    if (stdioStream) return stdioStream;
    const s = pipePairStream(process.stdin, process.stdout);
    return (stdioStream = {
      ...s,
      async end() {
        await s.end();
        await detachStdout();
      },
    });
  },
  // A worker does not inherit the main thread's module hooks: a TypeScript worker registers tsx itself, unless it has a
  // compiled copy (IPCKIT_TS_COMPILED).
  worker(url, options) {
    const copy = url.protocol === "file:" ? compiledCopy(url) : undefined;
    if (copy !== undefined) return worker(pathToFileURL(copy), options);
    return worker(url, options, /\.[cm]?ts$/.test(url.pathname) ? tsxApi() : undefined);
  },
  async openFifo(path, mode, signal) {
    return fifoSocketStream(await openFifoFd(path, mode, signal), mode);
  },
};
