import { test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, nats, rpc, TimeoutError } from "../mod.ts";
import type { ChildProcess, RuntimeName } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { rpcConformanceFor } from "./conformance/registry.ts";
import { subject, useServer } from "./conformance/fixtures_nats.ts";
import { natsServerForFile } from "./helpers/nats_server.ts";

const server = natsServerForFile(useServer);

await rpcConformanceFor("nats_rpc");

const LONG = { timeout: 180_000 };
const SERVER = new URL("./helpers/nats_rpc_server.ts", import.meta.url);

/** Starts one server per runtime in the queue group of `s`; resolves when all announced themselves. */
async function startServers(link: nats.NatsLink, s: string, runtimes: RuntimeName[]): Promise<ChildProcess[]> {
  const rt = await runtime();
  const ready = new Set<string>();
  let wake = () => {};
  const sub = link.connection.subscribe(`${s}.ready`, {
    callback: (_e, m) => {
      ready.add(new TextDecoder().decode(m.data));
      wake();
    },
  });
  await link.connection.flush();
  const children = runtimes.map((r) =>
    rt.spawn([...runtimeArgv(r, rt.fromFileUrl(SERVER)), server.url, s], { stdio: "null", stderr: "inherit" })
  );
  try {
    const deadline = Date.now() + 60_000;
    while (ready.size < runtimes.length) {
      if (Date.now() > deadline) throw new Error(`only ${ready.size} of ${runtimes.length} servers started`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 500);
      });
    }
    return children;
  } catch (e) {
    for (const c of children) c.kill("SIGKILL");
    throw e;
  } finally {
    sub.unsubscribe();
  }
}

async function stopAll(children: ChildProcess[]): Promise<void> {
  for (const c of children) c.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited.catch(() => {})));
}

test("rpc over NATS: servers in a queue group share the connections of a cluster client", LONG, async () => {
  await using link = await nats.open({ servers: server.url });
  const s = subject();
  const children = await startServers(link, s, ["bun", "deno"]);
  try {
    await using calc = rpc.cluster<{ whoami(): { pid: number } }>(() => nats.connect(s, { link }), { sessions: 24 });
    await calc.ready();
    const pids = new Set<number>();
    for (let i = 0; i < 72; i++) pids.add((await calc.api.whoami()).pid);
    // 24 connections each to one of 2 servers (NATS picks a queue member at random): all on one has probability
    // 2^-23. With 12 it was 2^-11, and a full run (three runners) met it once.
    assert.equal(pids.size, 2, `calls reached ${[...pids]}`);
  } finally {
    await stopAll(children);
  }
});

test(
  "rpc over NATS: a SIGKILLed server loses no call: idempotent ones are retried, the others fail clearly",
  LONG,
  async () => {
    await using link = await nats.open({ servers: server.url });
    const s = subject();
    const children = await startServers(link, s, ["node", "bun"]);
    const pidOf = new Map(children.map((c) => [c.pid, c]));
    try {
      await using svc = rpc.cluster<{ work(ms: number, i: number): { pid: number; i: number } }>(
        () => nats.connect(s, { link, heartbeat: 300 }),
        { sessions: 6, retries: 3 },
      );
      await svc.ready();
      const total = 600;
      const byPid = new Map<number, number>();
      let killed: number | undefined;
      const results: Array<{ ok: boolean; idempotent: boolean; value: unknown }> = [];
      let next = 0;
      const lane = async () => {
        while (next < total) {
          const i = next++;
          const idempotent = i % 2 === 0;
          try {
            const r = await svc.callWith("work", [5, i], { idempotent, timeout: 60_000 }) as { pid: number; i: number };
            assert.equal(r.i, i);
            byPid.set(r.pid, (byPid.get(r.pid) ?? 0) + 1);
            results.push({ ok: true, idempotent, value: r });
          } catch (e) {
            results.push({ ok: false, idempotent, value: e });
          }
          if (killed === undefined && results.length >= 150) {
            // Kill the busiest server mid-load: it holds calls in flight right now.
            killed = [...byPid.entries()].sort((a, b) => b[1] - a[1])[0]![0];
            pidOf.get(killed)!.kill("SIGKILL");
          }
        }
      };
      await Promise.all(Array.from({ length: 24 }, lane));
      assert.equal(results.length, total, "every call settled once");
      for (const r of results) {
        if (r.ok) continue;
        assert.ok(!r.idempotent, `an idempotent call failed: ${r.value}`);
        assert.ok(r.value instanceof ClosedError && /was lost/.test(r.value.message), String(r.value));
      }
      const lost = results.filter((r) => !r.ok).length;
      const stats = svc.stats;
      assert.equal(stats.lost, lost);
      assert.ok(stats.retried + stats.lost > 0, "the kill caught calls in flight");
      assert.ok(stats.reconnects >= 1, "the killed server's connections were replaced");
      // After the kill everything went to the survivor.
      const survivor = children.find((c) => c.pid !== killed)!.pid;
      const r = await svc.callWith("work", [0, -1], { idempotent: true }) as { pid: number };
      assert.equal(r.pid, survivor);
      console.log(
        `# ${total} calls: ${results.length - lost} answered, ${stats.retried} retried, ${lost} lost (not idempotent)`,
      );
    } finally {
      await stopAll(children);
    }
  },
);

test(
  "rpc over NATS: a cluster call waits for a server, then times out clearly; deadlines and bad options",
  LONG,
  async () => {
    await using link = await nats.open({ servers: server.url });
    const s = subject();
    await using svc = rpc.cluster(() => nats.connect(s, { link, timeout: 200 }), { sessions: 1, connectTimeout: 500 });
    await assert.rejects(
      svc.call("anything"),
      (e: Error) => e instanceof ClosedError && /no connection came up/.test(e.message),
    );
    await assert.rejects(svc.callWith("anything", [], { timeout: 100 }), TimeoutError);
    assert.throws(() => rpc.cluster(() => nats.connect(s, { link }), { sessions: 0 }), RangeError);
    assert.throws(() => rpc.cluster(42 as never), TypeError);
  },
);
