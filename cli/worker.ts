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
 * @module
 */
import { native } from "../ffi/native.ts";
import { NotFoundError } from "../errors.ts";
import { joinWith, worker, workerCalled, type WorkerHandlers } from "../pool/worker.ts";
import { DEFAULT_SUBJECT, joinSubject } from "../pool/remote.ts";
import { absolute } from "../registry.ts";
import { runtime } from "../runtimes/detect.ts";
import * as nats from "../transports/nats.ts";
import { type NatsLinkOptions, redact } from "../transports/nats_link.ts";
import { parse, positive, type Spec, UsageError } from "./args.ts";

/** Usage of `ipckit worker`. */
export const WORKER_USAGE = "ipckit worker --nats URL[,URL...] --module FILE [--subject NAME] [--heartbeat MS] " +
  "[--wait MS] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--name NAME]";

const SPEC: Spec = {
  nats: "value",
  module: "value",
  subject: "value",
  heartbeat: "value",
  wait: "value",
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
  const host = (await rt.readTextFile("/proc/sys/kernel/hostname").catch(() => "")).trim() || undefined;
  link.name = str(o.name) ?? `ipckit-worker-${rt.name}-${rt.pid}`;
  const opened = await nats.open(link);
  const where = redact(link.servers!);
  try {
    joinWith(() => join(opened, joinSubject(subject), heartbeat, wait, where), host);
    const path = absolute(await native(), o.module);
    const url = new URL(`file://${path}`);
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

/** Connects to the pool's join subject, retrying while no master listens (up to `wait` ms). */
async function join(link: nats.NatsLink, subject: string, heartbeat: number, wait: number, where: string) {
  const deadline = Date.now() + wait;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    try {
      return await nats.connect(subject, { link, heartbeat });
    } catch (e) {
      if (!(e instanceof NotFoundError) || Date.now() + delay > deadline) {
        throw new NotFoundError(`Cannot join the pool on "${subject}" at ${where}: ${(e as Error).message}`, {
          cause: e,
        });
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

function str(v: string | true | undefined): string | undefined {
  return typeof v === "string" ? v : undefined;
}
