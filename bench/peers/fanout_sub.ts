/**
 * A subscriber of `bench/fanout.ts`: receives `latency + throughput` messages on one transport and prints what it
 * measured as JSON: the one-way latency of the latency phase (the publisher's wall-clock stamp in bytes 0-7 against
 * this process's clock; both read `performance.timeOrigin + performance.now()`), and the wall-clock time of the last
 * message.
 *
 *   fanout_sub.ts pubsub <name> <latency> <throughput> [loan]
 *   fanout_sub.ts spsc <name> <latency> <throughput> [loan]
 *
 * With `loan`, each message is read where it lies in the ring (`receiveLoan()`: its first and last byte, then
 * `release()`) instead of being copied out.
 *   fanout_sub.ts nats <url> <latency> <throughput> <subject>
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { runtime, shm } from "../../mod.ts";
import { Latency } from "../stats.ts";

const rt = await runtime();
const [kind, address, latencyArg, throughputArg, subject] = rt.args();
const lent = subject === "loan";
const total = Number(latencyArg) + Number(throughputArg);
const latency = new Latency();
const now = () => performance.timeOrigin + performance.now();
let got = 0;
let last = 0;
const stamp = new Uint8Array(8);
const stampView = new DataView(stamp.buffer);
/** Takes one message: the latency phase's (bytes 8-15 hold 0) are timed; the clock is read then, and at the last. */
const take = (m: Uint8Array) => {
  got++;
  if (m[15] === 0) {
    const t = now();
    stamp.set(m.subarray(0, 8));
    latency.record((t - stampView.getFloat64(0, true)) * 1000);
    last = t;
  } else if (got === total) last = now();
};
/** A lent message: read in place (its first and last byte, and the stamp), not copied. */
let touched = 0;
const takeLent = (m: Uint8Array) => {
  touched += m[0]! + m[m.length - 1]!;
  take(m);
};

if (kind === "pubsub") {
  const sub = await shm.subscriber(address!, { wait: 30_000 });
  console.log("ready");
  if (lent) {
    while (got < total) {
      const loan = sub.tryReceiveLoan() ?? await sub.receiveLoan();
      takeLent(loan.bytes);
      loan.release();
    }
  } else while (got < total) take(sub.tryReceive() ?? await sub.receive());
  await sub.close();
} else if (kind === "spsc") {
  const ch = await shm.open(address!, { wait: 30_000 });
  console.log("ready");
  if (lent) {
    while (got < total) {
      const loan = ch.tryReceiveLoan() ?? await ch.receiveLoan();
      takeLent(loan.bytes);
      loan.release();
    }
  } else while (got < total) take(ch.tryReceive() ?? await ch.receive());
  await ch.close();
} else {
  const nc = await connect({ servers: address! });
  let done!: () => void;
  const finished = new Promise<void>((r) => (done = r));
  nc.subscribe(subject!, {
    callback: (_e, m) => {
      take(m.data);
      if (got === total) done();
    },
  });
  await nc.flush();
  console.log("ready");
  await finished;
  await nc.close();
}
console.log(JSON.stringify({ latency: latency.summary(), last, touched: touched & 1 }));
