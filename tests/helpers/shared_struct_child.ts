/**
 * Child of `tests/shared_struct.test.ts`: places SharedStructs of `SCHEMA` in the parent's segment.
 *
 * - `read`: checks that struct 0 holds `valuesFor(0)`, as the parent wrote it.
 * - `write <k>`: writes `valuesFor(k)` into struct `k`, then, once all three children have started (a barrier on
 *   struct 0's `started`), makes `ADDS` atomic adds on struct 0's `hits` (+1) and `total` (+k).
 *
 * Exits 0 when all is well, 1 with a message on stderr otherwise.
 *
 * Usage: `<runtime argv> tests/helpers/shared_struct_child.ts <shm name> read|write [k]`
 *
 * @module
 */
import { SharedMemory } from "../../shm/segment.ts";
import { SharedStruct } from "../../sync/shared_struct.ts";
import { runtime } from "../../runtimes/detect.ts";
import { ADDS, BASE, mismatches, SCHEMA, valuesFor, writeValues } from "./shared_struct_layout.ts";

const rt = await runtime();
/** How long the barrier waits for the other children: a watchdog, not a timing assertion. */
const BARRIER_MS = 40_000;
const CHILDREN = 3;

try {
  const [name, mode, kText] = rt.args();
  if (name === undefined || (mode !== "read" && mode !== "write")) {
    throw new Error(`bad arguments ${JSON.stringify(rt.args())}`);
  }
  using shm = await SharedMemory.open(name);
  const layout = SharedStruct.layout(SCHEMA);
  const parent = SharedStruct.in(shm, BASE, layout);
  if (mode === "read") {
    const wrong = mismatches(parent, valuesFor(0));
    if (wrong.length > 0) throw new Error(`struct 0 differs: ${wrong.join("; ")}`);
  } else {
    const k = Number(kText);
    if (!Number.isInteger(k) || k < 1 || k > CHILDREN) throw new Error(`bad k ${kText}`);
    writeValues(SharedStruct.in(shm, BASE + k * layout.size, layout), valuesFor(k));
    parent.add("started", 1);
    const deadline = Date.now() + BARRIER_MS;
    while (parent.load("started") < CHILDREN) {
      if (Date.now() > deadline) throw new Error(`only ${parent.load("started")} children started`);
      await new Promise((r) => setTimeout(r, 1));
    }
    for (let i = 0; i < ADDS; i++) {
      parent.add("hits", 1);
      parent.add("total", BigInt(k));
    }
  }
} catch (e) {
  rt.printError(`shared_struct_child (${rt.name}): ${e instanceof Error ? e.message : String(e)}\n`);
  rt.exit(1);
}
