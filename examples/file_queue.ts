/**
 * A durable job queue that survives crashes. Without arguments it runs the whole story in one go: a Bun producer
 * queues 20 jobs, a Deno consumer works on them and is killed with SIGKILL mid-run, a Node consumer takes over, and
 * every job gets done: acknowledged jobs never come again, the one the dead consumer held comes again (at least
 * once delivery). Results come back to this process over a second file queue.
 *
 *   node --import tsx examples/file_queue.ts          (or: npx deno run -A / npx bun; the children are fixed)
 *
 * Or run the parts yourself in two terminals, kill either (Ctrl-C, or even `kill -9`) and start it again:
 *
 *   npx deno run -A examples/file_queue.ts produce /tmp/ipckit-jobs
 *   npx bun examples/file_queue.ts consume /tmp/ipckit-jobs
 *
 * The first process to start creates the queue directory; later ones open it.
 *
 * @module
 */
import { FileQueue, NotFoundError, runtime, runtimeArgv } from "../mod.ts";

const rt = await runtime();
const [role, dir = "/tmp/ipckit-jobs", extra] = rt.args();
const text = new TextEncoder();
const untext = new TextDecoder();
const JOBS = 20;

/** Opens the queue, creating it on first use (a lost race against the other process just opens it). */
async function openQueue(path: string): Promise<FileQueue> {
  try {
    return await FileQueue.open(path, { fsync: true });
  } catch (e) {
    if (!(e instanceof NotFoundError)) throw e;
    return await FileQueue.create(path, { fsync: true }).catch(() => FileQueue.open(path, { fsync: true }));
  }
}

/** Receives with a timeout; undefined when nothing came. */
async function next(queue: FileQueue, ms: number): Promise<Uint8Array | undefined> {
  return await queue.receive({ timeout: ms }).catch((e) => {
    if ((e as Error).name === "TimeoutError") return undefined;
    throw e;
  });
}

if (role === "produce" || role === "consume") {
  // produce <dir> [count]: queue jobs (forever, one every 500 ms, unless a count is given).
  // consume <dir> [results-dir]: work on jobs until SIGINT/SIGTERM; report each done job to results-dir if given.
  const queue = await openQueue(dir);
  const results = role === "consume" && extra ? await FileQueue.open(extra) : undefined;
  let stop = false;
  const handlers = [rt.onSignal("SIGINT", () => (stop = true)), rt.onSignal("SIGTERM", () => (stop = true))];
  try {
    if (role === "produce") {
      const count = extra === undefined ? Infinity : Number(extra);
      for (let i = 0; i < count && !stop; i++) {
        await queue.send(text.encode(JSON.stringify({ job: i, from: `${rt.name}:${rt.pid}` })));
        if (extra === undefined) {
          console.log(`sent job ${i}`);
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    } else {
      while (!stop) {
        const job = await next(queue, 200);
        if (job === undefined) continue;
        const { job: id } = JSON.parse(untext.decode(job)) as { job: number };
        await new Promise((r) => setTimeout(r, 20)); // the work
        if (results) await results.send(text.encode(`${id} ${rt.name}`));
        else console.log(`processed job ${id}`);
        await queue.ack(); // only now is the job done: a crash before this line gets it again
      }
    }
  } finally {
    for (const h of handlers) h[Symbol.dispose]();
    await results?.close();
    await queue.close();
  }
} else {
  // The whole story, with a fresh directory.
  const base = await rt.makeTempDir("ipckit-example-queue-");
  const jobsDir = `${base}/jobs`;
  const resultsDir = `${base}/results`;
  const script = rt.fromFileUrl(import.meta.url);
  const results = await FileQueue.create(resultsDir);
  await (await FileQueue.create(jobsDir)).close();
  const start = (r: "deno" | "bun" | "node", ...args: string[]) =>
    rt.spawn([...runtimeArgv(r, script), ...args], { stdio: "inherit" });
  try {
    await start("bun", "produce", jobsDir, String(JOBS)).exited;
    console.log(`a Bun producer queued ${JOBS} jobs`);
    const done = new Map<number, string[]>();
    const collect = async (until: () => boolean) => {
      while (!until()) {
        const r = await next(results, 30_000);
        if (r === undefined) throw new Error("Cannot finish the example: no result for 30 s");
        await results.ack();
        const [id, by] = untext.decode(r).split(" ");
        done.set(Number(id), [...(done.get(Number(id)) ?? []), by!]);
      }
    };
    const first = start("deno", "consume", jobsDir, resultsDir);
    await collect(() => done.size >= 5);
    first.kill("SIGKILL"); // mid-run, maybe between a job's work and its ack
    await first.exited;
    console.log(`killed the Deno consumer with SIGKILL after ${done.size} jobs`);
    const second = start("node", "consume", jobsDir, resultsDir);
    await collect(() => done.size >= JOBS);
    second.kill("SIGTERM"); // a clean stop
    await second.exited;
    const twice = [...done].filter(([, by]) => by.length > 1).map(([id]) => id);
    console.log(
      `every job done: ${done.size} of ${JOBS}, none lost after the consumer was killed` +
        (twice.length ? ` (job ${twice.join(", ")} done twice: held by the killed consumer, not acknowledged)` : ""),
    );
  } finally {
    await results.close();
    await rt.removeDir(base);
  }
}
