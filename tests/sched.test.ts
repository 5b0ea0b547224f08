/**
 * os/sched.ts: whether a peer waits for this thread's CPU while another CPU is idle (what makes a shm receive spin on
 * instead of parking, see shm/ring_channel.ts). Its decision is driven with hand-made procfs texts (a command name
 * with spaces and parentheses, truncated and garbage files, a busy machine), and its reads with the real procfs of
 * this process, a sleeping child and a dead pid.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { native } from "../ffi/native.ts";
import { parseStat, procText } from "../os/liveness.ts";
import { type ProcReader, runnableTasks, waitsForMyCpu } from "../os/sched.ts";

/** A `/proc/<pid>/stat` line of 52 fields with `state` (field 3) and `cpu` (field 39); the name has `) (` in it. */
function statLine(pid: number, state: string, cpu: number): string {
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3)); // fields 3..52
  fields[0] = state;
  fields[19] = "4242"; // start time
  fields[36] = String(cpu);
  return `${pid} (a) (b c) ${fields.join(" ")}\n`;
}

/** A reader of hand-made files; a path it does not know does not exist. */
function reader(files: Record<string, string | undefined>): ProcReader {
  return (path) => (path in files ? files[path] : null);
}

const PEER = 4321;
const crowded = (overrides: Record<string, string | undefined> = {}) =>
  reader({
    [`/proc/${PEER}/stat`]: statLine(PEER, "R", 1),
    "/proc/thread-self/stat": statLine(99, "R", 1),
    "/proc/loadavg": "0.52 0.61 0.70 2/311 9876\n",
    ...overrides,
  });

test("sched: parseStat reads the CPU (field 39) after a command name with spaces and parentheses", () => {
  assert.deepEqual(parseStat(statLine(7, "R", 3)), { state: "R", start: 4242, cpu: 3 });
  // A kernel's shorter line (no field 39) still gives the state and start time.
  assert.deepEqual(parseStat("123 (a) b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 4242 0"), {
    state: "S",
    start: 4242,
    cpu: -1,
  });
  assert.equal(parseStat(statLine(7, "R", 3).replace(" 3 40 ", " x 40 "))?.cpu, -1);
});

test("sched: the peer waits for this CPU only when it is runnable here and a CPU is idle", () => {
  assert.equal(waitsForMyCpu(crowded(), PEER, 2), true);
  assert.equal(waitsForMyCpu(crowded({ "/proc/loadavg": "1 1 1 8/311 9876\n" }), PEER, 8), true);
  // Asleep, stopped or a zombie: not waiting for a CPU.
  for (const state of ["S", "D", "T", "Z"]) {
    assert.equal(waitsForMyCpu(crowded({ [`/proc/${PEER}/stat`]: statLine(PEER, state, 1) }), PEER, 2), false);
  }
  // Queued on another CPU, or every CPU taken (a CPU-bound process beside): parking is what helps then.
  assert.equal(waitsForMyCpu(crowded({ "/proc/thread-self/stat": statLine(99, "R", 0) }), PEER, 2), false);
  assert.equal(waitsForMyCpu(crowded({ "/proc/loadavg": "2.0 2.0 2.0 3/311 9876\n" }), PEER, 2), false);
  // One CPU: nothing to move to.
  assert.equal(waitsForMyCpu(crowded(), PEER, 1), false);
});

test("sched: missing, unreadable, truncated or garbage procfs files say no", () => {
  const cases: Record<string, string | undefined>[] = [
    { [`/proc/${PEER}/stat`]: undefined }, // cannot tell
    { "/proc/thread-self/stat": undefined },
    { "/proc/loadavg": undefined },
    { [`/proc/${PEER}/stat`]: "" },
    { [`/proc/${PEER}/stat`]: "4321 (x" },
    { [`/proc/${PEER}/stat`]: statLine(PEER, "R", 1).slice(0, 60) }, // no CPU field
    { "/proc/thread-self/stat": "\u0000\u0001garbage)" },
    { "/proc/loadavg": "garbage" },
    { "/proc/loadavg": "0.1 0.1 0.1 -1/3 7" },
    { "/proc/loadavg": "0.1 0.1 0.1 0/3 7" },
  ];
  for (const c of cases) assert.equal(waitsForMyCpu(crowded(c), PEER, 2), false, JSON.stringify(c));
  assert.equal(waitsForMyCpu(reader({}), PEER, 2), false); // no such peer
  for (const pid of [0, -1, NaN, 1.5]) assert.equal(waitsForMyCpu(crowded(), pid, 2), false);
  assert.equal(runnableTasks(reader({ "/proc/loadavg": "0.52 0.61 0.70 2/311 9876\n" })), 2);
  assert.equal(runnableTasks(reader({})), undefined);
});

test("sched: the real procfs: this thread runs on a CPU, a sleeping child and a dead pid wait for none", async () => {
  const ffi = await native();
  const read: ProcReader = (path) => procText(ffi, path);
  const mine = parseStat(read("/proc/thread-self/stat") as string);
  assert.equal(mine?.state, "R");
  assert.ok(mine.cpu >= 0, `cpu ${mine.cpu}`);
  assert.ok((runnableTasks(read) ?? 0) >= 1);
  const child = spawn("sleep", ["30"], { stdio: "ignore" });
  try {
    await new Promise((resolve, reject) => child.once("spawn", resolve).once("error", reject));
    // Asleep in nanosleep once it started: give it time to get there (generous, and not a timing assertion).
    for (let i = 0; i < 200 && parseStat(read(`/proc/${child.pid}/stat`) as string)?.state !== "S"; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(parseStat(read(`/proc/${child.pid}/stat`) as string)?.state, "S");
    assert.equal(waitsForMyCpu(read, child.pid!, 2), false);
  } finally {
    child.kill("SIGKILL");
    await new Promise((r) => child.once("exit", r));
  }
  assert.equal(read(`/proc/${child.pid}/stat`), null); // reaped: gone
  assert.equal(waitsForMyCpu(read, child.pid!, 2), false);
});
