/**
 * SharedStruct: typed state in one shared memory segment, updated at once by a Deno, a Bun and a Node process
 * (atomic adds for the counters, a Mutex in the same segment for the string), then read here and by Python
 * through the struct format the layout gives.
 *
 *   node --import tsx examples/shared_struct.ts       (or deno run -A / bun)
 *
 * @module
 */
import { Mutex, runtime, runtimeArgv, type RuntimeName, SharedMemory, SharedStruct } from "../mod.ts";

/** The schema every process uses; C and Python mirror it from `layout.describe()`. */
const STATS = {
  requests: "u32",
  bytes: "u64",
  load: "f64",
  open: "bool",
  status: { type: "string", capacity: 24 },
  perWorker: { type: "u32", length: 3 },
} as const;

const rt = await runtime();
const [role, name, index] = rt.args();
const layout = SharedStruct.layout(STATS);
/** Segment layout: a Mutex at 0 guarding `status`, the struct at byte 64 (a multiple of its alignment, 8). */
const STRUCT_AT = 64;

if (role === "worker") {
  using shm = await SharedMemory.open(name!);
  const stats = SharedStruct.in(shm, STRUCT_AT, layout);
  const mutex = Mutex.in(shm, 0);
  for (let i = 0; i < 10_000; i++) {
    stats.add("requests", 1); // atomic across processes
    stats.add("bytes", 512n);
  }
  Atomics.add(stats.get("perWorker"), Number(index), 10_000); // Atomics work on integer array fields
  {
    // A string is many bytes, written one by one: a lock keeps readers and writers from seeing half of one.
    using _guard = await mutex.acquire({ timeout: 10_000 });
    console.log(`worker ${index} (${rt.name}, pid ${rt.pid}) finds status "${stats.get("status")}"`);
    stats.set("status", `last: ${rt.name} ✓`);
  }
} else {
  console.log(layout.describe("stats"));
  const segment = `/ipckit-example-struct-${rt.pid}`;
  using shm = await SharedMemory.create(segment, { size: STRUCT_AT + layout.size }); // zero-filled: fields 0
  try {
    const stats = SharedStruct.in(shm, STRUCT_AT, layout);
    stats.set("status", "counting");
    stats.fields.load = 0.75;
    stats.store("open", true);
    const script = rt.fromFileUrl(import.meta.url);
    const runtimes: RuntimeName[] = ["deno", "bun", "node"];
    const children = runtimes.map((r, i) =>
      rt.spawn([...runtimeArgv(r, script), "worker", segment, String(i)], { stdio: "inherit" })
    );
    await Promise.all(children.map((c) => c.exited));
    console.log("after three workers x 10000 atomic adds:", stats.snapshot());

    // Python reads the same bytes with the format the layout gives.
    const python = `
import struct
from multiprocessing import resource_tracker, shared_memory
try:
    shm = shared_memory.SharedMemory(name="${segment.slice(1)}", track=False)  # Python 3.13+
except TypeError:
    shm = shared_memory.SharedMemory(name="${segment.slice(1)}")
    resource_tracker.unregister(shm._name, "shared_memory")  # or it unlinks the segment at exit
print("python reads:", struct.unpack_from("${layout.structFormat()}", shm.buf, ${STRUCT_AT}))
shm.close()
`;
    try {
      await rt.spawn(["python3", "-c", python], { stdio: "inherit" }).exited;
    } catch {
      console.log("(python3 is not installed: skipped the Python reader)");
    }
  } finally {
    shm.unlink();
  }
}
