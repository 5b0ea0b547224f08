/**
 * A shared counter across a Deno, a Bun and a Node process: one shared memory segment holds a `Mutex`, a `Barrier`
 * and the counter. Each process waits at the barrier until all three are there, adds 10 000 to the counter one
 * plain read-modify-write at a time under the mutex, and meets the others at the barrier again; then the first
 * process reads 30 000.
 *
 *   node --import tsx examples/shared_counter.ts
 *   npx deno run -A examples/shared_counter.ts
 *   npx bun examples/shared_counter.ts
 *
 * @module
 */
import { Barrier, Mutex, runtime, runtimeArgv, type RuntimeName, SharedMemory } from "../mod.ts";

const rt = await runtime();
const [role, name] = rt.args();
const ADDS = 10_000;

/** Segment layout: Mutex at 0, Barrier at 16, the counter (an Int32) at byte 64. */
async function work(segment: SharedMemory): Promise<void> {
  const mutex = Mutex.in(segment, 0);
  const barrier = Barrier.in(segment, 16, 3);
  const counter = new Int32Array(segment.buffer, 64, 1);
  await barrier.wait({ timeout: 60_000 });
  for (let i = 0; i < ADDS; i++) {
    using _guard = await mutex.acquire();
    counter[0] = counter[0]! + 1; // not atomic: the mutex makes it safe
  }
  await barrier.wait({ timeout: 60_000 });
}

if (role === "worker") {
  const segment = await SharedMemory.open(name!);
  try {
    await work(segment);
  } finally {
    segment.close();
  }
} else {
  const segmentName = `/ipckit-example-counter-${rt.pid}`;
  const segment = await SharedMemory.create(segmentName, { size: 4096 });
  try {
    const others = (["deno", "bun", "node"] as RuntimeName[]).filter((r) => r !== rt.name);
    const children = others.map((r) =>
      rt.spawn([...runtimeArgv(r, rt.fromFileUrl(import.meta.url)), "worker", segmentName], { stdio: "inherit" })
    );
    await work(segment);
    for (const child of children) await child.exited;
    console.log(`${rt.name} + ${others.join(" + ")}: counter = ${new Int32Array(segment.buffer, 64, 1)[0]}`);
  } finally {
    segment.close();
    await SharedMemory.unlink(segmentName);
  }
}
