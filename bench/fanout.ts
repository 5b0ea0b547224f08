/**
 * Fan-out, one publisher to 4 subscriber processes: ipckit's shared-memory publish-subscribe (each message written
 * once) against 4 separate SPSC shm channels (each message written 4 times) and against NATS on this machine (a
 * local nats-server), for 64 B and 64 KiB messages:
 * - latency: `--latency` messages one at a time (the next after a pause), one-way from the publisher's stamp to each
 *   subscriber (wall clock of one machine), p50 and p99 over all 4 subscribers (hdr-histogram);
 * - throughput: `--count` messages as fast as the publisher can, messages/s and MB/s until the last subscriber got
 *   the last one.
 * The subscribers run on `--runtime` (node by default). The nats-server is NATS_URL's, or one started here. The shm
 * rows run twice: subscribers copying each message out, and subscribers reading it where it lies (loans).
 *
 *   node --import tsx bench/fanout.ts [--runtime node|bun|deno] [--latency 2000] [--count 20000]
 *     [--only pubsub,spsc,nats]
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { runtime, runtimeArgv, type RuntimeName, shm } from "../mod.ts";
import { guard, reap, table } from "../cli/peers/launch.ts";
import { startNatsServer } from "../tests/helpers/nats_server.ts";
import { flags } from "./args.ts";
import { type Distribution, formatDistribution } from "./stats.ts";
import { spawnWithLines } from "../tests/helpers/child_lines.ts";

const rt = await runtime();
const { opt } = flags(rt.args());
const peer = opt("--runtime", "node") as RuntimeName;
const LATENCY = Number(opt("--latency", "2000"));
const COUNT = Number(opt("--count", "20000"));
const ONLY = opt("--only", "pubsub,spsc,nats").split(",");
const SUBSCRIBERS = 4;
const SIZES = [64, 64 * 1024];
const SUB = rt.fromFileUrl(new URL("./peers/fanout_sub.ts", import.meta.url));
const now = () => performance.timeOrigin + performance.now();

interface Result {
  latency: Distribution;
  last: number;
}

/** Publishes the latency phase then the throughput phase with `send`; the subscribers' results. */
async function run(
  size: number,
  start: (k: number) => string[],
  send: (m: Uint8Array) => Promise<void> | void,
  flush: () => Promise<void> = async () => {},
): Promise<{ latency: Distribution[]; perSecond: number }> {
  const children = Array.from(
    { length: SUBSCRIBERS },
    (_, k) => spawnWithLines(rt, [...runtimeArgv(peer, SUB), ...start(k)], {}),
  );
  try {
    for (const c of children) {
      const line = await guard(c.child, c.line(), "a subscriber to start");
      if (line !== "ready") throw new Error(`a subscriber says: ${line}`);
    }
    const m = new Uint8Array(size);
    const view = new DataView(m.buffer);
    for (let i = 0; i < LATENCY; i++) {
      view.setFloat64(0, now(), true);
      await send(m);
      await flush();
      await new Promise((r) => setTimeout(r, 0)); // one at a time: the next after the subscribers had time
    }
    view.setFloat64(8, 1, true); // the throughput phase: not timed one by one
    const t0 = now();
    for (let i = 0; i < COUNT; i++) await send(m);
    await flush();
    const results = await Promise.all(children.map((c) => guard(c.child, c.line(), "a subscriber to finish", 600_000)));
    const parsed = results.map((l) => JSON.parse(l) as Result);
    const end = Math.max(...parsed.map((r) => r.last));
    return { latency: parsed.map((r) => r.latency), perSecond: COUNT / ((end - t0) / 1000) };
  } finally {
    for (const c of children) await reap(c.child, "a subscriber");
  }
}

/** One row: the worst subscriber's p50 and p99 (each subscriber's distribution is its own). */
function row(label: string, size: number, r: { latency: Distribution[]; perSecond: number }): string[] {
  const worst = r.latency.reduce((a, b) => (b.p99 > a.p99 ? b : a));
  const p50 = Math.max(...r.latency.map((d) => d.p50));
  return [
    label,
    size >= 1024 ? `${size / 1024} KiB` : `${size} B`,
    p50.toFixed(1),
    worst.p99.toFixed(1),
    Math.round(r.perSecond).toLocaleString("en-US"),
    ((r.perSecond * size) / 1e6).toFixed(0),
  ];
}

const rows: string[][] = [["1 -> 4 fan-out", "size", "p50 (us)", "p99 (us)", "messages/s", "MB/s per subscriber"]];
const details: string[] = [];
const own = ONLY.includes("nats") && rt.env("NATS_URL") === undefined ? await startNatsServer() : undefined;
try {
  for (const size of SIZES) {
    const capacity = Math.max(1 << 20, size * 16);
    for (const lent of [false, true]) {
      const how = lent ? ", loans" : "";
      const extra = lent ? ["loan"] : [];
      if (ONLY.includes("pubsub")) {
        const name = `/ipckit-bench-fanout-${rt.pid}`;
        const pub = await shm.publisher(name, { capacity, maxSubscribers: SUBSCRIBERS });
        try {
          const r = await run(size, () => ["pubsub", name, `${LATENCY}`, `${COUNT}`, ...extra], async (m) => {
            if (!pub.tryPublish(m)) await pub.publish(m);
          });
          rows.push(row(`shm pub-sub (written once)${how}`, size, r));
          details.push(`pub-sub${how} ${size} B: ${r.latency.map(formatDistribution).join("; ")}`);
        } finally {
          await pub.close();
        }
      }
      if (ONLY.includes("spsc")) {
        const names = Array.from({ length: SUBSCRIBERS }, (_, k) => `/ipckit-bench-fanout-${rt.pid}-${k}`);
        const pending = names.map((n) => shm.create(n, { capacity }));
        let channels: shm.ShmChannel[] = [];
        const r = await run(size, (k) => ["spsc", names[k]!, `${LATENCY}`, `${COUNT}`, ...extra], async (m) => {
          if (channels.length === 0) channels = await Promise.all(pending);
          for (const ch of channels) if (!ch.trySend(m)) await ch.send(m);
        }).finally(async () => {
          for (const ch of channels.length ? channels : await Promise.all(pending)) await ch.close();
        });
        rows.push(row(`4 SPSC shm channels (written 4x)${how}`, size, r));
        details.push(`spsc${how} ${size} B: ${r.latency.map(formatDistribution).join("; ")}`);
      }
    }
    if (ONLY.includes("nats")) {
      const url = rt.env("NATS_URL") ?? own!.url;
      const nc = await connect({ servers: url, maxPingOut: 100 });
      const subject = `fanout.${rt.pid}.${size}`;
      try {
        const r = await run(size, () => ["nats", url, `${LATENCY}`, `${COUNT}`, subject], (m) => {
          nc.publish(subject, m);
        }, () => nc.flush());
        rows.push(row("NATS (local nats-server)", size, r));
        details.push(`nats ${size} B: ${r.latency.map(formatDistribution).join("; ")}`);
      } finally {
        await nc.close();
      }
    }
  }
} finally {
  await own?.stop();
}
console.log(
  `Fan-out to ${SUBSCRIBERS} ${peer} subscriber processes (${LATENCY} timed messages, ${COUNT} for throughput)`,
);
console.log(table(rows));
for (const d of details) console.log(d);
