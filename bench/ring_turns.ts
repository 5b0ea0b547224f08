/**
 * The ring's single writes against the JS ring's, in turns inside one pair of processes: the measure for a change
 * to `shm/ring.ts`'s write path that one launch against another cannot give here (on this VM one launch of a pair can
 * run 2x the next, docs/performance.md). One ring (`shm/ring.ts`, the JS ring's size), one consumer (a peer draining
 * it with `Ring.drain` in a busy loop, `bench/peers/ring_sink.ts`), and producers that take turns in slices of
 * `--slice` single `--size`-byte messages, in a fresh random order each round:
 * - `ring`: `Ring.tryWrite` and the sleep look after each (`takeConsumerSleeping`), as the channel's `trySend` does;
 * - `JS ring`: `bench/js_ring.ts`'s send, the least a JavaScript ring does (no counters, no checks, no sleep look),
 *   writing the same records into the same ring.
 * A slice ends when the consumer has taken everything; the time counts from the first send to then. Prints each
 * variant's M msg/s over the rounds (min, p25, median, p75, max) and the per-round ratio of the two, whose spread says
 * how much the ratio itself moves within the launch.
 *
 *   node --import tsx bench/ring_turns.ts [--runtime deno|bun|node] [--rounds 12] [--slice 300000] [--size 64]
 *
 * @module
 */
import { runtime, runtimeArgv, type RuntimeName, SharedMemory } from "../mod.ts";
import { reap, ROOT, table } from "../cli/peers/launch.ts";
import { I_READ, I_WRITE, Ring } from "../shm/ring.ts";
import { flags } from "./args.ts";
import { JS_RING_CAPACITY, JsRing } from "./js_ring.ts";
import { RING_AT, TURNS_SEGMENT } from "./ring_turns_layout.ts";

const rt = await runtime();
const { opt } = flags(rt.args());
const peer = opt("--runtime", rt.name) as RuntimeName;
const ROUNDS = Number(opt("--rounds", "12"));
const SLICE = Number(opt("--slice", "300000"));
const SIZE = Number(opt("--size", "64"));
if (!(ROUNDS >= 1 && SLICE >= 1 && SIZE >= 0 && SIZE <= 65_536)) {
  throw new RangeError("Cannot run: --rounds and --slice must be >= 1, --size from 0 to 65536");
}

const seg = await SharedMemory.create(`/ipckit-turns-${rt.pid}`, { size: TURNS_SEGMENT });
const ctl = new Int32Array(seg.buffer, 0, 16);
const words = Ring.init(seg.buffer, RING_AT, JS_RING_CAPACITY).words;
const sink = rt.fromFileUrl(new URL("./peers/ring_sink.ts", import.meta.url));
const child = rt.spawn([...runtimeArgv(peer, sink), seg.name], { cwd: ROOT, stdio: "null" });
const message = new Uint8Array(SIZE).fill(7);
const js = new JsRing(seg.buffer, RING_AT);

/** `Ring.tryWrite` + the sleep look, from where the last slice left the ring (a fresh attach reads W from the header). */
function ringSlice(k: number): void {
  const ring = Ring.attach(seg.buffer, RING_AT);
  ring.publishPlainly(true); // as the channel's producer into a consumer that fences (the peer says it does)
  for (let i = 0; i < k; i++) {
    while (!ring.tryWrite(message)) { /* full: the consumer catches up */ }
    ring.takeConsumerSleeping(); // the peer never sleeps: only the look's cost
  }
}

function jsSlice(k: number): void {
  js.resume();
  for (let i = 0; i < k; i++) while (!js.send(message)) { /* full */ }
}

const variants = [["ring", ringSlice], ["JS ring", jsSlice]] as const;

/** One slice of variant `v`: M msg/s from its first send until the consumer took its last message. */
function slice(v: number): number {
  const t0 = performance.now();
  variants[v]![1](SLICE);
  while (Atomics.load(words, I_READ) !== words[I_WRITE]) { /* the consumer's R reaches W */ }
  return SLICE / ((performance.now() - t0) / 1000) / 1e6;
}

try {
  for (const deadline = Date.now() + 30_000; Atomics.load(ctl, 0) === 0;) {
    if (Date.now() > deadline) throw new Error("Cannot start the ring sink: it never attached");
    await new Promise((r) => setTimeout(r, 5));
  }
  for (let w = 0; w < 2; w++) for (let v = 0; v < variants.length; v++) slice(v); // warm both up
  const rates: number[][] = variants.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    const order = variants.map((_, i) => i).sort(() => Math.random() - 0.5);
    for (const v of order) rates[v]!.push(slice(v));
  }
  const q = (xs: readonly number[], f: number) => [...xs].sort((a, b) => a - b)[Math.round(f * (xs.length - 1))]!;
  const five = (xs: readonly number[], d: number) => [0, 0.25, 0.5, 0.75, 1].map((f) => q(xs, f).toFixed(d));
  const ratios = rates[0]!.map((x, i) => x / rates[1]![i]!);
  console.log(
    `ring against the JS ring, in turns: parent ${rt.name} ${rt.version} -> peer ${peer}; ${ROUNDS} rounds of ` +
      `${SLICE} single ${SIZE}-byte messages each (M msg/s over the rounds)`,
  );
  console.log(table([
    ["variant", "min", "p25", "median", "p75", "max"],
    ...variants.map(([name], v) => [name, ...five(rates[v]!, 2)]),
    ["ring / JS ring, per round", ...five(ratios, 2)],
  ]));
} finally {
  Atomics.store(ctl, 1, 1);
  await reap(child, "ring sink");
  seg.unlink();
  seg.close();
}
