/**
 * Worker thread for tests/liveness.test.ts: opens the segment it is sent, locks the process-shared Mutex at offset 0
 * and says so, then holds it until the thread is terminated.
 */
import { Mutex, SharedMemory } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const port = rt.parentPort()!;
port.onMessage(async (name) => {
  try {
    const segment = await SharedMemory.open(name as string);
    await Mutex.in(segment, 0).lock();
    port.postMessage("locked");
  } catch (e) {
    port.postMessage(`error: ${(e as Error)?.stack ?? e}`);
  }
});
