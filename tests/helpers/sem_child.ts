/**
 * Child of tests/named_semaphore.test.ts: opens the semaphore `<name>`, then takes and returns a permit `<rounds>`
 * times, each time adding 1 to a counter file's number under the permit (a lost update shows a broken semaphore).
 *
 *   sem_child.ts <name> <counter file> <rounds>
 */
import { readFileSync, writeFileSync } from "node:fs";
import { NamedSemaphore } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [name, file, rounds] = rt.args();
await using sem = await NamedSemaphore.open(name!);
for (let i = 0; i < Number(rounds); i++) {
  using _permit = await sem.acquire({ timeout: 60_000 });
  const n = Number(readFileSync(file!, "utf8"));
  await new Promise((r) => setTimeout(r, 0)); // widen the window a lost update would need
  writeFileSync(file!, String(n + 1));
}
