/**
 * A real `nats-server` for the tests: on loopback (or a given address), a port the OS picks, a temp dir for its
 * config and store, stopped (and the dir removed) by `stop()`. `.ci/run` installs the server (Debian's
 * `nats-server`); without it, `startNatsServer` throws with what to install.
 */
import { writeFileSync } from "node:fs";
import { after, before } from "node:test";
import { runtime } from "../../runtimes/detect.ts";
import type { ChildProcess } from "../../runtimes/runtime.ts";

export interface NatsServer {
  /** `nats://host:port` */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** `http://host:port` of the monitoring endpoint (`/connz`, `/varz`), when started with `monitor: true`. */
  readonly monitor: string | undefined;
  /** Stops the server (SIGTERM, then SIGKILL) and removes its temp dir. Idempotent. */
  stop(): Promise<void>;
}

export interface NatsServerOptions {
  /** Address to listen on. Default 127.0.0.1. */
  host?: string;
  /** Lines of a nats-server config file (authorization, max_payload...). */
  config?: string;
  /** Wrap the command, e.g. `["ip", "netns", "exec", "ns"]`. */
  prefix?: string[];
  /** Also serve the HTTP monitoring endpoint (on the same host, a port the OS picks). */
  monitor?: boolean;
}

export const NATS_SERVER = "nats-server";

export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const rt = await runtime();
  const host = options.host ?? "127.0.0.1";
  const dir = await rt.makeTempDir("ipckit-nats-");
  const conf = `${dir}/server.conf`;
  writeFileSync(conf, (options.config ?? "") + (options.monitor ? `\nhttp: "${host}:-1"\n` : ""));
  let child: ChildProcess;
  try {
    child = rt.spawn([...(options.prefix ?? []), NATS_SERVER, "-a", host, "-p", "-1", "-c", conf], {
      stdio: "null",
      stderr: "pipe",
    });
  } catch (e) {
    await rt.removeDir(dir);
    throw new Error(`Cannot start ${NATS_SERVER}: is it installed (apt-get install nats-server)? ${e}`);
  }
  let stopped: Promise<void> | undefined;
  const stop = () =>
    stopped ??= (async () => {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await child.exited.catch(() => {});
      clearTimeout(timer);
      await rt.removeDir(dir).catch(() => {});
    })();
  const log: string[] = [];
  let monitor: string | undefined;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${NATS_SERVER} did not start in 20 s:\n${log.join("")}`)), 20_000);
    void child.exited.then((s) => reject(new Error(`${NATS_SERVER} exited (${JSON.stringify(s)}):\n${log.join("")}`)));
    void (async () => {
      const decoder = new TextDecoder();
      let text = "";
      for await (const chunk of child.stderr!) {
        const s = decoder.decode(chunk, { stream: true });
        if (log.length < 200) log.push(s);
        text += s;
        const http = /Starting http monitor on ([^\s]+)/.exec(text);
        if (http) monitor = `http://${http[1]}`;
        const m = /Listening for client connections on [^\s]*:(\d+)/.exec(text);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
          text = "";
        } else if (text.length > 65536) text = text.slice(-1024);
      }
    })().catch(() => {});
  }).catch(async (e) => {
    await stop();
    throw e;
  });
  // nats-server has read its configuration: the directory can go now, so that it never outlives the test file (Deno's
  // node:test skips `after` hooks in a file with a skipped test, and an exiting runner does not wait for them).
  await rt.removeDir(dir).catch(() => {});
  return { url: `nats://${host}:${port}`, host, port, child, monitor, stop };
}

/**
 * A server for the tests of one file: started in a `before` hook (then `onStart(url)`, e.g. to point a fixture at
 * it), stopped in an `after` hook. Read `url` and `port` inside tests only.
 */
export function natsServerForFile(
  onStart: (url: string) => void = () => {},
  options: NatsServerOptions = {},
): { readonly url: string; readonly port: number; readonly monitor: string | undefined } {
  let server: NatsServer | undefined;
  before(async () => {
    server = await startNatsServer(options);
    onStart(server.url);
  });
  after(() => server?.stop());
  const started = () => {
    if (!server) throw new Error("the NATS server is not started yet: use it inside a test");
    return server;
  };
  return {
    get url() {
      return started().url;
    },
    get port() {
      return started().port;
    },
    get monitor() {
      return started().monitor;
    },
  };
}
