/**
 * Echoes every message of `pipe.inherited()` back, reading a small file through `node:fs` between messages: a Deno
 * child that Deno's own `node:child_process` told to take over its fds 3 and 4 (`DENO_EXTRA_STDIO_FDS`) then read
 * frames off the pipe itself (tests/pipe.test.ts). Exits when the parent closes.
 */
import { readFile } from "node:fs/promises";
import { ClosedError, pipe } from "../../mod.ts";

const channel = await pipe.inherited();
try {
  for (;;) {
    const m = await channel.receive();
    await readFile("/proc/self/stat");
    await channel.send(m);
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
