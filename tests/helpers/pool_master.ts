/**
 * A master process for tests/pool.test.ts: starts a process pool with one worker per runtime (signals on), prints
 * its worker pids as a JSON line, then per mode:
 * - `idle`: waits (the test SIGKILLs this process and checks that no worker is left);
 * - `drain`: starts 6 tasks of 600 ms, prints `started`, then prints `done <n>` as each finishes (the test sends
 *   SIGTERM meanwhile: the pool drains them, then the process exits with 143);
 * - `reload`: waits for SIGHUP's rolling restart, then prints the new pids and a task's result, and exits 0.
 */
import { Pool, runtime } from "../../mod.ts";

const rt = await runtime();
const mode = rt.args()[0];
const pool = new Pool<{ run(n: number): number; sleep(ms: number): number; whoami(): { pid: number } }>({
  worker: new URL("./pool_worker.ts", import.meta.url),
  kind: "process",
  runtime: ["deno", "bun", "node"],
  size: 3,
  concurrency: 2,
});
/** The worker pids, once every worker is ready. */
const pids = async () => {
  await pool.ready();
  return pool.stats.workers.map((w) => w.id!).sort();
};
const say = (line: string) => rt.printError(line + "\n");

const first = await pids();
const initial = pool.stats.workers.map((w) => w.id);
say(JSON.stringify({ pids: first, workers: initial }));
if (mode === "drain") {
  const tasks = Array.from({ length: 6 }, (_, i) => pool.call("sleep", [600]).then(() => say(`done ${i}`)));
  say("started");
  await Promise.all(tasks);
  say("all done");
} else if (mode === "reload") {
  const events = pool.events();
  for (;;) {
    const { value } = await events.next();
    if (value?.type === "reload") break;
  }
  const before = new Set(initial);
  for (let i = 0; i < 600; i++) {
    const now = pool.stats.workers.map((w) => w.id);
    if (
      now.every((id) => id !== undefined && !before.has(id)) && pool.stats.workers.every((w) => w.state === "ready")
    ) {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  say(JSON.stringify({ reloaded: pool.stats.workers.map((w) => w.id), result: await pool.run(12) }));
  await pool.close();
} else {
  await new Promise(() => {}); // until killed
}
