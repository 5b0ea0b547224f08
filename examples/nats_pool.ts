/**
 * From one machine to many: the Master-Worker pool of `master_worker.ts`, with workers that join over NATS instead
 * of being started by the master. Here the workers are three local processes (Deno, Bun, Node) started with
 * `ipckit worker`; on real hosts you run the same command there, pointing at the same NATS server:
 *
 *   ipckit worker --nats nats://10.0.0.5:4222 --subject primes --module examples/nats_pool.ts
 *
 * Then one more service, on the same server: an RPC calculator served by two processes in one queue group, called
 * through `rpc.cluster`.
 *
 * It uses the server in NATS_URL, or starts a `nats-server` of its own on a free port (Debian: apt-get install
 * nats-server). Run: `deno run -A examples/nats_pool.ts` (or `bun examples/nats_pool.ts`, `node --import tsx ...`).
 *
 * @module
 */
import { nats, Pool, pool, rpc, runtime, runtimeArgv, type RuntimeName } from "../mod.ts";
import type { ChildProcess } from "../mod.ts";

const rt = await runtime();
const SUBJECT = `primes.${rt.env("EXAMPLE_MASTER") ?? rt.pid}`;

/** The work: count the primes below n. */
function primesBelow(n: number): number {
  let count = 0;
  for (let i = 2; i < n; i++) {
    let prime = true;
    for (let d = 2; d * d <= i; d++) {
      if (i % d === 0) {
        prime = false;
        break;
      }
    }
    if (prime) count++;
  }
  return count;
}

const handlers = {
  run: (n: number) => ({ n, primes: primesBelow(n), runtime: rt.name, pid: rt.pid }),
  add: (a: number, b: number) => a + b,
};

if (rt.env("EXAMPLE_ROLE") === "worker") {
  // Started by `ipckit worker --module this-file`: serve the pool, until it closes.
  await pool.worker(handlers);
} else if (rt.env("EXAMPLE_ROLE") === "calc") {
  // An RPC server of the calculator service: one of a queue group.
  const listener = await nats.listen(`${SUBJECT}.calc`, { servers: rt.env("NATS_URL")!, queue: "calc" });
  const served = rpc.serve(listener, handlers);
  listener.link.connection.publish(`${SUBJECT}.calc.up`, new Uint8Array());
  await listener.link.connection.closed(); // until killed
  await served.close();
} else {
  const own = rt.env("NATS_URL") === undefined ? await startServer() : undefined;
  const url = rt.env("NATS_URL") ?? own!.url;
  const children: ChildProcess[] = [];
  const cli = rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url));
  const env = { NATS_URL: url, EXAMPLE_MASTER: String(rt.pid) };
  try {
    const master = new Pool<typeof handlers>({ transport: "nats", nats: { servers: url, subject: SUBJECT }, size: 3 });
    for (const r of ["deno", "bun", "node"] as RuntimeName[]) {
      const argv = [...runtimeArgv(r, cli), "worker", "--nats", url, "--subject", SUBJECT, "--module"];
      children.push(rt.spawn([...argv, rt.fromFileUrl(import.meta.url)], {
        env: { ...env, EXAMPLE_ROLE: "worker" },
        stdio: "inherit",
      }));
    }
    await master.ready(); // three workers joined
    const ranOn = new Map<string, number>();
    for await (const r of master.map(Array.from({ length: 30 }, (_, i) => 20_000 + i * 1000))) {
      ranOn.set(r.runtime, (ranOn.get(r.runtime) ?? 0) + 1);
      if (r.n % 10_000 === 0) console.log(`primes below ${r.n}: ${r.primes} (on ${r.runtime}, pid ${r.pid})`);
    }
    console.log("tasks per runtime:", Object.fromEntries(ranOn));
    console.log("workers:", master.stats.workers.map((w) => `${w.runtime} ${w.id} on ${w.host}`).join(", "));
    await master.close(); // the workers exit

    // A replicated RPC service: two servers (Bun and Deno) in one queue group, one client over four connections.
    await using link = await nats.open({ servers: url });
    let up = 0;
    const sub = link.connection.subscribe(`${SUBJECT}.calc.up`, { callback: () => void up++ });
    await link.connection.flush();
    for (const r of ["bun", "deno"] as RuntimeName[]) {
      children.push(rt.spawn([...runtimeArgv(r, rt.fromFileUrl(import.meta.url))], {
        env: { ...env, EXAMPLE_ROLE: "calc" },
        stdio: "inherit",
      }));
    }
    while (up < 2) await new Promise((r) => setTimeout(r, 50));
    sub.unsubscribe();
    await using calc = rpc.cluster<typeof handlers>(() => nats.connect(`${SUBJECT}.calc`, { link }), { sessions: 4 });
    const sums = await Promise.all(Array.from({ length: 100 }, (_, i) => calc.api.add(i, 1)));
    console.log(`the calculator service answered ${sums.length} calls; sum of answers ${sums.reduce((a, b) => a + b)}`);
  } finally {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map((c) => c.exited));
    await own?.stop();
  }
}

/** A nats-server of our own on a free port, for a machine that has none running. */
async function startServer(): Promise<{ url: string; stop(): Promise<void> }> {
  const server = rt.spawn(["nats-server", "-a", "127.0.0.1", "-p", "-1"], { stdio: "null", stderr: "pipe" });
  let log = "";
  const lines = server.stderr![Symbol.asyncIterator](); // one iterator: leaving a for-await would close the pipe
  for (let chunk = await lines.next(); !chunk.done; chunk = await lines.next()) {
    log += new TextDecoder().decode(chunk.value);
    const m = /Listening for client connections on [^\s]*:(\d+)/.exec(log);
    if (m) {
      void (async () => {
        while (!(await lines.next()).done) { /* keep its pipe drained */ }
      })();
      return {
        url: `nats://127.0.0.1:${m[1]}`,
        async stop() {
          server.kill("SIGTERM");
          await server.exited;
        },
      };
    }
  }
  throw new Error(`nats-server did not start (is it installed?):\n${log}`);
}
