/**
 * A readers-writer lock guarding shared configuration: two worker threads read it over and over under read locks
 * (together), while the main thread rewrites it under the write lock (alone). The configuration is a
 * `SharedStruct` whose fields must agree (`b` is always `-a`, `version` counts the writes): a reader that ever saw
 * them disagree would have seen a half-written update. This one file is the main thread and the workers.
 *
 *   node --import tsx examples/rwlock.ts      (or: npx deno run -A / npx bun examples/rwlock.ts)
 *
 * @module
 */
import { runtime, RwLock, SharedStruct, type StructHandle, type SyncHandle } from "../mod.ts";

const schema = { version: "u32", a: "i32", b: "i32", stop: "bool" } as const;
const WRITES = 200;
const rt = await runtime();
const parent = rt.parentPort();

if (parent !== null) {
  parent.onMessage((message) => {
    const { lock, config } = message as { lock: SyncHandle; config: StructHandle<typeof schema> };
    const rw = RwLock.from(lock);
    const c = SharedStruct.from(config);
    let reads = 0;
    let torn = 0;
    while (!c.load("stop")) {
      using _r = rw.readSync({ timeout: 10_000 });
      if (c.get("b") !== -c.get("a") || c.get("a") !== c.get("version")) torn++;
      if (reads++ === 0) parent.postMessage("reading");
    }
    parent.postMessage({ reads, torn });
  });
} else {
  const rw = new RwLock();
  const config = new SharedStruct(schema);
  const workers = [1, 2].map(() => rt.worker(new URL(import.meta.url)));
  const reading: Promise<unknown>[] = [];
  const reports = workers.map((w) => {
    let started!: () => void;
    reading.push(new Promise<void>((r) => (started = r)));
    return new Promise<{ reads: number; torn: number }>((resolve) =>
      w.onMessage((m) => m === "reading" ? started() : resolve(m as { reads: number; torn: number }))
    );
  });
  for (const w of workers) w.postMessage({ lock: rw.handle, config: config.handle });
  try {
    await Promise.all(reading); // both readers are at it
    for (let v = 1; v <= WRITES; v++) {
      using _w = await rw.write({ timeout: 10_000 }); // waits for the readers to step out; new ones wait
      config.set("a", v);
      await new Promise((r) => setTimeout(r, 0)); // a pause in the middle of the update: readers must not see it
      config.set("b", -v);
      config.set("version", v);
    }
    config.store("stop", true);
    const results = await Promise.all(reports);
    const reads = results.reduce((n, r) => n + r.reads, 0);
    const torn = results.reduce((n, r) => n + r.torn, 0);
    if (torn > 0) throw new Error(`Cannot trust the lock: ${torn} torn reads`);
    console.log(`${WRITES} writes, ${reads} reads by 2 threads: readers never saw a half-written config`);
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
