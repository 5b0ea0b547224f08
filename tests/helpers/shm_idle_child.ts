/**
 * Child of `tests/shm_idle.test.ts`: echoes every message on a shm channel with the given idle strategy, until the
 * other side closes. `open` opens the channel the parent created; `create` creates it (the parent opens), so the
 * test can give the creator an environment (a TMPDIR too long for a socket path: no doorbell).
 *
 *   shm_idle_child.ts <open|create> <name> <spin-then-park|park|spin>
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";

const rt = await runtime();
const [how, name, idle] = rt.args();
const options = { idle: idle as shm.IdleStrategy, capacity: 4096 };
const channel = how === "create"
  ? await shm.create(name!, { ...options, signal: AbortSignal.timeout(60_000) })
  : await shm.open(name!, { ...options, wait: 60_000 });
try {
  for (;;) await channel.send(await channel.receive());
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
