/**
 * Frames written and read in place in shared memory, no copy on either side: this process (a Node, Deno or Bun
 * producer) lends 1 MiB of the ring for each frame and fills it there; a Bun child reads each frame where it lies,
 * checks it, and releases it.
 *
 *   node --import tsx examples/shm_loans.ts     (the child runs `bun examples/shm_loans.ts reader <name>`)
 *
 * @module
 */
import { runtime, runtimeArgv, shm } from "../mod.ts";

const rt = await runtime();
const [role, name] = rt.args();
const FRAME = 1 << 20;
const FRAMES = 64;

if (role === "reader") {
  const ch = await shm.open(name!, { wait: 10_000 });
  let sum = 0;
  for (let i = 0; i < FRAMES; i++) {
    using frame = await ch.receiveLoan(); // a view of the ring, released at the end of this block
    const b = frame.bytes;
    if (b.length !== FRAME || b[0] !== (i & 255) || b[FRAME - 1] !== (i & 255)) throw new Error(`frame ${i} is wrong`);
    sum += b[FRAME >> 1]!;
  }
  await ch.send(new Uint8Array(new Float64Array([sum]).buffer));
  await ch.close();
} else {
  const channelName = `/ipckit-example-${rt.pid}`;
  const pending = shm.create(channelName, { capacity: 4 * FRAME });
  const script = rt.fromFileUrl(import.meta.url);
  const child = rt.spawn([...runtimeArgv("bun", script), "reader", channelName], { stdio: "inherit" });
  const ch = await pending;
  const started = performance.now();
  for (let i = 0; i < FRAMES; i++) {
    const loan = await ch.loan(FRAME); // waits while the ring is full
    loan.bytes.fill(i & 255); // the frame is made where it goes
    loan.commit();
  }
  const sum = new Float64Array((await ch.receive()).slice().buffer)[0];
  const ms = performance.now() - started;
  console.log(
    `${rt.name} producer: ${FRAMES} frames of 1 MiB read in place by bun (checksum ${sum}) in ${ms.toFixed(0)} ms`,
  );
  await ch.close();
  console.log(`${rt.name} producer: the reader exited with code ${(await child.exited).code}`);
}
