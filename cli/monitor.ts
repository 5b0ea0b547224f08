/**
 * `ipckit monitor --web`: a page in the browser that shows every ipckit process on this machine live (the stats
 * segments, `shm/stats.ts`): per object its rates and current values, charted over the last minutes, and what dead
 * processes left behind, with a button that runs `ipckit clean`. The page is `web/` (plain files, no build step) and
 * its charts uPlot, served from where the `uplot` package is installed; samples reach it by Server-Sent Events.
 *
 * | path             | what                                                                                     |
 * | ---------------- | ---------------------------------------------------------------------------------------- |
 * | `GET /`          | the page (and `/app.js`, `/style.css`, `/uplot.js`, `/uplot.css`)                         |
 * | `GET /events`    | Server-Sent Events: `history` (the samples kept) once, then a message per sample         |
 * | `GET /api/stats` | the stats segments as JSON, what `ipckit stats --json` prints                            |
 * | `GET /metrics`   | the same in Prometheus's text format (`stats.prometheusText`)                            |
 * | `POST /api/clean`| `ipckit clean`: needs this server's token (header `x-ipckit-token`); answers the report  |
 *
 * Served on 127.0.0.1 unless `--host` says otherwise. Every request must name this server in its `Host` header (an IP
 * address, `localhost` or the `--host` given, with the port): a page of another site that a DNS name was pointed at
 * 127.0.0.1 for (DNS rebinding) gets 403. The clean action needs a random token the server made at start and put in
 * its page, which other sites' pages cannot read; sent by POST only (and a foreign `Origin` is refused too).
 *
 * @module
 */
import { resources, runtime, stats } from "../mod.ts";
import { type HttpAnswer, type HttpRequest, type HttpStream, packageFile, type TextStream } from "../runtimes/http.ts";
import { parse, type Spec, UsageError } from "./args.ts";
import { type MonitorSample, Sampler, SERIES } from "./monitor_sample.ts";

const SPEC: Spec = { web: "flag", port: "value", host: "value", interval: "value", insecure: "flag" };
/** How long a page looks back when it opens. */
const HISTORY_MS = 5 * 60_000;
/** Pages open at once (each holds a connection and is sent every sample). */
const MAX_STREAMS = 32;

/** What `ipckit monitor` was asked for. */
export interface MonitorOptions {
  web: true;
  port: number;
  host: string;
  interval: number;
}

const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6 = /^[0-9a-f]*:[0-9a-f:.]*$/i;
const HOSTNAME = /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * Parses `ipckit monitor`'s arguments.
 *
 * @throws {UsageError} without `--web`, for a port that is not 0-65535, a host that is no address or host name, a
 *   host other than loopback without `--insecure`, or an interval under 100 ms.
 */
export function monitorOptions(args: readonly string[]): MonitorOptions {
  const opts = parse(args, SPEC);
  if (opts.web !== true) {
    throw new UsageError("the monitor is a web page so far: add --web (the terminal view is `ipckit top`)");
  }
  const port = opts.port === undefined ? 8019 : Number(opts.port);
  if ((typeof opts.port === "string" && !/^\d+$/.test(opts.port)) || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(`--port must be an integer from 0 to 65535 (0: any free port), not "${opts.port}"`);
  }
  const raw = opts.host === undefined ? "127.0.0.1" : String(opts.host);
  const host = raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw;
  if (!IPV4.test(host) && !IPV6.test(host) && !HOSTNAME.test(host)) {
    throw new UsageError(`--host must be an IP address or a host name, not "${raw}"`);
  }
  // As every ipckit listener beyond this machine: no plain, unauthenticated server there unless asked for in so many
  // words (the page shows every process's counters and can clean dead processes' objects).
  if (!isLoopback(host) && opts.insecure !== true) {
    throw new UsageError(
      `--host ${raw} serves the monitor beyond this machine, in plain HTTP and to anyone who reaches it: add ` +
        "--insecure to do so anyway (or keep it on 127.0.0.1 and reach it through `ssh -L 8019:127.0.0.1:8019`)",
    );
  }
  const interval = opts.interval === undefined ? 1000 : Number(opts.interval);
  if (!Number.isInteger(interval) || interval < 100 || interval > 3_600_000) {
    throw new UsageError(`--interval must be an integer from 100 to 3600000 (ms), not "${opts.interval}"`);
  }
  return { web: true, port, host, interval };
}

/** Whether `host` is a loopback address (or localhost). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

/**
 * Whether a request's `Host` header names this server: an IP address, `localhost` or the name it was started with,
 * and its port. Anything else is a page of another site reaching it through a DNS name (rebinding).
 */
export function hostAllowed(header: string | undefined, port: number, bound: string): boolean {
  if (header === undefined) return false;
  const m = /^(\[[0-9a-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/i.exec(header.trim());
  if (!m) return false;
  const name = m[1]!.toLowerCase();
  if ((m[2] === undefined ? 80 : Number(m[2])) !== port) return false;
  const bare = name.startsWith("[") ? name.slice(1, -1) : name;
  return name === "localhost" || IPV4.test(name) || (name.startsWith("[") && IPV6.test(bare)) ||
    bare === bound.toLowerCase();
}

/** Two strings compared in a time that does not depend on where they differ. */
function same(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

const HEADERS = {
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};
const PAGE_HEADERS = {
  ...HEADERS,
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-frame-options": "DENY",
};
const text = (status: number, body: string): HttpAnswer => ({
  status,
  headers: { ...HEADERS, "content-type": "text/plain; charset=utf-8" },
  body: `${body}\n`,
});
const json = (value: unknown): HttpAnswer => ({
  status: 200,
  headers: { ...HEADERS, "content-type": "application/json; charset=utf-8" },
  body: JSON.stringify(value),
});

/** A running web monitor. */
export interface Monitor {
  /** Where the page is. */
  readonly url: string;
  readonly port: number;
  /** Stops sampling, ends every page's stream and closes the server. */
  close(): Promise<void>;
}

/** The page's files, read once at start: name -> [content type, text]. */
async function files(): Promise<Map<string, [string, string]>> {
  const rt = await runtime();
  const web = (f: string) => rt.fromFileUrl(new URL(`../web/${f}`, import.meta.url));
  const uplot = (f: string) => {
    try {
      return packageFile(`uplot/dist/${f}`, import.meta.url);
    } catch (cause) {
      throw new Error("Cannot serve the monitor's charts: the uplot package is not installed (npm install uplot)", {
        cause,
      });
    }
  };
  const js = "text/javascript; charset=utf-8", css = "text/css; charset=utf-8";
  const out = new Map<string, [string, string]>();
  for (
    const [path, type, file] of [
      ["/", "text/html", web("index.html")],
      ["/app.js", js, web("app.js")],
      ["/style.css", css, web("style.css")],
      ["/uplot.js", js, uplot("uPlot.iife.min.js")],
      ["/uplot.css", css, uplot("uPlot.min.css")],
    ] as const
  ) {
    out.set(path, [type, await rt.readTextFile(file)]);
  }
  return out;
}

/**
 * Starts the web monitor on `options.host`:`options.port`: reads a sample every `options.interval` ms (keeping five
 * minutes of them for pages that open later) and serves the page, its events and the endpoints above.
 *
 * @throws {AlreadyExistsError} when the port is taken; an Error when the page's files or uplot cannot be found.
 */
export async function startMonitor(options: Omit<MonitorOptions, "web">): Promise<Monitor> {
  const { listenHttp } = await import("../runtimes/http.ts");
  const served = await files();
  const token = [...crypto.getRandomValues(new Uint8Array(24))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const [, page] = served.get("/")!;
  served.set("/", ["text/html", page.replace("%TOKEN%", token)]);
  const sampler = new Sampler();
  const history: MonitorSample[] = [];
  const keep = Math.ceil(HISTORY_MS / options.interval);
  const streams = new Set<TextStream>();
  let port = 0;
  let stopped = false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sampling: Promise<void> | undefined;
  let again = false;
  let failed = false;

  const sample = async () => {
    try {
      const s = await sampler.read();
      history.push(s);
      if (history.length > keep) history.splice(0, history.length - keep);
      const message = `data: ${JSON.stringify(s)}\n\n`;
      for (const stream of streams) if (stream.ready) stream.write(message); // a slow page misses samples
      failed = false;
    } catch (e) {
      if (!failed) (await runtime()).printError(`ipckit monitor: cannot read the stats: ${(e as Error).message}\n`);
      failed = true;
    }
  };
  /** Samples now (or right after the sample being read), then every interval. */
  const tick = () => {
    if (stopped) return;
    if (sampling) {
      again = true;
      return;
    }
    clearTimeout(timer);
    sampling = sample().finally(() => {
      sampling = undefined;
      if (again) {
        again = false;
        tick();
      } else if (!stopped) timer = setTimeout(tick, options.interval);
    });
  };

  const events = (): HttpStream | HttpAnswer => {
    if (streams.size >= MAX_STREAMS) return text(503, `at most ${MAX_STREAMS} pages at once`);
    return {
      status: 200,
      headers: { ...HEADERS, "content-type": "text/event-stream; charset=utf-8", connection: "keep-alive" },
      start(stream) {
        streams.add(stream);
        stream.onEnd(() => streams.delete(stream));
        stream.write(`retry: 2000\nevent: series\ndata: ${JSON.stringify(SERIES)}\n\n`);
        stream.write(`event: history\ndata: ${JSON.stringify(history)}\n\n`);
      },
    };
  };

  const clean = async (req: HttpRequest): Promise<HttpAnswer> => {
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== "null") {
      const m = /^https?:\/\/([^/]+)$/.exec(origin);
      if (!m || !hostAllowed(m[1], port, options.host)) return text(403, "forbidden: a foreign origin");
    }
    if (!same(req.headers["x-ipckit-token"] ?? "", token)) return text(403, "forbidden: no valid token");
    const report = await resources.clean();
    sampler.forget();
    tick(); // the pages see the result at once
    const brief = (r: resources.Resource) => ({ kind: r.kind, name: r.name, pid: r.pid, runtime: r.runtime });
    return json({
      removed: report.removed.map(brief),
      dropped: report.dropped.length,
      failed: report.failed.map((f) => ({ ...brief(f.resource), error: f.error })),
      unverified: report.unverified.map(brief),
      kept: report.kept.length,
    });
  };

  const handle = async (req: HttpRequest): Promise<HttpAnswer | HttpStream> => {
    if (!hostAllowed(req.headers.host, port, options.host)) return text(403, "forbidden: unknown Host");
    const path = req.url.split("?")[0]!;
    if (path === "/api/clean") return req.method === "POST" ? clean(req) : text(405, "POST only");
    if (req.method !== "GET" && req.method !== "HEAD") return text(405, "GET only");
    const file = served.get(path);
    if (file) {
      return {
        status: 200,
        headers: path === "/" ? PAGE_HEADERS : { ...HEADERS, "content-type": file[0] },
        body: file[1],
      };
    }
    if (path === "/events") return events();
    if (path === "/api/stats") return json(await stats.listStats());
    if (path === "/metrics") {
      return {
        status: 200,
        headers: { ...HEADERS, "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        body: stats.prometheusText(await stats.listStats()),
      };
    }
    return text(404, "not found");
  };

  const server = await listenHttp({ hostname: options.host, port: options.port }, handle);
  port = server.port;
  tick();
  await sampling;
  const shown = options.host === "0.0.0.0" ? "127.0.0.1" : options.host === "::" ? "::1" : options.host;
  return {
    url: `http://${shown.includes(":") ? `[${shown}]` : shown}:${port}/`,
    port,
    async close() {
      stopped = true;
      clearTimeout(timer);
      await sampling;
      await server.close();
    },
  };
}

/** `ipckit monitor --web [--port N] [--host H [--insecure]] [--interval MS]`: serves until SIGINT (Ctrl-C) or SIGTERM. */
export async function monitor(args: readonly string[]): Promise<number> {
  const options = monitorOptions(args);
  const rt = await runtime();
  let stop!: () => void;
  const stopping = new Promise<void>((r) => (stop = r));
  const signals = [rt.onSignal("SIGINT", () => stop()), rt.onSignal("SIGTERM", () => stop())];
  try {
    const m = await startMonitor(options);
    console.log(`ipckit monitor: ${m.url} (Ctrl-C stops)`);
    if (!isLoopback(options.host)) {
      rt.printError(
        `ipckit monitor: listening on ${options.host}, not on loopback: whoever reaches this address sees the ` +
          "counters, and may clean dead processes' objects from the page\n",
      );
    }
    await stopping;
    await m.close();
  } finally {
    for (const s of signals) s[Symbol.dispose]();
  }
  return 0;
}
