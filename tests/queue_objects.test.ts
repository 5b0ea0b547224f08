import { test } from "node:test";
import assert from "node:assert/strict";
import { queueObjectConformance } from "./conformance/queue_objects.ts";
import { made, QUEUE_OBJECTS, queueObjectFixture } from "./conformance/queue_object_fixtures.ts";

for (const fixture of QUEUE_OBJECTS) queueObjectConformance(fixture);

test("no queue object made by the suite is left behind", async () => {
  const left = [];
  for (const [kind, addresses] of made) {
    const f = queueObjectFixture(kind);
    for (const address of addresses) {
      try {
        await (await f.open(address)).close();
        left.push(`${kind} ${address}`);
      } catch (e) {
        if ((e as Error).name !== "NotFoundError") throw e;
      }
    }
  }
  assert.ok(made.size > 0);
  assert.deepEqual(left, []);
});
