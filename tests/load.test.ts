/**
 * os/load.ts: when the machine counts as crowded (more runnable tasks than CPUs, several looks in a row), which
 * makes a shm channel side park at once instead of spinning (shm/idle.ts). Driven with hand-made `/proc/loadavg`
 * texts (garbage, truncated, an unreadable file) and a fake clock; then the real procfs of this machine.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { native } from "../ffi/native.ts";
import { CROWDED_LOOKS, LoadWatch, loadWatch, LOOK_EVERY_MS, runnableIn } from "../os/load.ts";
import { Idle } from "../shm/idle.ts";

test("load: runnableIn reads the count before the slash of the fourth field, and nothing from garbage", () => {
  assert.equal(runnableIn("0.52 0.61 0.70 3/311 9876\n"), 3);
  assert.equal(runnableIn("0.00 0.00 0.00 1/90 12\n"), 1);
  for (const bad of ["", "0.52 0.61 0.70", "0.52 0.61 0.70 /311 1", "a b c x/y z", "1 2 3 -4/9 1", "1 2 3 2.5/9 1"]) {
    assert.equal(runnableIn(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(runnableIn("1 2 3 99999999999999999999/9 1"), undefined, "not a safe integer");
});

test("load: crowded only after CROWDED_LOOKS looks in a row over the CPUs, each look at most once per ms", () => {
  let text: string | undefined = "0.5 0.5 0.5 3/100 1\n";
  let reads = 0;
  const watch = new LoadWatch(() => (reads++, text));
  let now = 1000;
  const look = () => watch.crowded(2, now += LOOK_EVERY_MS);
  for (let i = 1; i < CROWDED_LOOKS; i++) assert.equal(look(), false, `look ${i} of ${CROWDED_LOOKS}`);
  assert.equal(look(), true);
  assert.equal(watch.crowded(2, now + LOOK_EVERY_MS / 2), true, "within a millisecond: the same look");
  assert.equal(reads, CROWDED_LOOKS, "one read per look");
  assert.equal(watch.crowded(3, now), false, "three runnable tasks do not crowd three CPUs");
  text = "0.5 0.5 0.5 2/100 1\n";
  assert.equal(look(), false, "one look at no more tasks than CPUs ends it");
  text = "0.5 0.5 0.5 9/100 1\n";
  for (let i = 1; i < CROWDED_LOOKS; i++) look();
  text = undefined; // unreadable now: never crowded
  assert.equal(look(), false);
  text = "garbage";
  for (let i = 0; i < CROWDED_LOOKS * 2; i++) assert.equal(look(), false);
});

test("load: a crowded machine makes spin-then-park park at once, and leaves park and spin as they are", () => {
  let crowded = true;
  const idle = new Idle("spin-then-park", 50, 2, () => crowded);
  assert.equal(idle.next(), 0);
  assert.equal(idle.next(true), 0, "even after waking the peer");
  crowded = false;
  assert.equal(idle.next(), 50);
  assert.equal(new Idle("spin", 50, 2, () => true).next(), Infinity);
  assert.equal(new Idle("park", 50, 2, () => false).next(), 0);
});

test("load: the real /proc/loadavg counts at least this thread, through the process's one watch", async () => {
  const watch = loadWatch(await native());
  const n = watch.runnable(performance.now() + 10 * LOOK_EVERY_MS);
  assert.ok(n !== undefined && Number.isSafeInteger(n) && n >= 1, `runnable ${n}`);
  assert.equal(loadWatch(await native()), watch, "one watch for the process");
});
