/**
 * `ipckit worker --nats URL --module file.ts`: a pool worker process on any host. It connects to the NATS server,
 * joins the pool named by `--subject` (a `Pool` with `transport: "nats"` and the same subject), and serves the
 * module's handlers until the pool closes it, then exits 0. The module either calls `pool.worker(handlers)` itself
 * (the same module then works for local pools too) or exports its handlers (`export default`, or
 * `export const handlers`).
 *
 * Credentials come from the environment (`NATS_USER` and `NATS_PASSWORD`, or `NATS_TOKEN`), so they appear
 * neither in `ps` nor in any message; `--user`/`--pass`/`--token` exist for tests and are discouraged.
 *
 * A pool made with `nats: { secret }` admits only workers that prove they know it: give the worker the same secret
 * in a file (`--secret-file FILE`, its content without a final newline) or in `IPCKIT_SECRET` (never on the command
 * line, where `ps` shows it). The worker then also requires the pool to prove it, and refuses to serve one that
 * does not ask. Without a secret, joining a pool that requires one fails with a message that says so. The secret is
 * never printed.
 *
 * @module
 */
import { native } from "../ffi/native.ts";
import { NotFoundError, PermissionError, ProtocolError, QueueFullError } from "../errors.ts";
import { joinWith, worker, workerCalled, type WorkerHandlers } from "../pool/worker.ts";
import { DEFAULT_SUBJECT, joinSubject } from "../pool/remote.ts";
import { absolute } from "../registry.ts";
import { compiledCopy } from "../runtimes/argv.ts";
import { runtime } from "../runtimes/detect.ts";
import { authenticate, MIN_SECRET_BYTES } from "../transports/auth.ts";
import { type Channel, messageIterator } from "../transports/channel.ts";
import * as nats from "../transports/nats.ts";
import { type NatsLinkOptions, redact } from "../transports/nats_link.ts";
import { parse, positive, type Spec, UsageError } from "./args.ts";

const SPEC: Spec = {
  nats: "value",
  module: "value",
  subject: "value",
  heartbeat: "value",
  wait: "value",
  "secret-file": "value",
  "tls-ca": "value",
  "tls-cert": "value",
  "tls-key": "value",
  name: "value",
  user: "value",
  pass: "value",
  token: "value",
};

/** `ipckit worker`. */
export async function workerCommand(args: readonly string[]): Promise<number> {
  const o = parse(args, SPEC);
  if (typeof o.nats !== "string") throw new UsageError("--nats URL is required");
  if (typeof o.module !== "string") throw new UsageError("--module FILE is required");
  const heartbeat = positive(o, "heartbeat", 1000);
  const wait = positive(o, "wait", 24 * 3600 * 1000);
  const subject = typeof o.subject === "string" ? o.subject : DEFAULT_SUBJECT;
  const rt = await runtime();
  const env = (k: string) => rt.env(k);
  const link: NatsLinkOptions = { servers: o.nats.split(",").map((s) => s.trim()).filter(Boolean) };
  const user = str(o.user) ?? env("NATS_USER");
  const pass = str(o.pass) ?? env("NATS_PASSWORD");
  const token = str(o.token) ?? env("NATS_TOKEN");
  if (user !== undefined) link.user = user;
  if (pass !== undefined) link.pass = pass;
  if (token !== undefined) link.token = token;
  if (o["tls-ca"] || o["tls-cert"] || o["tls-key"]) {
    link.tls = {
      ...(str(o["tls-ca"]) === undefined ? {} : { caFile: str(o["tls-ca"])! }),
      ...(str(o["tls-cert"]) === undefined ? {} : { certFile: str(o["tls-cert"])! }),
      ...(str(o["tls-key"]) === undefined ? {} : { keyFile: str(o["tls-key"])! }),
    };
  }
  const secret = await readSecret(str(o["secret-file"]), env("IPCKIT_SECRET"), (p) => rt.readTextFile(p));
  const host = (await rt.readTextFile("/proc/sys/kernel/hostname").catch(() => "")).trim() || undefined;
  link.name = str(o.name) ?? `ipckit-worker-${rt.name}-${rt.pid}`;
  const opened = await nats.open(link);
  const where = redact(link.servers!);
  try {
    joinWith(() => join(opened, joinSubject(subject), heartbeat, wait, where, secret), host);
    const path = absolute(await native(), o.module);
    // A Node process started from a compiled copy (IPCKIT_TS_COMPILED) has no TypeScript loader: the module's copy.
    const url = new URL(`file://${(rt.name === "node" ? compiledCopy(path) : undefined) ?? path}`);
    const mod = await import(url.href) as { default?: unknown; handlers?: unknown };
    if (!workerCalled()) {
      const handlers = mod.handlers ?? mod.default;
      if (handlers === undefined) {
        throw new UsageError(`${o.module} neither calls pool.worker(handlers) nor exports handlers`);
      }
      await worker(handlers as WorkerHandlers);
    }
    return 0;
  } finally {
    await opened.close();
  }
}

/**
 * Connects to the pool's join subject, retrying while no master listens or its queue is full (up to `wait` ms),
 * then proves the secret (or checks that the pool asks for none).
 */
async function join(
  link: nats.NatsLink,
  subject: string,
  heartbeat: number,
  wait: number,
  where: string,
  secret: string | undefined,
): Promise<Channel> {
  const deadline = Date.now() + wait;
  const what = `Cannot join the pool on "${subject}" at ${where}`;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    let channel: Channel;
    try {
      channel = await nats.connect(subject, { link, heartbeat });
    } catch (e) {
      const busy = e instanceof QueueFullError;
      if (!(e instanceof NotFoundError || busy) || Date.now() + delay > deadline) {
        const Kind = busy ? QueueFullError : NotFoundError;
        throw new Kind(`${what}: ${(e as Error).message}`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, delay));
      continue;
    }
    return secret === undefined ? await withoutSecret(channel, what) : await withSecret(channel, secret, what);
  }
}

/** Proves the secret to the pool, and has the pool prove it. */
async function withSecret(channel: Channel, secret: string, what: string): Promise<Channel> {
  try {
    return await authenticate(channel, { secret, role: "client" });
  } catch (e) {
    if (e instanceof ProtocolError) {
      throw new PermissionError(
        `${what}: the pool did not ask for the secret, so it cannot prove it knows it (give the pool nats.secret, ` +
          `or start this worker without one)`,
        { cause: e },
      );
    }
    throw new PermissionError(`${what}: ${(e as Error).message.replace(/^Cannot [^:]*: /, "")}`, { cause: e });
  }
}

/** The first 9 bytes of the pool's challenge when it requires a secret (`transports/auth.ts`). */
const CHALLENGE = new TextEncoder().encode("IPCKAUTH\x01");

/**
 * Without a secret: looks at the pool's first message. A challenge means it requires one (a clear error here,
 * rather than an RPC peer confused by it); anything else is handed back to the worker's RPC peer first.
 */
async function withoutSecret(channel: Channel, what: string): Promise<Channel> {
  let first: Uint8Array;
  try {
    first = await channel.receive();
  } catch {
    return channel; // it ended: the worker's RPC peer sees that
  }
  if (first.byteLength === 41 && CHALLENGE.every((b, i) => first[i] === b)) {
    await channel.close();
    throw new PermissionError(
      `${what}: the pool requires a shared secret (give it with --secret-file FILE or the IPCKIT_SECRET variable)`,
    );
  }
  let head: Uint8Array | undefined = first;
  const replay: Channel = {
    capabilities: channel.capabilities,
    get closed() {
      return channel.closed;
    },
    send: (m, o) => channel.send(m, o),
    receive(o) {
      if (head === undefined) return channel.receive(o);
      const m = head;
      head = undefined;
      return Promise.resolve(m);
    },
    close: () => channel.close(),
    [Symbol.asyncDispose]: () => channel.close(),
    [Symbol.asyncIterator]: () => messageIterator(replay),
  };
  return replay;
}

/**
 * The secret from `--secret-file` (its text without the final newline) or `IPCKIT_SECRET`, checked; undefined when
 * neither is given.
 *
 * @throws {UsageError} when it is empty or shorter than 16 bytes, or the file cannot be read (never printing it).
 */
async function readSecret(
  file: string | undefined,
  variable: string | undefined,
  read: (path: string) => Promise<string>,
): Promise<string | undefined> {
  let secret: string | undefined;
  if (file !== undefined) {
    try {
      secret = (await read(file)).replace(/\r?\n$/, "");
    } catch (e) {
      throw new UsageError(`cannot read the secret file ${file}: ${(e as Error)?.message ?? e}`);
    }
  } else if (variable !== undefined) {
    secret = variable;
  }
  if (secret === undefined) return undefined;
  const size = new TextEncoder().encode(secret).byteLength;
  if (size < MIN_SECRET_BYTES) {
    const from = file !== undefined ? `the secret file ${file}` : "IPCKIT_SECRET";
    throw new UsageError(`${from} holds ${size} bytes; a secret has at least ${MIN_SECRET_BYTES} (use random bytes)`);
  }
  return secret;
}

function str(v: string | true | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}
