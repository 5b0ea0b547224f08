/**
 * Publish-subscribe over shared memory: this process publishes prices once; a Deno, a Bun and a Node subscriber
 * (child processes) each receive every one of them, the last two asking also for the 3 published before they
 * joined. The messages are written once into the ring, whatever the number of subscribers.
 *
 *   deno run -A examples/shm_pubsub.ts     (the children run `<runtime> examples/shm_pubsub.ts sub <name> <history>`)
 *
 * @module
 */
import { runtime, runtimeArgv, shm } from "../mod.ts";

const rt = await runtime();
const [role, name, history] = rt.args();

if (role === "sub") {
  await using prices = await shm.subscriber(name!, { history: Number(history), wait: 10_000 });
  console.log("ready");
  let count = 0;
  let first = "";
  for await (const m of prices) { // until the publisher closes
    if (count++ === 0) first = new TextDecoder().decode(m);
    if (first === "") throw new Error("an empty price");
  }
  console.log(`${rt.name} subscriber: ${count} prices, the first "${first}"`);
} else {
  const channel = `/ipckit-example-pubsub-${rt.pid}`;
  await using prices = await shm.publisher(channel, { capacity: 1 << 16, history: 3 });
  const encode = (i: number) => new TextEncoder().encode(`tick ${i}: ${(100 + Math.sin(i)).toFixed(2)}`);
  for (let i = 0; i < 5; i++) await prices.publish(encode(i)); // before anyone listens: 2, 3 and 4 are kept
  const script = rt.fromFileUrl(import.meta.url);
  const children = (["deno", "bun", "node"] as const).map((r, k) =>
    rt.spawn([...runtimeArgv(r, script), "sub", channel, k === 0 ? "0" : "3"], { stdio: "pipe" })
  );
  const lines = children.map((c) => {
    let text = "";
    const decoder = new TextDecoder();
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    c.stdio!.start({
      data: (d) => {
        text += decoder.decode(d, { stream: true });
        if (text.includes("ready\n")) ready();
      },
      end: () => ready(),
    });
    return { isReady, text: () => text };
  });
  await Promise.all(lines.map((l) => l.isReady));
  console.log(`publisher: ${prices.subscriberCount} subscribers`);
  for (let i = 5; i < 1005; i++) await prices.publish(encode(i)); // waits for the slowest (policy "block")
  await prices.close();
  const codes = await Promise.all(children.map((c) => c.exited.then((s) => s.code)));
  for (const l of lines) console.log(l.text().replace("ready\n", "").trim());
  console.log(`publisher: published 1005 prices once; exit codes ${codes.join(", ")}`);
}
