/**
 * Worker thread of `tests/shm_mpsc.test.ts`: makes a producer from the posted handle of a thread collector, then
 * - `{ mode: "send", count, maxSize, seed }`: sends messages 0..count-1 of `shm_batch_data.ts`'s stream for `seed`
 *   (every third through a loan), says "done" and closes;
 * - `{ mode: "hold" }`: reserves a record through a loan, says "loaned" and waits to be terminated;
 * - `{ mode: "flood", count }`: sends `count` 8-byte messages (its number, little-endian, twice) as fast as it can
 *   (`trySend`, and `send` when the ring is full), says "done" and closes.
 *
 * @module
 */
import { liveness, runtime, shm } from "../../mod.ts";
import { message } from "./shm_batch_data.ts";

interface Job {
  handle: shm.MpscHandle;
  mode: "send" | "hold" | "flood";
  count?: number;
  maxSize?: number;
  seed?: number;
}

const rt = await runtime();
const port = rt.parentPort()!;
port.onMessage(async (data) => {
  const job = data as Job;
  await liveness.identify(); // loads FFI here, so the producer records this thread's id: a terminated thread is dead
  const producer = shm.producerFromHandle(job.handle);
  if (job.mode === "hold") {
    const loan = await producer.loan(50);
    loan.bytes.fill(1);
    port.postMessage("loaned");
    return;
  }
  if (job.mode === "flood") {
    const m = new Uint8Array(8);
    const words = new Uint32Array(m.buffer);
    try {
      for (let i = 0; i < job.count!; i++) {
        words[0] = words[1] = i;
        if (!producer.trySend(m)) await producer.send(m, { timeout: 60_000 });
      }
      await producer.close();
      port.postMessage("done");
    } catch (e) {
      port.postMessage(`failed: ${e}`); // the test fails at once, not after its receive times out
    }
    return;
  }
  for (let i = 0; i < job.count!; i++) {
    const m = message(job.seed!, i, job.maxSize!);
    if (i % 3 === 0) {
      const loan = await producer.loan(m.length, { timeout: 60_000 });
      loan.bytes.set(m);
      loan.commit();
    } else await producer.send(m, { timeout: 60_000 });
  }
  await producer.close();
  port.postMessage("done");
});
