/**
 * NATS next to the local transports, in one run:
 * - RPC: `add(i, 1)` from this process to a server child (`--runtime`) over a Unix socket, TCP and a NATS channel
 *   (through a local nats-server), and nats.js's own request/reply round trip to a child responder (the floor
 *   under any NATS RPC): the median call and calls/s with `--batch` in flight;
 * - Pool: trivial tasks (`--tasks` at once) on `--size` worker processes of `--runtime`, concurrency 16 per worker,
 *   on pipes, on shm, and over NATS (workers started with `ipckit worker --nats`), in tasks/s.
 * The nats-server is the one in NATS_URL, or one started on a free port. Medians of `--reps`.
 *
 *   node --import tsx bench/nats.ts [--runtime node|bun|deno] [--reps 5] [--calls 5000] [--batch 500]
 *     [--size 2] [--tasks 20000]
 *
 * @module
 */
import { nats, Pool, rpc, runtime, runtimeArgv, type RuntimeName, tcp, unix } from "../mod.ts";
import { guard, median, reap, ROOT, table } from "../cli/peers/launch.ts";
import { startNatsServer } from "../tests/helpers/nats_server.ts";
import { flags } from "./args.ts";

const rt = await runtime();
const args = rt.args();
const { opt } = flags(args);
const peer = opt("--runtime", "node") as RuntimeName;
const REPS = Number(opt("--reps", "5"));
const CALLS = Number(opt("--calls", "5000"));
const BATCH = Number(opt("--batch", "500"));
const SIZE = Number(opt("--size", "2"));
const TASKS = Number(opt("--tasks", "20000"));
const SERVER = rt.fromFileUrl(new URL("./peers/rpc_server.ts", import.meta.url));
const SQUARE = rt.fromFileUrl(new URL("./peers/pool_square.ts", import.meta.url));
const CLI = rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url));

type Add = (a: number, b: number) => Promise<number>;

async function calls(add: Add): Promise<{ p50: number; perSecond: number }> {
  for (let i = 0; i < 5000; i++) await add(i, 1); // warm-up
  const p50: number[] = [];
  const perSecond: number[] = [];
  const each = new Float64Array(CALLS);
  for (let r = 0; r < REPS; r++) {
    for (let i = 0; i < CALLS; i++) {
      const t = performance.now();
      if ((await add(i, 1)) !== i + 1) throw new Error("wrong sum");
      each[i] = performance.now() - t;
    }
    p50.push(median([...each]) * 1000);
    const t0 = performance.now();
    for (let done = 0; done < CALLS * 2; done += BATCH) {
      await Promise.all(Array.from({ length: BATCH }, (_, i) => add(i, 1)));
    }
    perSecond.push((CALLS * 2) / ((performance.now() - t0) / 1000));
  }
  return { p50: median(p50), perSecond: median(perSecond) };
}

async function tasks(pool: Pool<{ run(n: number): number }>): Promise<number> {
  await pool.ready();
  const round = async () => {
    const t0 = performance.now();
    const out = await Promise.all(Array.from({ length: TASKS }, (_, i) => pool.run(i)));
    if (out[7] !== 49) throw new Error("wrong square");
    return TASKS / ((performance.now() - t0) / 1000);
  };
  await round();
  const rates: number[] = [];
  for (let r = 0; r < REPS; r++) rates.push(await round());
  return median(rates);
}

const own = rt.env("NATS_URL") === undefined ? await startNatsServer() : undefined;
const url = rt.env("NATS_URL") ?? own!.url;
const dir = await rt.makeTempDir("ipckit-bench-nats-");
const spawn = (kind: string, address: string) =>
  rt.spawn([...runtimeArgv(peer, SERVER), kind, address], { cwd: ROOT, stdio: "null" });
const rpcRows: string[][] = [["RPC add(i, 1)", "call p50 (us)", `${BATCH} in flight (calls/s)`]];
const rpcRow = (label: string, m: { p50: number; perSecond: number }) =>
  rpcRows.push([label, m.p50.toFixed(1), Math.round(m.perSecond).toLocaleString("en-US")]);
const poolRows: string[][] = [["Pool, trivial task", "tasks/s"]];
try {
  {
    const listener = await unix.listen(`${dir}/rpc.sock`);
    const child = spawn("unix", `${dir}/rpc.sock`);
    const client = rpc.connect<{ add: Add }>(await guard(child, listener.accept(), `unix server on ${peer}`));
    rpcRow("ipckit rpc, unix socket", await calls(client.api.add));
    await client.close();
    await reap(child, "unix server");
    await listener.close();
  }
  {
    const listener = await tcp.listen({ port: 0 });
    const child = spawn("tcp", String(listener.port));
    const client = rpc.connect<{ add: Add }>(await guard(child, listener.accept(), `tcp server on ${peer}`));
    rpcRow("ipckit rpc, tcp", await calls(client.api.add));
    await client.close();
    await reap(child, "tcp server");
    await listener.close();
  }
  await using link = await nats.open({ servers: url });
  {
    const subject = `bench.rpc.${rt.pid}`;
    const listener = await nats.listen(subject, { link });
    const child = spawn("nats", `${url}|${subject}`);
    const client = rpc.connect<{ add: Add }>(await guard(child, listener.accept(), `nats server on ${peer}`));
    rpcRow("ipckit rpc, NATS channel", await calls(client.api.add));
    await client.close();
    await reap(child, "nats server");
    await listener.close();
  }
  {
    const subject = `bench.raw.${rt.pid}`;
    let up!: () => void;
    const isUp = new Promise<void>((r) => (up = r));
    const sub = link.connection.subscribe(`${subject}.up`, { callback: () => up() });
    await link.connection.flush();
    const child = spawn("nats-raw", `${url}|${subject}`);
    await guard(child, isUp, `nats.js responder on ${peer}`);
    sub.unsubscribe();
    const nc = link.connection as unknown as {
      request(s: string, d: Uint8Array, o: { timeout: number }): Promise<{ data: Uint8Array }>;
    };
    const bytes = new Uint8Array(8);
    rpcRow(
      "nats.js request/reply (8 bytes, no codec)",
      await calls(async (a, b) => {
        await nc.request(subject, bytes, { timeout: 60_000 });
        return a + b;
      }),
    );
    link.connection.publish(`${subject}.stop`, new Uint8Array());
    await reap(child, "nats.js responder");
  }
  for (const transport of ["pipe", "shm"] as const) {
    const pool = new Pool<{ run(n: number): number }>({
      worker: new URL(`file://${SQUARE}`),
      kind: "process",
      runtime: peer,
      size: SIZE,
      concurrency: 16,
      transport,
      signals: false,
      maxQueue: TASKS * 2,
    });
    poolRows.push([
      `ipckit Pool, ${SIZE} ${peer} workers on ${transport}`,
      Math.round(await tasks(pool)).toLocaleString("en-US"),
    ]);
    await pool.close();
  }
  {
    const subject = `bench.pool.${rt.pid}`;
    const pool = new Pool<{ run(n: number): number }>({
      transport: "nats",
      nats: { link, subject },
      size: SIZE,
      concurrency: 16,
      signals: false,
      maxQueue: TASKS * 2,
    });
    const workers = Array.from(
      { length: SIZE },
      () =>
        rt.spawn([...runtimeArgv(peer, CLI), "worker", "--nats", url, "--subject", subject, "--module", SQUARE], {
          cwd: ROOT,
          stdio: "null",
        }),
    );
    poolRows.push([
      `ipckit Pool, ${SIZE} ${peer} workers over NATS`,
      Math.round(await tasks(pool)).toLocaleString("en-US"),
    ]);
    await pool.close();
    await Promise.all(workers.map((w) => reap(w, "nats worker")));
  }
  console.log(
    `NATS next to local transports: ${rt.name} client/master, ${peer} servers/workers, nats-server ${
      own ? "started here" : url
    }, medians of ${REPS}\n`,
  );
  console.log(table(rpcRows));
  console.log("");
  console.log(table(poolRows));
} finally {
  await rt.removeDir(dir);
  await own?.stop();
}
