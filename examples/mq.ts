/**
 * A producer and a consumer over one POSIX message queue, with priorities: this process creates the queue and
 * starts a consumer child on the same runtime; the producer sends ordinary jobs at priority 0 and urgent ones at
 * priority 10, and the consumer (which starts late on purpose) takes the urgent ones first. A zero-length message
 * at priority 0 tells the consumer to stop: it comes after every job.
 *
 *   node --import tsx examples/mq.ts
 *   npx deno run -A examples/mq.ts
 *   npx bun examples/mq.ts
 *
 * @module
 */
import { MessageQueue, runtime, runtimeArgv } from "../mod.ts";

const rt = await runtime();
const [role, name] = rt.args();
const text = new TextEncoder();
const untext = new TextDecoder();

if (role === "consumer") {
  using jobs = await MessageQueue.open(name!, { mode: "read" });
  await new Promise((r) => setTimeout(r, 300)); // let the producer queue everything first
  for (;;) {
    const { data, priority } = await jobs.receive({ timeout: 30_000 });
    if (data.byteLength === 0) break;
    console.log(`${rt.name} consumer: priority ${priority}: ${untext.decode(data)}`);
  }
} else {
  const queueName = `/ipckit-example-jobs-${rt.pid}`;
  using jobs = await MessageQueue.create(queueName, { maxMessages: 10, messageSize: 256 });
  try {
    const script = rt.fromFileUrl(import.meta.url);
    const child = rt.spawn([...runtimeArgv(rt.name, script), "consumer", queueName], { stdio: "inherit" });
    for (let i = 1; i <= 6; i++) {
      const urgent = i % 3 === 0;
      await jobs.send(text.encode(`${urgent ? "urgent" : "ordinary"} job ${i}`), { priority: urgent ? 10 : 0 });
    }
    await jobs.send(new Uint8Array(0)); // stop, after every job of priority 0
    const status = await child.exited;
    console.log(`${rt.name} producer: consumer exited with ${status.code}`);
  } finally {
    jobs.unlink();
  }
}
