/**
 * The conformance fixture of `pipe.spawn(argv, { over: "fds" })`: the peer child talks over inherited fds 3 and 4
 * and keeps its stdio. The child peer loads it through `peer.ts pipe_fds - [flags]`.
 */
import * as pipe from "../../transports/pipe.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";
import { type Fixture, remoteOf } from "./fixtures.ts";

const PEER = new URL("./peer.ts", import.meta.url);
const ROOT = new URL("../../", import.meta.url);

export const fixture: Fixture = {
  name: "pipe_fds",
  capabilities: pipe.capabilities,
  pair: "a pipe channel joins a parent to its child process; the cross-process cases run every check on it",
  async remote(rtName, flags, options = {}) {
    const rt = await runtime();
    const argv = [...runtimeArgv(rtName, rt.fromFileUrl(PEER)), "pipe_fds", "-", ...flags];
    const { channel, child } = await pipe.spawn(argv, { ...options, over: "fds", cwd: rt.fromFileUrl(ROOT) });
    return remoteOf(channel, child);
  },
  childSide: (_address, options) => pipe.inherited(options),
  raw: "the byte-level checks run on the stdio pipe fixture, which shares the framing code",
};
