/**
 * `ipckit monitor --web` (cli/monitor.ts), run by this runner's runtime beside loads of the other runtimes: the page
 * in a real browser (Debian's chromium, driven by playwright-core from a Node helper, tests/helpers/browser.mjs) shows
 * the load's objects and their numbers moving, draws its charts, and cleans a SIGKILLed child's leftovers only after
 * asking; `/metrics` parses as Prometheus text and `/api/stats` is `ipckit stats --json`, both with the other
 * runtimes' counters; the clean action refuses a request without the token, from a foreign Host or Origin; SIGINT
 * and SIGTERM close the server (exit 0); bad arguments are usage errors. No timing is asserted: every wait polls,
 * with a generous limit.
 *
 * The children and the monitor share a registry of their own (a temporary IPCKIT_REGISTRY), so the page's clean
 * touches nothing of the other test files; stats are on for them (the runner turns them off).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { spawnSync } from "node:child_process";
import process from "node:process";
import { type ChildProcess, resources, runtime, runtimeArgv, type RuntimeName, SharedMemory, stats } from "../mod.ts";
import { main } from "../cli/commands.ts";
import { hostAllowed } from "../cli/monitor.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { parsePrometheus } from "./helpers/prometheus.ts";
import { type LineChild as Child, spawnWithLines } from "./helpers/child_lines.ts";

const LONG = { timeout: 240_000 };
const rt = await runtime();
const CLI = rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url));
const PEER = rt.fromFileUrl(new URL("./helpers/stats_peer.ts", import.meta.url));
const BROWSER = rt.fromFileUrl(new URL("./helpers/browser.mjs", import.meta.url));
const OTHER = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % RUNTIMES.length]!;
const THIRD = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 2) % RUNTIMES.length]!;

function start(argv: string[], env: Record<string, string>): Child {
  return spawnWithLines(rt, argv, env);
}

/** A stats peer of runtime `on` (tests/helpers/stats_peer.ts); resolves once it printed `ready <segment>`. */
async function peer(on: RuntimeName, env: Record<string, string>, ...args: string[]) {
  const p = start([...runtimeArgv(on, PEER), ...args], env);
  const ready = await p.line();
  assert.match(ready, /^ready \/ipckit-stats-/, `${on} peer ${args.join(" ")}`);
  return { ...p, segment: ready.slice("ready ".length) };
}

/** `ipckit monitor --web` on this runtime, at any free port; resolves once it printed its URL. */
async function monitor(env: Record<string, string>) {
  const m = start([...runtimeArgv(rt.name, CLI), "monitor", "--web", "--port", "0"], env);
  const first = await m.line();
  const url = /^ipckit monitor: (http:\/\/127\.0\.0\.1:(\d+)\/) \(Ctrl-C stops\)$/.exec(first);
  assert.ok(url, `the monitor printed its URL: ${first}`);
  return { ...m, url: url[1]!, port: Number(url[2]) };
}

/** The browser helper: each call sends one command and resolves with its answer's value. */
function browser() {
  const b = start(runtimeArgv("node", BROWSER), {});
  const encoder = new TextEncoder();
  return {
    child: b.child,
    async do(command: Record<string, unknown>): Promise<unknown> {
      void b.child.stdio!.write(encoder.encode(`${JSON.stringify(command)}\n`));
      const answer = JSON.parse(await b.line()) as { ok: boolean; value?: unknown; error?: string };
      if (!answer.ok) throw new Error(`browser ${JSON.stringify(command)}: ${answer.error}`);
      return answer.value;
    },
  };
}

/** One HTTP/1.1 request written by hand (so the Host header is ours to choose); the status and the body. */
function raw(port: number, head: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let text = "";
    socket.setEncoding("utf8");
    socket.on("data", (d: string) => (text += d));
    socket.on("error", reject);
    socket.on("close", () => {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (!status) reject(new Error(`no HTTP answer: ${JSON.stringify(text)}`));
      else resolve({ status: Number(status[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) });
    });
    socket.write(`${head.replaceAll("\n", "\r\n")}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
  });
}

/** Stops a child (SIGKILL unless given a signal) and waits for it. */
async function stop(c: { child: ChildProcess } | undefined, signal: "SIGKILL" | "SIGTERM" | "SIGINT" = "SIGKILL") {
  if (!c) return undefined;
  c.child.kill(signal);
  return await c.child.exited;
}

/** A fresh registry for one test's children, and its removal with whatever they left. */
async function registry(): Promise<{ env: Record<string, string>; remove(): Promise<void> }> {
  const dir = await rt.makeTempDir("ipckit-monitor-registry-");
  return {
    env: { IPCKIT_REGISTRY: dir, IPCKIT_STATS: "on" },
    async remove() {
      await resources.clean({ dir, force: true });
      await rt.removeDir(dir);
    },
  };
}

test(
  `ipckit monitor --web on ${rt.name}: the page shows a ${OTHER} load moving, draws charts, and cleans a SIGKILLed ` +
    `${THIRD} child's leftovers after asking`,
  LONG,
  async () => {
    const reg = await registry();
    const leftover = `/ipckit-monitor-test-${rt.pid}`;
    let load, web, leaver, b;
    try {
      load = await peer(OTHER, reg.env, "load");
      web = await monitor(reg.env);
      b = browser();
      await b.do({ op: "open", url: web.url });
      const card = `.card[data-kind="channel"][data-pid="${load.child.pid}"]` +
        `[data-key="${load.child.pid}/channel/thread pair, side 0/live"]`;
      assert.equal(await b.do({ op: "wait", selector: `${card} .name` }), "thread pair, side 0");
      assert.equal(await b.do({ op: "text", selector: `${card} .meta` }), `pid ${load.child.pid} · ${OTHER}`);
      // The load runs: what the page shows it sent grows.
      const sent = `${card} [data-v="sent"]`;
      const before = String(await b.do({ op: "wait", selector: sent, text: "\\d" }));
      const after = String(await b.do({ op: "changed", selector: sent, from: before }));
      assert.ok(Number(after.replaceAll(",", "")) > Number(before.replaceAll(",", "")), `${before} -> ${after}`);
      assert.ok(Number(await b.do({ op: "count", selector: `${card} .chart canvas` })) >= 1, "a chart is drawn");
      await b.do({ op: "wait", selector: `#process-rows tr[data-pid="${load.child.pid}"]` });

      // A child of the third runtime is SIGKILLed: its stats segment and a segment of its own stay behind.
      leaver = await peer(THIRD, reg.env, "leave", leftover);
      await stop(leaver);
      const row = `#leftover-rows tr[data-pid="${leaver.child.pid}"]`;
      await b.do({ op: "wait", selector: row });
      assert.equal(await rt.exists(`/dev/shm${leftover}`), true);
      // Clean asks first; Cancel removes nothing.
      await b.do({ op: "click", selector: "#clean" });
      const asked = String(await b.do({ op: "wait", selector: "dialog#confirm[open]" }));
      assert.match(asked, new RegExp(`pid ${leaver.child.pid}`));
      assert.match(asked, new RegExp(leftover));
      await b.do({ op: "click", selector: "#confirm-cancel" });
      await b.do({ op: "gone", selector: "dialog#confirm[open]" });
      assert.equal(await rt.exists(`/dev/shm${leftover}`), true, "Cancel removed nothing");
      // Confirmed, the server runs `ipckit clean`.
      await b.do({ op: "click", selector: "#clean" });
      await b.do({ op: "wait", selector: "dialog#confirm[open]" });
      await b.do({ op: "click", selector: "#confirm-clean" });
      await b.do({ op: "wait", selector: "#clean-result", text: "removed [1-9]\\d* object" });
      assert.equal(await rt.exists(`/dev/shm${leftover}`), false, "the dead child's segment is gone");
      assert.equal(await rt.exists(`/dev/shm${leaver.segment}`), false, "and its stats segment");
      await b.do({ op: "gone", selector: row });
      assert.equal(await rt.exists(`/dev/shm${load.segment}`), true, "the live load's segment stays");
      assert.deepEqual(await b.do({ op: "errors" }), [], "no error in the page");
      // Ctrl-C closes the server.
      assert.deepEqual(await stop(web, "SIGINT"), { code: 0, signal: null });
      web = undefined;
    } finally {
      b?.child.stdio?.end();
      await stop(b);
      await stop(web);
      await stop(load);
      await stop(leaver);
      await SharedMemory.unlink(leftover).catch(() => {});
      await reg.remove();
    }
  },
);

test(
  `ipckit monitor --web on ${rt.name}: /metrics and /api/stats carry ${OTHER} and ${THIRD} processes' counters; the ` +
    "clean action refuses no token, a wrong one, a foreign Host or Origin; SIGTERM closes it",
  LONG,
  async () => {
    const reg = await registry();
    let peers: Awaited<ReturnType<typeof peer>>[] = [];
    let web;
    try {
      peers = await Promise.all([peer(OTHER, reg.env, "count", "25"), peer(THIRD, reg.env, "count", "25")]);
      web = await monitor(reg.env);
      const metrics = await fetch(`${web.url}metrics`);
      assert.equal(metrics.status, 200);
      assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
      const families = parsePrometheus(await metrics.text());
      for (const [p, on] of [[peers[0]!, OTHER], [peers[1]!, THIRD]] as const) {
        const out = families.get("ipckit_channel_messages_total")!.samples.find((s) =>
          s.labels.pid === String(p.child.pid) && s.labels.name === "thread pair, side 0" &&
          s.labels.direction === "out"
        );
        assert.equal(out?.value, 25, `${on}'s messages out`);
        assert.equal(out?.labels.runtime, on);
      }
      // /api/stats is what `ipckit stats --json` prints: the same as reading the segments here.
      const api = (await (await fetch(`${web.url}api/stats`)).json()) as stats.ProcessStats[];
      const here = await stats.listStats();
      for (const p of peers) {
        const theirs = api.find((s) => s.pid === p.child.pid);
        assert.ok(theirs, `pid ${p.child.pid} in /api/stats`);
        assert.deepEqual(theirs, here.find((s) => "pid" in s && s.pid === p.child.pid));
      }
      // The page carries the token; events start with the series, then the history.
      const page = await fetch(web.url);
      assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
      const token = /<meta name="ipckit-token" content="([0-9a-f]{48})">/.exec(await page.text())?.[1];
      assert.ok(token, "the page has a token");
      const events = await fetch(`${web.url}events`);
      assert.match(events.headers.get("content-type") ?? "", /^text\/event-stream/);
      const reader = events.body!.getReader();
      let got = "";
      while (!/event: history\ndata: .*\n\n/.test(got)) got += new TextDecoder().decode((await reader.read()).value);
      await reader.cancel();
      assert.match(got, /^retry: \d+\nevent: series\ndata: \{"channel":\["msg\/s","MB\/s"\]/);
      const history = JSON.parse(/event: history\ndata: (.*)\n/.exec(got)![1]!) as { objects: { pid: number }[] }[];
      assert.ok(history.at(-1)!.objects.some((o) => o.pid === peers[0]!.child.pid), "the history has the load");

      const host = `host: 127.0.0.1:${web.port}`;
      const post = (headers: string) => raw(web!.port, `POST /api/clean HTTP/1.1\n${headers}`);
      assert.equal((await post(host)).status, 403, "no token");
      assert.equal((await post(`${host}\nx-ipckit-token: ${"0".repeat(48)}`)).status, 403, "a wrong token");
      assert.equal(
        (await post(`host: evil.example:${web.port}\nx-ipckit-token: ${token}`)).status,
        403,
        "foreign Host",
      );
      assert.equal((await post(`host: 127.0.0.1:1\nx-ipckit-token: ${token}`)).status, 403, "another port");
      assert.equal(
        (await post(`${host}\nx-ipckit-token: ${token}\norigin: http://evil.example`)).status,
        403,
        "a foreign Origin",
      );
      assert.equal((await raw(web.port, `GET / HTTP/1.1\nhost: evil.example:${web.port}`)).status, 403);
      assert.equal((await raw(web.port, `GET /api/clean HTTP/1.1\n${host}`)).status, 405);
      assert.equal((await raw(web.port, `GET /nothing HTTP/1.1\n${host}`)).status, 404);
      assert.equal((await raw(web.port, `GET / HTTP/1.1\nhost: localhost:${web.port}`)).status, 200);
      const cleaned = await post(`${host}\nx-ipckit-token: ${token}\norigin: http://127.0.0.1:${web.port}`);
      assert.equal(cleaned.status, 200);
      const report = JSON.parse(cleaned.body) as { removed: unknown[]; kept: number };
      assert.ok(report.kept >= 2, `the live children's segments are kept: ${cleaned.body}`);
      for (const p of peers) assert.equal(await rt.exists(`/dev/shm${p.segment}`), true);
      // The port is taken: a second monitor on it says so and fails.
      const [cmd, ...args] = [...runtimeArgv(rt.name, CLI), "monitor", "--web", "--port", String(web.port)];
      const second = spawnSync(cmd!, args, { encoding: "utf8", env: { ...process.env, ...reg.env } });
      assert.equal(second.status, 1, second.stderr);
      assert.match(second.stderr, new RegExp(`Cannot listen on 127\\.0\\.0\\.1:${web.port}`));
      assert.deepEqual(await stop(web, "SIGTERM"), { code: 0, signal: null });
      web = undefined;
    } finally {
      await stop(web);
      for (const p of peers) await stop(p);
      await reg.remove();
    }
  },
);

test("ipckit monitor: bad arguments are usage errors (exit 2)", LONG, async () => {
  const cases: [string[], RegExp][] = [
    [[], /add --web/],
    [["--web", "--port", "70000"], /--port must be an integer from 0 to 65535/],
    [["--web", "--port", "http"], /--port must be an integer/],
    [["--web", "--port", "-1"], /--port must be an integer/],
    [["--web", "--host", "not a host"], /--host must be an IP address or a host name/],
    [["--web", "--host", "http://127.0.0.1"], /--host must be/],
    [["--web", "--host", "0.0.0.0"], /beyond this machine, in plain HTTP .* add --insecure/],
    [["--web", "--host", "192.168.1.9", "--port", "0"], /add --insecure/],
    [["--web", "--interval", "5"], /--interval must be an integer from 100/],
    [["--web", "--interval", "1.5e3x"], /--interval must be/],
    [["--web", "--verbose"], /unknown option "--verbose"/],
  ];
  for (const [args, message] of cases) {
    const err: string[] = [];
    const code = await main(["monitor", ...args], { out: () => {}, err: (t) => void err.push(t) });
    assert.equal(code, 2, args.join(" "));
    assert.match(err.join(""), message, args.join(" "));
    assert.match(
      err.join(""),
      /usage: ipckit monitor --web \[--port N\] \[--host H \[--insecure\]\] \[--interval MS\]/,
    );
  }
  // And from the command itself.
  const [cmd, ...rest] = runtimeArgv(rt.name, CLI);
  const r = spawnSync(cmd!, [...rest, "monitor", "--web", "--port", "99999"], { encoding: "utf8" });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--port must be an integer from 0 to 65535/);
});

test("ipckit monitor: the Host header must name this server (an address, localhost or --host, and the port)", () => {
  const ok = ["127.0.0.1:8019", "localhost:8019", "[::1]:8019", "192.168.1.5:8019", "LOCALHOST:8019", "box:8019"];
  for (const h of ok) assert.equal(hostAllowed(h, 8019, "box"), true, h);
  const bad = [
    undefined,
    "",
    "evil.example:8019",
    "127.0.0.1",
    "127.0.0.1:80",
    "localhost.evil.example:8019",
    "127.0.0.1.nip.io:8019",
    "[::1]",
    "a:b:8019",
    "user@127.0.0.1:8019",
  ];
  for (const h of bad) assert.equal(hostAllowed(h, 8019, "box"), false, String(h));
  assert.equal(hostAllowed("localhost", 80, "127.0.0.1"), true, "port 80 may go unsaid");
});
