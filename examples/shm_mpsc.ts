/**
 * A log collector over shared memory: this process (Node, Deno or Bun) creates a collector; a Deno, a Bun and a
 * Node child each open a producer and log lines into it, some written in place in the ring (a loan). Each line
 * arrives tagged with who sent it and its number, in order per producer. One more child is SIGKILLed while it holds
 * a line half-written: the collector skips that line, counts it as lost, and the others go on.
 *
 *   node --import tsx examples/shm_mpsc.ts     (the children run `<runtime> examples/shm_mpsc.ts <role> <name>`)
 *
 * @module
 */
import { runtime, runtimeArgv, type RuntimeName, shm } from "../mod.ts";

const rt = await runtime();
const [role, name] = rt.args();
const LINES = 200;
const encoder = new TextEncoder();

if (role === "logger") {
  await using log = await shm.producer(name!, { wait: 10_000 });
  for (let i = 0; i < LINES; i++) {
    const line = encoder.encode(`${rt.name} (pid ${rt.pid}): line ${i}`);
    if (i % 2 === 0) await log.send(line);
    else {
      const loan = await log.loan(line.length); // written where it goes: no copy
      loan.bytes.set(line);
      loan.commit();
    }
  }
} else if (role === "stuck") {
  const log = await shm.producer(name!, { wait: 10_000 });
  const loan = await log.loan(64); // reserved, never committed: this process is killed first
  loan.bytes.set(encoder.encode("half a line"));
  console.log("stuck");
  await new Promise(() => setTimeout(() => {}, 60_000));
} else {
  const logs = `/ipckit-logs-${rt.pid}`;
  await using collector = await shm.collector(logs, { capacity: 4096 });
  const script = rt.fromFileUrl(import.meta.url);
  // A producer that dies holding a line half-written, before the others start.
  const stuck = rt.spawn([...runtimeArgv("bun", script), "stuck", logs], { stdio: "pipe" });
  await new Promise<void>((resolve) => stuck.stdio!.start({ data: () => resolve(), end: () => resolve() }));
  stuck.kill("SIGKILL");
  await stuck.exited;
  const runtimes: RuntimeName[] = ["deno", "bun", "node"];
  const children = runtimes.map((r) => rt.spawn([...runtimeArgv(r, script), "logger", logs], { stdio: "inherit" }));
  const perPid = new Map<number, number>();
  const decoder = new TextDecoder();
  let inOrder = true;
  for (let n = 0; n < runtimes.length * LINES; n++) {
    const { data, pid, sequence } = await collector.receive({ timeout: 60_000 });
    const next = perPid.get(pid) ?? 0;
    inOrder &&= sequence === next && decoder.decode(data).endsWith(`line ${next}`);
    perPid.set(pid, next + 1);
  }
  for (const c of children) await c.exited;
  console.log(`collected ${runtimes.length * LINES} lines from ${perPid.size} producers (deno, bun, node)`);
  console.log(`in order per producer: ${inOrder}; lost to a killed producer: ${collector.lost}`);
}
