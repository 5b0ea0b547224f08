/**
 * From one machine to many, simulated: a NATS server on this machine, and pool workers and RPC servers on two
 * other "hosts". The hosts are Linux network namespaces with veth links (their own addresses, routes and
 * hostnames, and no way to reach this machine's loopback); where namespaces cannot be made (no root), separate
 * processes that reach the server through other loopback addresses (127.0.0.2, 127.0.0.3) instead. The test prints
 * which one it used.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { nats, Pool, rpc, WorkerDiedError } from "../mod.ts";
import type { ChildProcess } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { type NatsServer, startNatsServer } from "./helpers/nats_server.ts";
import { HEARTBEAT, killAll, spawnWorker } from "./helpers/nats_workers.ts";
import { type Host, makeHosts } from "./helpers/netns.ts";

const LONG = { timeout: 300_000 };
let server: NatsServer;
let hosts: Array<{ url: string; prefix: string[]; hostname: string | undefined }> = [];
let removeHosts = () => {};
let mode = "";

before(async () => {
  const rt = await runtime();
  server = await startNatsServer({ host: "0.0.0.0" });
  // IPCKIT_TEST_NETNS=off forces the loopback fallback (to check it on a machine that has namespaces).
  const made = rt.env("IPCKIT_TEST_NETNS") === "off"
    ? { unavailable: "IPCKIT_TEST_NETNS=off" }
    : makeHosts(2, String(rt.pid));
  if ("hosts" in made) {
    removeHosts = made.remove;
    hosts = made.hosts.map((h: Host) => ({
      url: `nats://${h.gateway}:${server.port}`,
      prefix: h.prefix,
      hostname: h.hostname,
    }));
    mode = `network namespaces ${made.hosts.map((h) => `${h.ns} (${h.address})`).join(", ")}`;
  } else {
    hosts = ["127.0.0.2", "127.0.0.3"].map((a) => ({
      url: `nats://${a}:${server.port}`,
      prefix: [],
      hostname: undefined,
    }));
    mode = `loopback addresses 127.0.0.2 and 127.0.0.3 (no namespaces: ${made.unavailable})`;
  }
  console.log(`# multi-host simulation: ${mode}`);
});
after(async () => {
  await server?.stop();
  removeHosts();
});

const subject = () => `ipckit.test.hosts.${Math.random().toString(36).slice(2, 10)}`;

test(
  "many hosts: pool workers on two other hosts join a master here over NATS; a host's loss loses no task",
  LONG,
  async () => {
    const s = subject();
    const workers: ChildProcess[] = [];
    try {
      workers.push(await spawnWorker("deno", hosts[0]!.url, s, { prefix: hosts[0]!.prefix }));
      workers.push(await spawnWorker("bun", hosts[1]!.url, s, { prefix: hosts[1]!.prefix }));
      workers.push(await spawnWorker("node", hosts[1]!.url, s, { prefix: hosts[1]!.prefix }));
      const p = new Pool<{ run(n: number): number; whoami(): { pid: number } }>({
        transport: "nats",
        nats: { servers: server.url.replace("0.0.0.0", "127.0.0.1"), subject: s, heartbeat: HEARTBEAT },
        size: 3,
        concurrency: 4,
        signals: false,
      });
      await p.ready();
      const seen = p.stats.workers.map((w) => w.host);
      if (hosts[0]!.hostname) assert.deepEqual(new Set(seen), new Set([hosts[0]!.hostname, hosts[1]!.hostname]));
      // Lose host 0 (its only worker) in the middle of 3000 tasks.
      const tasks = Array.from(
        { length: 3000 },
        (_, i) => p.run(i, { idempotent: i % 2 === 0 }).then((v) => ({ ok: true, v }), (e) => ({ ok: false, v: e })),
      );
      await new Promise((r) => setTimeout(r, 50));
      workers[0]!.kill("SIGKILL");
      const out = await Promise.all(tasks);
      out.forEach((r, i) => {
        if (r.ok) assert.equal(r.v, i * i);
        else assert.ok(i % 2 === 1 && r.v instanceof WorkerDiedError, `task ${i}: ${r.v}`);
      });
      assert.equal(p.stats.done + p.stats.failed, 3000);
      assert.deepEqual(new Set(p.stats.workers.map((w) => w.host)), new Set([hosts[1]!.hostname ?? seen[1]]));
      await p.close();
    } finally {
      await killAll(workers);
    }
  },
);

test("many hosts: RPC servers on two hosts in one queue group serve a client here", LONG, async () => {
  const rt = await runtime();
  const s = subject();
  const script = rt.fromFileUrl(new URL("./helpers/nats_rpc_server.ts", import.meta.url));
  await using link = await nats.open({ servers: server.url.replace("0.0.0.0", "127.0.0.1") });
  const ready = new Set<string>();
  const sub = link.connection.subscribe(`${s}.ready`, {
    callback: (_e, m) => ready.add(new TextDecoder().decode(m.data)),
  });
  await link.connection.flush();
  const servers = hosts.map((h, i) =>
    rt.spawn([...h.prefix, ...runtimeArgv(i === 0 ? "bun" : "deno", script), h.url, s], {
      stdio: "null",
      stderr: "inherit",
    })
  );
  try {
    for (let i = 0; i < 600 && ready.size < 2; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(ready.size, 2, "both servers announced themselves");
    await using calc = rpc.cluster<{ whoami(): { pid: number } }>(() => nats.connect(s, { link }), { sessions: 24 });
    await calc.ready();
    const pids = new Set((await Promise.all(Array.from({ length: 96 }, () => calc.api.whoami()))).map((w) => w.pid));
    assert.deepEqual(pids, new Set(servers.map((c) => c.pid))); // 24 sessions on 2 servers: all on one is 2^-23
  } finally {
    sub.unsubscribe();
    await killAll(servers);
  }
});

test("many hosts: a namespace host cannot reach this machine's loopback (the isolation is real)", LONG, async (t) => {
  if (!hosts[0]!.hostname) return t.skip(`no namespaces here: ${mode}`);
  const rt = await runtime();
  const c = rt.spawn(
    [
      ...hosts[0]!.prefix,
      ...runtimeArgv("node", rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url))),
      "worker",
      "--nats",
      `nats://127.0.0.1:${server.port}`,
      "--module",
      "x.ts",
    ],
    { stdio: "null", stderr: "pipe" },
  );
  let err = "";
  for await (const chunk of c.stderr!) err += new TextDecoder().decode(chunk);
  assert.equal((await c.exited).code, 1);
  assert.match(err, /Cannot connect to NATS at nats:\/\/127\.0\.0\.1:\d+: nothing answers there/);
});
