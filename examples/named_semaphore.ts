/**
 * A named semaphore limiting how many processes do something at once: this process starts four workers (one per
 * runtime, and one more Node); at most two of them hold a permit at any moment.
 *
 *   node --import tsx examples/named_semaphore.ts       (or deno run -A / bun)
 *
 * @module
 */
import { NamedSemaphore, runtime, runtimeArgv, type RuntimeName } from "../mod.ts";

const rt = await runtime();
const [role, name, id] = rt.args();

if (role === "worker") {
  await using sem = await NamedSemaphore.open(name!);
  using _permit = await sem.acquire({ timeout: 30_000 });
  console.log(`worker ${id} (${rt.name}, pid ${rt.pid}) holds a permit; ${sem.value} left`);
  await new Promise((r) => setTimeout(r, 200)); // the guarded work
} else {
  const semName = `/ipckit-example-${rt.pid}`;
  await using sem = await NamedSemaphore.create(semName, { value: 2 });
  const script = rt.fromFileUrl(import.meta.url);
  const runtimes: RuntimeName[] = ["deno", "bun", "node", "node"];
  const children = runtimes.map((r, i) =>
    rt.spawn([...runtimeArgv(r, script), "worker", semName, String(i + 1)], { stdio: "inherit" })
  );
  await Promise.all(children.map((c) => c.exited));
  console.log(`all workers done; the semaphore is back to ${sem.value}`);
  sem.unlink();
}
