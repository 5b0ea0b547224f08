/**
 * Child of tests/unix_dgram.test.ts: binds 8 Unix datagram sockets at abstract names `<prefix>-<i>` (no files, so
 * `exit` leaves nothing behind), each with a pending receive(), checks they work (one datagram between two of
 * them), then either closes them all and lets the script end (`close`: the process must exit on its own) or leaves
 * them waiting and calls `exit(0)` (`exit`: the exit must not hang on a thread blocked in a native call). Exit code
 * 0, or 1 with a message on stderr.
 *
 *   unix_dgram_child.ts @<prefix> close|exit
 */
import { ClosedError, unixDgram } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [prefix, mode] = rt.args();
const sockets = await Promise.all(Array.from({ length: 8 }, (_, i) => unixDgram.bind(`${prefix}-${i}`)));
const receives = sockets.map((s) => s.receive());
const ends = receives.map((r) => r.then(() => "data", (e) => (e instanceof ClosedError ? "closed" : String(e))));
await sockets[0]!.send(new Uint8Array([7]), sockets[1]!.address);
const got = await receives[1]!;
if (got.data[0] !== 7 || got.from !== sockets[0]!.address) {
  rt.printError(`unexpected datagram ${got.data} from ${got.from}\n`);
  rt.exit(1);
}
if (mode === "exit") rt.exit(0);
for (const s of sockets) await s.close();
const expected = sockets.map((_, i) => (i === 1 ? "data" : "closed"));
const seen = await Promise.all(ends);
if (seen.join() !== expected.join()) {
  rt.printError(`the receives ended with ${seen.join()}, not ${expected.join()}\n`);
  rt.exit(1);
}
// Nothing is left waiting: the event loop empties and the process ends here.
