/**
 * Child for tests/runtime.test.ts. `signal_child.ts handle`: reports "ready" over the pipe channel, reports
 * "got SIGUSR2" when the signal comes, then exits 0. `signal_child.ts dispose`: registers a SIGUSR2 handler,
 * disposes it, reports "ready" and waits: the signal must then kill it (the default action).
 */
import { pipe } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";

const rt = await runtime();
const channel = await pipe.stdio();
const text = new TextEncoder();
const mode = rt.args()[0];
if (mode === "handle") {
  const got = new Promise<void>((resolve) => {
    const handler = rt.onSignal("SIGUSR2", () => {
      handler[Symbol.dispose]();
      resolve();
    });
  });
  await channel.send(text.encode("ready"));
  await got;
  await channel.send(text.encode("got SIGUSR2"));
  await channel.close();
} else {
  const handler = rt.onSignal("SIGUSR2", () => {});
  handler[Symbol.dispose]();
  await channel.send(text.encode("ready"));
  // Stay alive until the signal ends us (or the parent closes the channel).
  for await (const _ of channel) { /* nothing */ }
}
