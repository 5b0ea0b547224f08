/**
 * Every program in examples/ runs, as a child process of this runtime, exits 0 and prints what it promises. Each
 * example starts its peers on other runtimes itself where it shows cross-runtime use. The list of examples comes
 * from the directory: a new example without an entry in EXPECTED fails the test, so the table stays complete.
 *
 * Each runs with a private `IPCKIT_REGISTRY`: ipckit records every named object it creates and drops the record
 * when the object is removed, so a record left there is something the example (or one of its children) leaked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { runtimeName } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const DIR = join(ROOT, "examples");
const RUNTIME = runtimeName();

/** What each example's stdout must contain. */
const EXPECTED: Record<string, string | RegExp> = {
  "barrier.ts": /phase 3 done by all 3 workers: sum 4950/,
  "condition.ts": /consumed 20 jobs from 2 producers, in order per producer/,
  "datagram.ts": /deno\/unix: sent 150, the collector saw 150/,
  "event.ts": /all 3 workers started on one set\(\)[\s\S]*each set\(\) let exactly one worker through \(3 of 3\)/,
  "fifo.ts": /over a FIFO pair: .* -> .*: "4 8 15 16 23 42" reversed is "42 23 16 15 8 4"/,
  "file_lock.ts": /parent and child took turns: 6 holds, child exited with 0/,
  "file_queue.ts": /every job done: 20 of 20, none lost after the consumer was killed/,
  "master_worker.ts": /tasks per runtime:[\s\S]*0 lost/,
  "monitor.ts":
    /stats: pool "squares" done \d+, workers 2[\s\S]*stats: rpc "calculator \(client\)" calls \d+[\s\S]*add's p50 \d+\.\d us[\s\S]*"totals lock" acquired [1-9]/,
  "mq.ts": /urgent job 3[\s\S]*urgent job 6[\s\S]*ordinary job 1/,
  "nats_pool.ts":
    /tasks per runtime:[\s\S]*workers: [\s\S]*the calculator service answered 100 calls; sum of answers 5050/,
  "named_semaphore.ts": /all workers done; the semaphore is back to 2/,
  "pipe.ts": /over stdio: 6 \(from a bun child\)[\s\S]*over fds 3 and 4: 6 \(from a deno child\)/,
  "rpc.ts": /a Deno server served a Bun and a Node client/,
  "rwlock.ts": /200 writes, \d+ reads by 2 threads: readers never saw a half-written config/,
  "shared_counter.ts": /counter = 30000/,
  "shared_struct.ts": /after three workers x 10000 atomic adds/,
  "shm_deno_bun.ts": /client: sent 5, got 10[\s\S]*the client closed/,
  "shm_server.ts": /server: answered 30 calls from 3 clients; exit codes 0, 0, 0/,
  "shm_loans.ts": /64 frames of 1 MiB read in place by bun \(checksum 2016\)[\s\S]*the reader exited with code 0/,
  "shm_pubsub.ts": /deno subscriber: 1000 prices[\s\S]*node subscriber: 1003 prices[\s\S]*exit codes 0, 0, 0/,
  "shm_mpsc.ts": /collected 600 lines from 3 producers[\s\S]*in order per producer: true; lost to a killed producer: 1/,
  "signals.ts": /got SIGUSR2 from the \w+ child[\s\S]*child exited with code 0/,
  "sysv.ts": /urgent job 3[\s\S]*urgent job 6[\s\S]*ordinary job 1[\s\S]*consumer exited with 0/,
  "tcp.ts": /3 clients \(deno, bun, node\) got their answers/,
  "unix_socket.ts": /echoed 101 messages for deno, bun and node/,
};

/** Examples of the directory, in order (`demo.ts` may have moved to cli/: whatever is there counts). */
const FILES = readdirSync(DIR).filter((f) => f.endsWith(".ts")).sort();

test("every example in examples/ has an entry in the expected-output table, and every entry an example", () => {
  assert.deepEqual(FILES.filter((f) => !(f in EXPECTED)), [], "examples without an EXPECTED entry");
  assert.deepEqual(Object.keys(EXPECTED).filter((f) => !FILES.includes(f)), [], "EXPECTED entries without a file");
});

async function runExample(
  file: string,
): Promise<{ code: number | null; signal: string | null; out: string; err: string; left: string[] }> {
  const registry = mkdtempSync(join(tmpdir(), "ipckit-examples-registry-"));
  const [cmd, ...args] = [...runtimeArgv(RUNTIME, join(DIR, file))];
  const child = spawn(cmd!, args, {
    cwd: ROOT,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, IPCKIT_REGISTRY: registry, NO_COLOR: "1" },
    detached: true, // its own process group: a timeout kills its children too
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (err += d));
  const killer = setTimeout(() => process.kill(-child.pid!, "SIGKILL"), 150_000);
  try {
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
      child.on("close", (c, s) => resolve([c, s]))
    );
    const left = readdirSync(registry).filter((n) => n.endsWith(".json"))
      .map((n) => `${n}: ${readFileSync(join(registry, n), "utf8").trim()}`);
    return { code, signal, out, err, left };
  } finally {
    clearTimeout(killer);
    try {
      process.kill(-child.pid!, "SIGKILL"); // anything of its group still running
    } catch { /* all gone */ }
    rmSync(registry, { recursive: true, force: true });
  }
}

for (const file of FILES) {
  test(`examples/${file} runs on ${RUNTIME}, exits 0 and prints what it shows`, { timeout: 180_000 }, async () => {
    const { code, signal, out, err, left } = await runExample(file);
    const context = `\n--- stdout:\n${out}\n--- stderr:\n${err}`;
    assert.equal(code, 0, `exit code ${code} (signal ${signal})${context}`);
    const want = EXPECTED[file];
    if (want !== undefined) {
      assert.ok(typeof want === "string" ? out.includes(want) : want.test(out), `stdout lacks ${want}${context}`);
    }
    assert.deepEqual(left, [], `objects left behind (their owner records remain)${context}`);
  });
}
