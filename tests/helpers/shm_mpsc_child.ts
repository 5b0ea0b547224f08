/**
 * Child of `tests/shm_mpsc.test.ts`, one process of any runtime:
 *
 *   shm_mpsc_child.ts send <name> <count> <maxSize> <seed>   a producer: messages 0..count-1 of `shm_batch_data.ts`'s
 *                                                            stream for `seed`, half of them through loans; then exits
 *   shm_mpsc_child.ts flood <name> <maxSize> <seed>          a producer that sends that stream until it is killed,
 *                                                            each message through a loan held open for a random spin
 *                                                            (so a SIGKILL lands mid-write most of the time)
 *   shm_mpsc_child.ts burst <name> <count>                    a producer: `count` 8-byte messages (its number, twice) as
 *                                                            fast as it can (`trySend`, `send` when full); then exits
 *   shm_mpsc_child.ts collect <name>                          a collector that waits to be killed (prints "ready")
 *   shm_mpsc_child.ts stats <name> <count>                    stats on; a producer sends `count` messages of 10 bytes,
 *                                                            prints `ready <slot> <its stats segment>`, and on SIGTERM
 *                                                            closes and exits (its exit hook removes the segment)
 *
 * @module
 */
import { ClosedError, runtime, shm, stats } from "../../mod.ts";
import { segmentName } from "../../shm/stats.ts";
import { message, random } from "./shm_batch_data.ts";

const rt = await runtime();
const [mode, name, ...rest] = rt.args();

if (mode === "stats") {
  stats.setStats(true);
  const producer = await shm.producer(name!, { wait: 60_000 });
  for (let i = 0; i < Number(rest[0]); i++) await producer.send(new Uint8Array(10), { timeout: 60_000 });
  while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
  const stay = setInterval(() => {}, 1000);
  rt.onSignal("SIGTERM", () => {
    clearInterval(stay);
    void producer.close().then(() => rt.exit(0));
  });
  console.log(`ready ${producer.slot} ${segmentName()}`);
} else if (mode === "collect") {
  const collector = await shm.collector(name!, { capacity: 4096 });
  console.log("ready");
  await collector.receive({ timeout: 600_000 }).catch(() => {});
} else {
  const producer = await shm.producer(name!, { wait: 60_000 });
  try {
    if (mode === "send") {
      const [count, maxSize, seed] = rest.map(Number) as [number, number, number];
      for (let i = 0; i < count; i++) {
        const m = message(seed, i, maxSize);
        if (i % 2 === 0) await producer.send(m, { timeout: 120_000 });
        else {
          const loan = await producer.loan(Math.min(maxSize, m.length + (i % 5)), { timeout: 120_000 });
          loan.bytes.set(m);
          loan.commit(m.length);
        }
      }
    } else if (mode === "burst") {
      const m = new Uint8Array(8);
      const words = new Uint32Array(m.buffer);
      for (let i = 0; i < Number(rest[0]); i++) {
        words[0] = words[1] = i;
        if (!producer.trySend(m)) await producer.send(m, { timeout: 120_000 });
      }
    } else if (mode === "flood") {
      const [maxSize, seed] = rest.map(Number) as [number, number];
      const rand = random(seed);
      for (let i = 0;; i++) {
        const m = message(seed, i, maxSize);
        const loan = await producer.loan(m.length, { timeout: 120_000 });
        loan.bytes.set(m.subarray(0, m.length >> 1));
        const until = performance.now() + rand() * 2; // mid-write for up to 2 ms
        while (performance.now() < until) { /* a producer stalled between its claim and its commit */ }
        loan.bytes.set(m.subarray(m.length >> 1), m.length >> 1);
        loan.commit();
        if (i % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
    } else throw new Error(`unknown mode ${mode}`);
  } catch (e) {
    if (!(e instanceof ClosedError)) throw e;
  } finally {
    await producer.close();
  }
}
