/**
 * Child for tests/file_lock.test.ts: `filelock_child.ts <path>` takes an exclusive FileLock on `path` and reports
 * "locked" over the pipe channel. Then, per message from the parent: "release" releases and reports "released",
 * "lock" locks again and reports "locked". It exits when the parent closes the channel (or kills it).
 */
import { FileLock, pipe } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const channel = await pipe.stdio();
const enc = new TextEncoder();
const dec = new TextDecoder();
const path = rt.args()[0]!;
using file = await FileLock.open(path);
let guard = await file.lock({ timeout: 30_000 });
await channel.send(enc.encode("locked"));
for await (const m of channel) {
  const cmd = dec.decode(m);
  if (cmd === "release") {
    guard.release();
    await channel.send(enc.encode("released"));
  } else if (cmd === "lock") {
    guard = await file.lock({ timeout: 30_000 });
    await channel.send(enc.encode("locked"));
  }
}
await channel.close();
