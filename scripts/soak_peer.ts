/**
 * The child processes of `npm run soak` (`scripts/soak.ts`), on any runtime:
 *
 *   soak_peer.ts consume '<SoakJob>'    the consumer of one transport's soak; starts its producers
 *   soak_peer.ts produce '<ProduceJob>' one producer
 *   soak_peer.ts survive '<ChaosJob>'   the survivor of one transport's chaos rounds; starts its victims
 *   soak_peer.ts victim '<VictimJob>'   a victim (killed or stopped by its survivor)
 *
 * The job is JSON in one argument. The consumer and the survivor write their report to the job's `out` file.
 * Exit codes: 0 done, 1 failed (the error on stderr). A pipe producer's stdout is its channel: nothing else is
 * ever printed there.
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import { type ChaosJob, survive } from "./soak/chaos.ts";
import { victim, type VictimJob } from "./soak/victim.ts";
import { consume, produce, type ProduceJob, type SoakJob } from "./soak/consume.ts";
import { describe, report } from "./soak/proc.ts";

const rt = await runtime();
const [mode, json] = rt.args();
try {
  const job: unknown = JSON.parse(json ?? "null");
  switch (mode) {
    case "consume":
      report((job as SoakJob).out, await consume(job as SoakJob));
      break;
    case "produce":
      await produce(job as ProduceJob);
      break;
    case "survive":
      report((job as ChaosJob).out, await survive(job as ChaosJob));
      break;
    case "victim":
      await victim(job as VictimJob);
      break;
    default:
      throw new TypeError(`Cannot run soak_peer.ts "${mode}": modes are consume, produce, survive, victim`);
  }
} catch (e) {
  rt.printError(`soak_peer ${mode} (${rt.name}, pid ${rt.pid}): ${describe(e)}\n`);
  rt.exit(1);
}
rt.exit(0);
