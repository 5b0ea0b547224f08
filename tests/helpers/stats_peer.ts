/**
 * Child of the stats tests (`tests/stats.test.ts`, `top.test.ts`, `monitor.test.ts`), of any runtime:
 *
 *   stats_peer.ts count <k>      stats on; a shm pair sends k messages of 10 bytes one way, then the process prints
 *                                `ready <its stats segment>` and stays until killed
 *   stats_peer.ts read <segment> prints another process's stats segment, as JSON (or `error <message>`)
 *   stats_peer.ts load           stats on; a shm pair sends a 100-byte message every millisecond or so, for ever;
 *                                prints `ready <its stats segment>` once the segment is there
 *   stats_peer.ts exit           stats on; a shm pair, closed; prints `made <its stats segment>` and ends (its event
 *                                loop runs dry: the exit hook removes the segment)
 *   stats_peer.ts leave <name>   stats on; a shm pair passes one message, and a shared memory segment <name> is made;
 *                                prints `ready <its stats segment>` and stays until killed (a SIGKILL leaves both)
 *
 * @module
 */
import { runtime, SharedMemory, shm, stats } from "../../mod.ts";
import { segmentName } from "../../shm/stats.ts";

const rt = await runtime();
const [mode, arg] = rt.args();
if (mode === "count") {
  stats.setStats(true);
  const [a, handle] = shm.pair();
  const b = shm.fromHandle(handle);
  for (let i = 0; i < Number(arg); i++) {
    await a.send(new Uint8Array(10));
    await b.receive();
  }
  while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
  console.log(`ready ${segmentName()}`);
  setInterval(() => {}, 1000); // stays, with its channels open, until the test kills it
} else if (mode === "load") {
  stats.setStats(true);
  const [a, handle] = shm.pair({ capacity: 1 << 16 });
  const b = shm.fromHandle(handle);
  void (async () => {
    for (;;) await b.receive();
  })();
  while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
  console.log(`ready ${segmentName()}`);
  for (;;) {
    await a.send(new Uint8Array(100));
    await new Promise((r) => setTimeout(r, 1));
  }
} else if (mode === "exit") {
  stats.setStats(true);
  const [a, handle] = shm.pair();
  const b = shm.fromHandle(handle);
  while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
  console.log(`made ${segmentName()}`);
  await a.close();
  await b.close();
} else if (mode === "leave") {
  stats.setStats(true);
  await SharedMemory.create(arg!, { size: 4096 });
  const [a, handle] = shm.pair();
  const b = shm.fromHandle(handle);
  await a.send(new Uint8Array(1));
  await b.receive();
  while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
  console.log(`ready ${segmentName()}`);
  setInterval(() => {}, 1000);
} else if (mode === "read") {
  try {
    console.log(JSON.stringify(await stats.readStats(arg!)));
  } catch (e) {
    console.log(`error ${(e as Error).name}: ${(e as Error).message}`);
  }
} else {
  throw new Error(`stats_peer.ts: unknown mode ${mode}`);
}
