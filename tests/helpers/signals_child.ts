/**
 * Child for tests/signals.test.ts.
 *
 * - `signals_child.ts send <pid> <SIG>...`: sends each signal to `pid` (the parent) with `signals.send`, exits 0.
 * - `signals_child.ts handle`: two `signals.on("SIGUSR2")` handlers and one for SIGHUP; reports "ready", then
 *   "SIGUSR2 1,2" (the order the handlers ran in) and "SIGHUP" as the signals come; exits 0 after SIGHUP.
 * - `signals_child.ts dispose`: installs and disposes a SIGUSR2 handler, lets a `signals.wait("SIGUSR2")` time
 *   out, reports "ready" and stays alive: a SIGUSR2 must now kill it (the default action is back).
 */
import type { SignalName } from "../../runtimes/runtime.ts";
import * as signals from "../../signals.ts";
import * as pipe from "../../transports/pipe.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const [mode, ...rest] = rt.args();
const enc = new TextEncoder();

if (mode === "send") {
  const pid = Number(rest[0]);
  for (const name of rest.slice(1)) await signals.send(pid, name as SignalName);
} else if (mode === "handle") {
  const channel = await pipe.stdio();
  const order: number[] = [];
  let hup!: () => void;
  const gotHup = new Promise<void>((resolve) => (hup = resolve));
  using _a = await signals.on("SIGUSR2", () => order.push(1));
  using _b = await signals.on("SIGUSR2", () => {
    order.push(2);
    void channel.send(enc.encode(`SIGUSR2 ${order.join(",")}`));
    order.length = 0;
  });
  using _c = await signals.on("SIGHUP", () => hup());
  await channel.send(enc.encode("ready"));
  await gotHup;
  await channel.send(enc.encode("SIGHUP"));
  await channel.close();
} else if (mode === "dispose") {
  const channel = await pipe.stdio();
  const h = await signals.on("SIGUSR2", () => {});
  h[Symbol.dispose]();
  await signals.wait("SIGUSR2", { timeout: 20 }).catch(() => {});
  await channel.send(enc.encode("ready"));
  for await (const _ of channel) { /* stay alive until the signal ends us */ }
}
