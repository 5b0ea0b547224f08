/**
 * Worker for tests/shared_struct.test.ts: rebuilds the struct it is sent with `SharedStruct.from(handle)`, makes
 * `adds` atomic adds, subs and compare-and-swap increments, then reports what it reads there.
 */
import { parentPort } from "node:worker_threads";
import { SharedStruct, type StructHandle } from "../../sync/shared_struct.ts";
import type { WORKER_SCHEMA, WorkerReport } from "./shared_struct_layout.ts";

parentPort!.once("message", (m: { handle: StructHandle<typeof WORKER_SCHEMA>; adds: number }) => {
  const s = SharedStruct.from(m.handle);
  for (let i = 0; i < m.adds; i++) {
    s.add("count", 1);
    s.add("total", 3n);
    s.add("small", 1);
    s.sub("down", 1);
    // An increment by compare-and-swap: retried until no other worker got in between.
    let old = s.load("casCount");
    while (s.cas("casCount", old, old + 1) !== old) old = s.load("casCount");
  }
  const report: WorkerReport = { name: s.get("name"), samples: Array.from(s.get("samples")) };
  parentPort!.postMessage(report);
});
