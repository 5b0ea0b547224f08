/**
 * THE list of transport fixtures: every shared suite is instantiated over it, and the child peer
 * (`peer.ts <name> <address>`) finds its fixture here. A new transport is one fixture module and one line below;
 * the test file named by `file` calls {@linkcode conformance} with the name (one line, crossws-style), and
 * `tests/registry.test.ts` checks that every line is instantiated where it says.
 *
 * The other shared suites keep their lists beside them, one line per subject: named objects
 * (`named_fixtures.ts`, run by tests/named.test.ts), queue objects (`queue_object_fixtures.ts`,
 * tests/queue_objects.test.ts) and sync primitives (`SYNC_PRIMITIVES` in `sync.ts`, tests/sync_conformance.test.ts).
 *
 * Why per-transport test files rather than one loop: the files run concurrently (scripts/test.mjs), and a few
 * fixtures need per-file set-up first (a NATS server, a certificate authority) that their file owns.
 */
import type { Fixture } from "./fixtures.ts";

/** One transport's line. */
export interface Entry {
  /** The fixture's name; the child peer is started with it. */
  readonly name: string;
  /** Loads the fixture (lazily: a fixture module may need a package or a server only its file sets up). */
  load(): Promise<Fixture>;
  /** The shared channel suite it passes: the reliable one (`channel`) or the datagram one. */
  readonly suite: "channel" | "datagram";
  /** The test file (under tests/, without `.test.ts`) that runs its channel suite. */
  readonly file: string;
  /** The RPC suite over it, in tests/rpc.test.ts (or `file` when set), with fewer property runs where slow. */
  readonly rpc?: { readonly numRuns?: number; readonly file?: string };
}

const builtIn = async (name: "unix" | "tcp" | "fifo" | "pipe" | "shm"): Promise<Fixture> =>
  (await import("./fixtures.ts")).BUILT_IN[name];
const module = (load: () => Promise<{ fixture: Fixture }>) => async (): Promise<Fixture> => (await load()).fixture;

/** Every fixture, by name. */
export const ENTRIES: readonly Entry[] = [
  { name: "unix", load: () => builtIn("unix"), suite: "channel", file: "unix", rpc: {} },
  { name: "tcp", load: () => builtIn("tcp"), suite: "channel", file: "tcp", rpc: {} },
  { name: "auth", load: module(() => import("./fixtures_auth.ts")), suite: "channel", file: "auth" },
  { name: "tls", load: module(() => import("./fixtures_tls.ts")), suite: "channel", file: "tls" },
  { name: "fifo", load: () => builtIn("fifo"), suite: "channel", file: "fifo", rpc: { numRuns: 6 } },
  { name: "pipe", load: () => builtIn("pipe"), suite: "channel", file: "pipe", rpc: {} },
  { name: "pipe_fds", load: module(() => import("./fixtures_pipe_fds.ts")), suite: "channel", file: "pipe" },
  { name: "shm", load: () => builtIn("shm"), suite: "channel", file: "shm", rpc: {} },
  {
    name: "shm_listener",
    load: module(() => import("./fixtures_shm_listener.ts")),
    suite: "channel",
    file: "shm_listener",
    rpc: { file: "shm_listener" },
  },
  {
    name: "shm_pubsub",
    load: module(() => import("./fixtures_shm_pubsub.ts")),
    suite: "channel",
    file: "shm_pubsub",
  },
  {
    name: "shm_mpsc",
    load: module(() => import("./fixtures_shm_mpsc.ts")),
    suite: "channel",
    file: "shm_mpsc",
  },
  {
    name: "mq",
    load: module(() => import("./fixtures_mq.ts")),
    suite: "channel",
    file: "mq",
    rpc: { numRuns: 6 },
  },
  {
    name: "sysv",
    load: module(() => import("./fixtures_sysv.ts")),
    suite: "channel",
    file: "sysv",
    rpc: { numRuns: 4 },
  },
  {
    name: "file_queue",
    load: module(() => import("./fixtures_file_queue.ts")),
    suite: "channel",
    file: "file_queue",
    rpc: { numRuns: 2 },
  },
  {
    name: "unix_dgram",
    load: module(() => import("./fixtures_unix_dgram.ts")),
    suite: "datagram",
    file: "unix_dgram",
    rpc: { numRuns: 6 },
  },
  { name: "udp", load: module(() => import("./fixtures_udp.ts")), suite: "datagram", file: "udp" },
  {
    name: "nats",
    load: module(() => import("./fixtures_nats.ts")),
    suite: "channel",
    file: "nats",
    rpc: { file: "nats_rpc" },
  },
];

/** The line of `name`; a name not in the list is a mistake in a test file, said at once. */
export function entry(name: string): Entry {
  const found = ENTRIES.find((e) => e.name === name);
  if (found === undefined) {
    throw new RangeError(`No fixture "${name}" in tests/conformance/registry.ts: ${ENTRIES.map((e) => e.name)}`);
  }
  return found;
}

/**
 * Instantiates the shared channel suite (reliable or datagram, as the line says) for fixture `name`. Returns the
 * fixture, for the file's own cases.
 */
export async function conformance(name: string): Promise<Fixture> {
  const e = entry(name);
  const fixture = await e.load();
  if (e.suite === "datagram") (await import("./datagram.ts")).datagramConformance(fixture);
  else (await import("./channel.ts")).channelConformance(fixture);
  return fixture;
}

/** Instantiates the RPC suite over every fixture whose RPC line names `file` (default: "rpc"). */
export async function rpcConformanceFor(file = "rpc"): Promise<void> {
  const { rpcConformance } = await import("./rpc.ts");
  for (const e of ENTRIES) {
    if (e.rpc !== undefined && (e.rpc.file ?? "rpc") === file) rpcConformance(await e.load(), e.rpc);
  }
}
