/**
 * A durable job queue that survives restarts: run the producer and the consumer in two terminals, kill either
 * (Ctrl-C, or even `kill -9`) and start it again: no acknowledged job comes twice, no job is lost.
 *
 *   npx deno run -A examples/file_queue.ts produce /tmp/ipckit-jobs
 *   npx bun examples/file_queue.ts consume /tmp/ipckit-jobs
 *   node --import tsx examples/file_queue.ts produce /tmp/ipckit-jobs
 *
 * The first process to start creates the queue directory; later ones open it.
 *
 * @module
 */
import { fileQueue, NotFoundError, runtime } from "../mod.ts";

const rt = await runtime();
const [role, dir = "/tmp/ipckit-jobs"] = rt.args();
if (role !== "produce" && role !== "consume") {
  rt.printError("usage: file_queue.ts produce|consume [dir]\n");
  rt.exit(2);
}

/** Opens the queue, creating it on first use (a lost race against the other process just opens it). */
async function openQueue(): Promise<fileQueue.FileQueue> {
  try {
    return await fileQueue.open(dir, { fsync: true });
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
    return await fileQueue.create(dir, { fsync: true }).catch(() => fileQueue.open(dir, { fsync: true }));
  }
}

const queue = await openQueue();
let stop = false;
const onSignal = rt.onSignal("SIGINT", () => (stop = true));
const text = new TextEncoder();
const untext = new TextDecoder();

try {
  if (role === "produce") {
    for (let i = 0; !stop; i++) {
      await queue.send(text.encode(JSON.stringify({ job: i, from: `${rt.name}:${rt.pid}`, at: Date.now() })));
      console.log(`sent job ${i}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  } else {
    while (!stop) {
      const job = await queue.receive({ timeout: 1000 }).catch((e) => {
        if ((e as Error).name === "TimeoutError") return undefined;
        throw e;
      });
      if (job === undefined) continue;
      console.log(`processing ${untext.decode(job)}`);
      await queue.ack(); // only now is the job done: a crash before this line gets it again
    }
  }
} finally {
  onSignal[Symbol.dispose]();
  await queue.close();
}
