/**
 * `npm run soak` at a tiny size, so the script cannot rot: the soak (2 000 messages from 2 producers, one of each of
 * the other runtimes, every message checked) and the chaos run (one round per transport family: SIGKILL, SIGKILL in the
 * middle of a large message, SIGSTOP), then `ipckit clean` must leave nothing. And the soak's own checker, fed
 * hand-made messages (flipped bytes, duplicates, reordering, losses, forged headers): a checker that cannot see a
 * fault would make every soak pass.
 *
 * No timing is asserted (the machine is shared): the SIGKILL-to-error times are the script's figures, not a test's.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { fileQueue, runtime } from "../mod.ts";
import { crc32, drawSize, HEADER, MessageWriter, random, split, Tally } from "../scripts/soak/message.ts";
import { chaosVerdict, soakVerdict } from "../scripts/soak/report.ts";
import { allUsed, checkLeftovers, type RoundCounts, runChaos, type RunOptions, runSoak } from "../scripts/soak/run.ts";
import { transport } from "../scripts/soak/transports.ts";
import { startNatsServer } from "./helpers/nats_server.ts";
import { takesSharedChecks } from "./helpers/runners.ts";

const rt = await runtime();
const SEED = Date.now() % 1_000_000_000;

/** A run of the soak's own: its directory and registry, removed by the caller. */
async function options(names: string[], nats?: string): Promise<RunOptions> {
  return {
    transports: names.map(transport),
    messages: 2000,
    producers: 2, // one of each other runtime, two writers at once (each is a process start, per transport and runner)
    rounds: { kill: 1, large: 0, stop: 0 },
    seed: SEED,
    dir: await rt.makeTempDir("ipckit-soak-test-"),
    tag: `ipckit-soak-${Math.random().toString(36).slice(2, 8)}`,
    registry: await rt.makeTempDir("ipckit-soak-test-registry-"),
    heartbeat: { soak: 1000, chaos: 500 }, // times are not asserted: no false death on a loaded machine
    timeout: 1000,
    stall: 60_000,
    log: () => {},
    ...(nats === undefined ? {} : { nats }),
  };
}

async function removeRun(o: RunOptions): Promise<void> {
  await rt.removeDir(o.dir).catch(() => {});
  await rt.removeDir(o.registry).catch(() => {});
}

/** A nats-server for the NATS family, or why there is none. */
async function maybeNats(): Promise<Awaited<ReturnType<typeof startNatsServer>> | string> {
  try {
    return await startNatsServer();
  } catch (e) {
    return `nats-server is not installed (${(e as Error).message.split("\n")[0]})`;
  }
}

test("soak messages: the checksum is zlib's CRC-32 and any flipped byte fails it", () => {
  console.log(`seed ${SEED}`);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), (bytes, at) => {
      assert.equal(crc32(bytes), fileQueue.crc32(bytes));
      const w = new MessageWriter(1, SEED, 4096);
      const m = w.fill(HEADER + bytes.length);
      const tally = new Tally([1]);
      m[at % m.length] = m[at % m.length]! ^ (1 + (at % 255));
      tally.add(m);
      assert.equal(tally.result().corrupt, 1);
    }),
    { numRuns: 200, seed: SEED },
  );
});

test("soak messages: sizes stay within 12 bytes and the transport's limit, about half under 1 KiB", () => {
  const next = random(SEED);
  const sizes = Array.from({ length: 20_000 }, () => drawSize(next, 65_507));
  assert.ok(sizes.every((s) => s >= HEADER && s <= 65_507));
  const small = sizes.filter((s) => s < 1024).length / sizes.length;
  assert.ok(small > 0.45 && small < 0.55, `${small} under 1 KiB`);
  assert.ok(sizes.some((s) => s > 32 * 1024), "the tail reaches past 32 KiB");
  assert.deepEqual(split(10, 4), [3, 3, 2, 2]);
});

test("soak checker: counts lost, duplicated, reordered and corrupt messages that a hostile peer forged", () => {
  const writers = [new MessageWriter(0, SEED, 2048), new MessageWriter(1, SEED, 2048)];
  const sent = writers.map((w) => Array.from({ length: 10 }, () => w.next().slice()));
  const tally = new Tally([10, 10]);
  const [a, b] = sent as [Uint8Array[], Uint8Array[]];
  for (const m of a) tally.add(m); // producer 0: all, in order
  // producer 1: 0, 1, 3, 2 (reordered), 3 again (duplicated), 4-8, 9 lost
  for (const i of [0, 1, 3, 2, 3, 4, 5, 6, 7, 8]) tally.add(b[i]!);
  tally.add(b[9]!.subarray(0, b[9]!.length - 1)); // cut short: corrupt, and 9 stays lost
  const forged = b[0]!.slice();
  new DataView(forged.buffer).setUint32(0, 7); // a producer that does not exist, with the CRC it had
  tally.add(forged);
  tally.add(new Uint8Array(5)); // shorter than a header
  assert.deepEqual(tally.result(), {
    messages: 23,
    bytes: tally.result().bytes,
    lost: 1,
    duplicated: 1,
    reordered: 1,
    corrupt: 3,
  });
});

test("soak verdicts: a reliable transport fails on any loss, udp reports it; a slow or failed chaos round fails", () => {
  const counts = { messages: 9, bytes: 90, lost: 1, duplicated: 0, reordered: 0, corrupt: 0 };
  const result = {
    transport: "unix",
    consumer: "deno" as const,
    producers: ["bun" as const],
    reliable: true,
    expected: 10,
    counts,
    wallMs: 1,
    dropped: 0,
    rss: { before: 0, after: 0, peak: 0 },
    errors: [],
    used: { shm: [], mq: [], sysv: [] },
  };
  assert.equal(soakVerdict(result).ok, false);
  assert.equal(soakVerdict({ ...result, transport: "udp", reliable: false }).ok, true);
  assert.equal(soakVerdict({ ...result, reliable: false, counts: { ...counts, corrupt: 1 } }).ok, false);
  const round = {
    kind: "kill" as const,
    victim: "node" as const,
    victimHosts: false,
    ok: true,
    error: "ClosedError",
    ms: 1500,
    received: 3,
    corrupt: 0,
    note: "",
  };
  const chaos = { transport: "shm", survivor: "deno" as const, rounds: [round], used: result.used };
  assert.equal(chaosVerdict(chaos, 2000).ok, true);
  assert.match(chaosVerdict(chaos, 1000).text, /500 ms over the 1000 ms bound/);
  assert.equal(chaosVerdict({ ...chaos, rounds: [{ ...round, ok: false, error: "hang" }] }, 2000).ok, false);
});

// The soak and the chaos run are the same whichever runner starts them: the consumer, the producers, the victims and
// the survivors are child processes of every runtime (by transport), and the runner only sets the stage and reads
// the result. One runner of the run takes them (tests/helpers/runners.ts).
if (takesSharedChecks()) {
  test("soak run: 2 000 messages from 2 producers (one per other runtime) per transport family, none lost, duplicated, reordered or corrupt, and nothing left", async (t) => {
    const server = await maybeNats();
    const names = ["pipe", "unix", "shm", "mq", "unixDgram", ...(typeof server === "string" ? [] : ["nats"])];
    if (typeof server === "string") t.diagnostic(`nats family left out: ${server}`);
    const o = await options(names, typeof server === "string" ? undefined : server.url);
    try {
      const results = await runSoak(o);
      for (const r of results) {
        assert.equal(soakVerdict(r).ok, true, `${r.transport}: ${soakVerdict(r).text}`);
        assert.equal(r.counts.messages, 2000, r.transport);
        assert.notEqual(r.producers.includes(r.consumer), true, `${r.transport}: producers of other runtimes`);
      }
      const left = await checkLeftovers(o, allUsed(results));
      assert.deepEqual(left.left, []);
    } finally {
      if (typeof server !== "string") await server.stop();
      await removeRun(o);
    }
  });

  test("chaos run: one round per transport family; the survivor gets ClosedError/ProtocolError (datagrams: a timeout), never hangs; ipckit clean leaves nothing", async (t) => {
    const server = await maybeNats();
    if (typeof server === "string") t.diagnostic(`nats family left out: ${server}`);
    const none: RoundCounts = { kill: 0, large: 0, stop: 0 };
    const plan: [string, RoundCounts][] = [
      ["unix", { ...none, kill: 2 }], // the second round's victim is the listener: its socket file is left for clean
      ["shm", { ...none, large: 1 }],
      ["mq", { ...none, stop: 1 }],
      ["unixDgram", { ...none, kill: 1 }],
      ...(typeof server === "string" ? [] : [["nats", { ...none, kill: 1 }] as [string, RoundCounts]]),
    ];
    const base = await options([], typeof server === "string" ? undefined : server.url);
    const results = [];
    try {
      for (const [name, rounds] of plan) {
        results.push(...await runChaos({ ...base, transports: [transport(name)], rounds }));
      }
      for (const r of results) {
        assert.equal(r.rounds.length > 0, true);
        for (const x of r.rounds) assert.equal(x.ok, true, `${r.transport} ${x.kind}: ${x.error} ${x.note}`);
        // The verdict beside the time bound (times are figures here, not assertions).
        const text = chaosVerdict(r, Infinity).text;
        assert.equal(text, "ok", `${r.transport}: ${text}`);
      }
      const left = await checkLeftovers(base, allUsed(results));
      assert.deepEqual(left.left, []);
      assert.ok(
        left.cleaned.some((c) => c.startsWith("unix ")),
        `clean removed the killed listener's socket: ${left.cleaned}`,
      );
    } finally {
      if (typeof server !== "string") await server.stop();
      await removeRun(base);
    }
  });
}
