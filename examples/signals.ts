/**
 * signals: a child (on another runtime) sends SIGUSR2 to this process, which waits for it; then this process asks
 * the child to stop with SIGTERM, which the child handles.
 *
 *   deno run -A examples/signals.ts      (or: bun examples/signals.ts, node --import tsx examples/signals.ts)
 */
import { runtime, runtimeArgv, signals } from "../mod.ts";

const rt = await runtime();
const [role, parentPid] = rt.args();

if (role === "child") {
  const stop = signals.wait("SIGTERM"); // keeps the child alive until SIGTERM
  await signals.send(Number(parentPid), "SIGUSR2");
  await stop;
  console.log(`child (${rt.name}) got SIGTERM, exiting cleanly`);
} else {
  const ready = signals.wait("SIGUSR2", { timeout: 30_000 });
  const peer = rt.name === "bun" ? "node" : "bun";
  const child = rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(import.meta.url)), "child", String(rt.pid)], {
    stdio: "inherit",
  });
  await ready;
  console.log(`parent (${rt.name}) got SIGUSR2 from the ${peer} child ${child.pid}`);
  await signals.send(child.pid, "SIGTERM");
  const status = await child.exited;
  console.log(`child exited with code ${status.code}`);
}
