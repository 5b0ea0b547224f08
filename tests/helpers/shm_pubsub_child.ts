/**
 * Child of `tests/shm_pubsub.test.ts`, one role per run (messages from `shm_pubsub_data.ts`, at most `max` bytes):
 *
 *   sub <name> <history> <leaveAfter> <max>   subscribe, print "ready", receive until the end (or `leaveAfter`
 *                                             messages, when >= 0), checking each message and that indexes follow
 *                                             each other; print `{"first":..,"count":..,"end":"closed"|"left"|..}`
 *   lag <name> <max>                          subscribe to an overwrite publisher and read slowly: every message must be
 *                                             exact, and after a LaggedError the next index must be the last one +
 *                                             1 + missed; print `{"count":..,"lags":..,"missed":..,"end":..}`
 *   stall <name>                              subscribe, print "ready", never read
 *   pub <name> <policy> <count> <subscribers> <max>
 *                                             create a publisher, print "ready", wait for `subscribers` live
 *                                             subscribers, publish messages 0..count-1, close, print "done"
 *   die <name> <count> <max>                  create a publisher (history: count), publish `count` messages, lend
 *                                             bytes and fill them without committing, print "ready", then sleep
 *                                             until killed
 *   stats <name> <count>                      stats on; subscribe, print `ready <its stats segment>`, receive `count`
 *                                             messages, print "received", and on SIGTERM close and exit (its exit
 *                                             hook removes the stats segment)
 *
 * @module
 */
import { ClosedError, runtime, shm, stats } from "../../mod.ts";
import { segmentName } from "../../shm/stats.ts";
import { indexOf, message } from "./shm_pubsub_data.ts";

const rt = await runtime();
const [role, name, ...rest] = rt.args();
const say = (line: string) => console.log(line);

if (role === "sub") {
  const [history, leaveAfter, max] = rest.map(Number) as [number, number, number];
  const sub = await shm.subscriber(name!, { history, wait: 30_000 });
  say("ready");
  let first = -1;
  let count = 0;
  let end = "closed";
  try {
    for (;;) {
      if (leaveAfter >= 0 && count === leaveAfter) {
        end = "left";
        break;
      }
      const i = indexOf(await sub.receive(), max);
      if (first < 0) first = i;
      else if (i !== first + count) throw new Error(`message ${i} after ${first + count - 1}`);
      count++;
    }
  } catch (e) {
    if (!(e instanceof ClosedError)) end = `${(e as Error).name}: ${(e as Error).message}`;
  } finally {
    await sub.close();
  }
  say(JSON.stringify({ first, count, end }));
} else if (role === "lag") {
  const max = Number(rest[0]);
  const sub = await shm.subscriber(name!, { wait: 30_000 });
  say("ready");
  let next = -1;
  let count = 0;
  let lags = 0;
  let missed = 0;
  let end = "closed";
  for (;;) {
    try {
      const i = indexOf(await sub.receive(), max);
      if (next >= 0 && i !== next) throw new Error(`message ${i}, expected ${next}`);
      next = i + 1;
      if (++count % 64 === 0) await new Promise((r) => setTimeout(r, 1));
    } catch (e) {
      if (e instanceof shm.LaggedError) {
        lags++;
        missed += e.missed;
        if (next >= 0) next += e.missed;
        continue;
      }
      if (!(e instanceof ClosedError)) end = `${(e as Error).name}: ${(e as Error).message}`;
      break;
    }
  }
  await sub.close();
  say(JSON.stringify({ count, lags, missed, end, last: next - 1 }));
} else if (role === "stall") {
  const sub = await shm.subscriber(name!, { wait: 30_000 });
  say("ready");
  await new Promise((r) => setTimeout(r, 600_000));
  await sub.close();
} else if (role === "pub") {
  const [policy, countArg, subsArg, maxArg] = rest;
  const [count, subs, max] = [Number(countArg), Number(subsArg), Number(maxArg)];
  const pub = await shm.publisher(name!, { capacity: 4096, policy: policy as shm.Policy });
  say("ready");
  while (pub.subscriberCount < subs) await new Promise((r) => setTimeout(r, 5));
  for (let i = 0; i < count; i++) await pub.publish(message(i, max), { timeout: 60_000 });
  await pub.close();
  say("done");
} else if (role === "die") {
  const [count, max] = rest.map(Number) as [number, number];
  const pub = await shm.publisher(name!, { capacity: 1 << 16, history: count });
  for (let i = 0; i < count; i++) await pub.publish(message(i, max));
  const loan = pub.tryLoan(100)!;
  loan.bytes.fill(0xee); // filled, never committed: subscribers must not see it
  say("ready");
  await new Promise((r) => setTimeout(r, 600_000));
} else if (role === "stats") {
  stats.setStats(true);
  const sub = await shm.subscriber(name!, { wait: 60_000 });
  while (segmentName() === undefined) await new Promise((r) => setTimeout(r, 10));
  const stay = setInterval(() => {}, 1000);
  rt.onSignal("SIGTERM", () => {
    clearInterval(stay);
    void sub.close().then(() => rt.exit(0));
  });
  say(`ready ${segmentName()}`);
  for (let i = 0; i < Number(rest[0]); i++) await sub.receive({ timeout: 60_000 });
  say("received");
} else {
  throw new Error(`unknown role ${role}`);
}
