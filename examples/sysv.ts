/**
 * A typed producer/consumer over one System V message queue. The producer makes a key with `ftok` (from this
 * file's path and a project id), creates the queue and starts a consumer child on the same runtime. Jobs are CBOR
 * values, and the message type ranks them: 1 = urgent, 2 = ordinary, 3 = "no more jobs". The consumer (which
 * starts late on purpose) asks for "the lowest type <= 3" (`receive({ type: -3 })`), so it takes the urgent jobs
 * first, then the ordinary ones, then the stop marker. The producer removes the queue at the end.
 *
 *   node --import tsx examples/sysv.ts
 *   npx deno run -A examples/sysv.ts
 *   npx bun examples/sysv.ts
 *
 * @module
 */
import { cbor, runtime, runtimeArgv, sysv, SysvQueue } from "../mod.ts";

interface Job {
  id: number;
  task: string;
}

const URGENT = 1, ORDINARY = 2, STOP = 3;
const rt = await runtime();
const [role, keyText] = rt.args();

if (role === "consumer") {
  using jobs = await SysvQueue.open(Number(keyText));
  await new Promise((r) => setTimeout(r, 300)); // let the producer queue everything first
  for (;;) {
    const { type, data } = await jobs.receive({ type: -STOP, timeout: 30_000 });
    if (type === STOP) break;
    const job = cbor.decode(data) as Job;
    console.log(`${rt.name} consumer: ${type === URGENT ? "urgent" : "ordinary"} job ${job.id}: ${job.task}`);
  }
} else {
  const script = rt.fromFileUrl(import.meta.url);
  const key = await sysv.key(script, (rt.pid % 255) + 1);
  const jobs = await SysvQueue.create(key); // mode 0600; AlreadyExistsError if the key is taken
  try {
    const child = rt.spawn([...runtimeArgv(rt.name, script), "consumer", String(key)], { stdio: "inherit" });
    for (let id = 1; id <= 6; id++) {
      const job: Job = { id, task: `resize image ${id}` };
      await jobs.send(id % 3 === 0 ? URGENT : ORDINARY, cbor.encode(job), { timeout: 10_000 });
    }
    await jobs.send(STOP, new Uint8Array(0));
    const status = await child.exited;
    console.log(`${rt.name} producer: consumer exited with ${status.code}`);
  } finally {
    jobs.remove();
  }
}
