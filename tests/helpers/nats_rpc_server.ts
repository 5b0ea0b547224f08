/**
 * One server of a replicated RPC service over NATS, for tests/nats_rpc.test.ts. Usage:
 * `nats_rpc_server.ts <url> <subject>`: serves `work` in the queue group named after the subject, announces itself
 * on `<subject>.ready` with its pid, and serves until killed (or the test's NATS server stops).
 */
import { nats, rpc } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [servers, subject] = rt.args() as [string, string];
const link = await nats.open({ servers });
const listener = await nats.listen(subject, { link, queue: subject, heartbeat: 300 });
const served = rpc.serve(listener, {
  /** Answers after `ms` ms with who answered. */
  work: (ms: number, i: number) => new Promise((r) => setTimeout(() => r({ pid: rt.pid, runtime: rt.name, i }), ms)),
  whoami: () => ({ pid: rt.pid, runtime: rt.name }),
});
link.connection.publish(`${subject}.ready`, new TextEncoder().encode(String(rt.pid)));
await link.connection.closed();
await served.close();
rt.exit(0);
