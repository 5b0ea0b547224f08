/**
 * `npm run soak`: every transport carries a million messages from 4 concurrent producers across runtimes, checked
 * one by one; then a chaos run SIGKILLs and SIGSTOPs peers of every transport; then `ipckit clean` must leave
 * nothing. Prints Markdown tables (one row per transport) and exits 1 if anything failed.
 *
 *   npm run soak                                   soak (1 000 000 messages per transport), chaos, leftovers check
 *   npm run soak -- --messages 100000 --only shm,unix
 *   npm run soak -- --chaos                        the chaos run (and the leftovers check) only
 *   npm run soak -- --no-chaos                     the soak only
 *   deno run -A scripts/soak.ts / bun scripts/soak.ts   the same, orchestrated from Deno or Bun
 *
 * Options: `--messages N` per transport (1 000 000), `--producers N` (4), `--only a,b`, chaos rounds per transport
 * `--kills N` (SIGKILL at a random point, 2), `--larges N` (SIGKILL in a large message, 2), `--stops N` (1), `--seed N`, `--timeout MS` the receive timeout
 * of SIGSTOP rounds and datagram transports (1000), `--bound MS` the SIGKILL-to-error limit (1000),
 * `--heartbeat MS` the NATS heartbeat of the chaos run (200: a dead peer is declared gone after 3 to 4 silent beats;
 * the soak keeps the default 1000).
 *
 * What it checks, and the message format and size distribution: `scripts/soak/message.ts` (soak) and
 * `scripts/soak/chaos.ts` (chaos). Each transport's soak runs in a consumer child process on one runtime whose
 * producers are children on the two others, rotating so every (producer, consumer) pair of runtimes appears.
 * Every child gets the run's own owner-record registry (`IPCKIT_REGISTRY`), which `ipckit clean` then cleans.
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import { startNatsServer } from "../tests/helpers/nats_server.ts";
import type { ChaosResult } from "./soak/chaos.ts";
import type { SoakResult } from "./soak/consume.ts";
import { chaosTable, chaosVerdict, estimate, leftoversText, soakTable, soakVerdict } from "./soak/report.ts";
import { allUsed, checkLeftovers, runChaos, type RunOptions, runSoak } from "./soak/run.ts";
import { type SoakTransport, transport, TRANSPORTS } from "./soak/transports.ts";

const rt = await runtime();
const argv = rt.args();
const KNOWN = [
  "--messages",
  "--producers",
  "--only",
  "--kills",
  "--larges",
  "--stops",
  "--seed",
  "--timeout",
  "--bound",
];
const FLAGS = ["--chaos", "--no-chaos"];
/** Bad usage: says why and exits 2, as the ipckit command does. */
function usage(why: string): never {
  rt.printError(`soak: ${why}\nusage: npm run soak -- [--messages N] [--only a,b] [--chaos | --no-chaos] ...\n`);
  return rt.exit(2);
}
for (let i = 0; i < argv.length; i++) {
  if (KNOWN.includes(argv[i]!) || argv[i] === "--heartbeat") i++;
  else if (!FLAGS.includes(argv[i]!)) usage(`unknown option "${argv[i]}"`);
}
const flag = (name: string) => argv.includes(name);
const value = (name: string, fallback: number, min = 0): number => {
  const i = argv.indexOf(name);
  if (i < 0) return fallback;
  const n = Number(argv[i + 1]);
  if (!Number.isSafeInteger(n) || n < min) usage(`cannot use ${name} ${argv[i + 1]}: it must be an integer >= ${min}`);
  return n;
};
const onlyAt = argv.indexOf("--only");
let chosen: SoakTransport[] = [...TRANSPORTS];
try {
  if (onlyAt >= 0) chosen = (argv[onlyAt + 1] ?? "").split(",").map(transport);
} catch (e) {
  usage((e as Error).message);
}
const chaosOnly = flag("--chaos");
const soak = !chaosOnly;
const chaos = !flag("--no-chaos");
const bound = value("--bound", 1000);
const settings = {
  messages: value("--messages", 1_000_000, 1),
  producers: value("--producers", 4, 1),
  rounds: { kill: value("--kills", 2), large: value("--larges", 2), stop: value("--stops", 1) },
  seed: value("--seed", Date.now() % 1_000_000_000),
  heartbeat: { soak: 1000, chaos: value("--heartbeat", 200, 10) },
  timeout: value("--timeout", 1000, 1),
};

const log = (line: string) => rt.printError(`${line}\n`);
const dir = await rt.makeTempDir("ipckit-soak-");
const registry = await rt.makeTempDir("ipckit-soak-registry-");
let nats: Awaited<ReturnType<typeof startNatsServer>> | undefined;
let transports = chosen;
if (chosen.some((t) => t.name === "nats")) {
  try {
    nats = await startNatsServer();
  } catch (e) {
    log(`nats: skipped (${(e as Error).message.split("\n")[0]})`);
    transports = chosen.filter((t) => t.name !== "nats");
  }
}

const o: RunOptions = {
  ...settings,
  transports,
  dir,
  tag: `ipckit-soak-${Math.random().toString(36).slice(2, 8)}`,
  registry,
  stall: 120_000,
  log,
  ...(nats === undefined ? {} : { nats: nats.url }),
};

let failed = false;
const started = performance.now();
const reports: { used: SoakResult["used"] }[] = [];
try {
  log(`soak run: seed ${o.seed}, ${transports.map((t) => t.name).join(", ")}, directory ${dir}`);
  if (soak) {
    const results = await runSoak(o);
    reports.push(...results);
    failed ||= results.some((r) => !soakVerdict(r).ok);
    console.log(`\n## Soak: ${o.messages} messages per transport from ${o.producers} producers (seed ${o.seed})\n`);
    console.log(soakTable(results));
    console.log(
      `\nSizes: 50 % 12 B-1 KiB, 45 % 1-8 KiB, 5 % 8-64 KiB (mean ~3.1 KiB). Loss counts only for reliable ` +
        `transports; udp (reliable: false) reports it. At these rates 1 000 000 messages per transport take ` +
        `~${estimate(results, 1_000_000).toFixed(0)} min of transfer in all, plus process starts.`,
    );
  }
  if (chaos) {
    const results: ChaosResult[] = await runChaos(o);
    reports.push(...results);
    failed ||= results.some((r) => !chaosVerdict(r, bound).ok);
    console.log(`\n## Chaos: SIGKILL and SIGSTOP of a peer (bound ${bound} ms, receive timeout ${o.timeout} ms)\n`);
    console.log(chaosTable(results, bound));
    console.log(
      `\nA datagram transport has no connection: a dead peer is silence, so a receive timeout is checked instead. ` +
        `NATS notices a dead peer by its heartbeat (${o.heartbeat.chaos} ms here): gone after 3 silent beats.`,
    );
    for (const r of results) {
      for (const x of r.rounds) {
        const what = `${x.kind}${x.size === undefined ? "" : ` ${(x.size / 1048576).toFixed(1)} MiB`}`;
        log(
          `  ${r.transport} ${what} victim ${x.victim}${x.victimHosts ? " (hosting)" : ""}: ${x.ok ? "ok" : "FAIL"} ` +
            `${x.error} after ${x.ms.toFixed(0)} ms${
              x.mid === undefined ? "" : x.mid ? ", mid-message" : ", after it"
            }` +
            `${x.note ? `; ${x.note}` : ""}`,
        );
      }
    }
  }
} finally {
  await nats?.stop();
  const leftovers = await checkLeftovers(o, allUsed(reports));
  failed ||= leftovers.left.length > 0;
  console.log(`\n## Leftovers\n\n${leftoversText(leftovers)}`);
  await rt.removeDir(dir).catch(() => {});
  await rt.removeDir(registry).catch(() => {});
}
console.log(`\n${failed ? "FAILED" : "passed"} in ${((performance.now() - started) / 60_000).toFixed(1)} min`);
rt.exit(failed ? 1 : 0);
