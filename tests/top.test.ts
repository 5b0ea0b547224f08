/**
 * `ipckit top` driven as a person would, in a real terminal: tmux (its own server, on a private socket) runs it
 * beside a load of another runtime; the test reads the screen (capture-pane), presses keys (send-keys) and checks
 * that the load's objects show, that their numbers move while the load runs, that `s` changes the order and that `q`
 * quits. No timing is asserted: every wait polls the screen, with a generous limit.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { type ChildProcess, resources, runtime, runtimeArgv } from "../mod.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";

const LONG = { timeout: 180_000 };
const rt = await runtime();
const CLI = rt.fromFileUrl(new URL("../cli/main.ts", import.meta.url));
const PEER = rt.fromFileUrl(new URL("./helpers/stats_peer.ts", import.meta.url));
const SOCKET = `ipckit-top-test-${rt.pid}`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs tmux on this test's own server. */
function tmux(...args: string[]): { code: number; out: string } {
  const r = spawnSync("tmux", ["-L", SOCKET, ...args], { encoding: "utf8" });
  return { code: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** The screen, once `ok` holds for it (polled; at most 60 s). */
async function screenWhen(ok: (screen: string) => boolean, what: string): Promise<string> {
  const end = Date.now() + 60_000;
  let screen = "";
  for (;;) {
    screen = tmux("capture-pane", "-p", "-t", "top").out;
    if (ok(screen)) return screen;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; the screen:\n${screen}`);
    await sleep(100);
  }
}

/** A shell word. */
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

test(
  `ipckit top on ${rt.name} shows a running load's objects, their numbers move, s sorts, q quits`,
  LONG,
  async () => {
    const other = RUNTIMES[(RUNTIMES.indexOf(rt.name) + 1) % RUNTIMES.length]!;
    const load: ChildProcess = rt.spawn([...runtimeArgv(other, PEER), "load"], {
      stdio: "pipe",
      env: { IPCKIT_STATS: "on" },
    });
    try {
      const ready = await new Promise<string>((resolve) => {
        let text = "";
        load.stdio!.start({
          data: (d) => {
            text += new TextDecoder().decode(d);
            if (text.includes("\n")) resolve(text.split("\n")[0]!);
          },
          end: () => resolve(text),
        });
      });
      assert.match(ready, /^ready /);
      const command = [...runtimeArgv(rt.name, CLI), "top"].map(quote).join(" ");
      const started = tmux("new-session", "-d", "-s", "top", "-x", "200", "-y", "50", command);
      assert.equal(started.code, 0, started.out);
      const row = new RegExp(`^${load.pid} +${other} +channel +thread pair, side 0 +live .* out (\\d+) in 0`, "m");
      const first = await screenWhen((s) => row.test(s), `the load's channel (pid ${load.pid})`);
      assert.match(first, /^ipckit top .* sort: rate \(s: change, q: quit\)/m);
      const before = Number(row.exec(first)![1]);
      // The load runs: the count it shows grows, and once a second has passed its rate is not 0.
      const later = await screenWhen((s) => Number(row.exec(s)?.[1] ?? 0) > before, "the count to move");
      assert.ok(Number(row.exec(later)![1]) > before);
      await screenWhen((s) => {
        const line = s.split("\n").find((l) => row.test(l));
        return line !== undefined && !/ live +0 /.test(line);
      }, "a rate above 0");
      tmux("send-keys", "-t", "top", "s");
      await screenWhen((s) => /sort: name/.test(s), "the order by name");
      tmux("send-keys", "-t", "top", "s");
      await screenWhen((s) => /sort: pid/.test(s), "the order by pid");
      tmux("send-keys", "-t", "top", "q");
      const end = Date.now() + 60_000;
      while (tmux("has-session", "-t", "top").code === 0) {
        if (Date.now() > end) throw new Error("ipckit top did not quit on q");
        await sleep(100);
      }
    } finally {
      tmux("kill-server");
      load.kill("SIGKILL");
      await load.exited;
      await resources.clean();
    }
  },
);

test("ipckit top without a terminal says so and points to ipckit stats --watch", LONG, () => {
  const [cmd, ...args] = runtimeArgv(rt.name, CLI);
  const r = spawnSync(cmd!, [...args, "top"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /ipckit top needs a terminal; `ipckit stats --watch` prints the same for scripts/);
});
