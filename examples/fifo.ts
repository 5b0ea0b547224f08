/**
 * A FIFO pair (named pipes) between two processes that agree only on a path: this process creates the pair and
 * waits, a child on another runtime opens it, receives a list of numbers and sends it back reversed. The creator
 * removes both FIFO names as soon as the peer is connected, so nothing is left in the file system.
 *
 *   node --import tsx examples/fifo.ts      (or: npx deno run -A / npx bun examples/fifo.ts)
 *
 * @module
 */
import { fifo, runtime, runtimeArgv, typed } from "../mod.ts";

const rt = await runtime();
const [role, path] = rt.args();

if (role === "child") {
  const parent = typed<string>(await fifo.open(path!, { wait: 30_000 })); // waits for the FIFOs to appear
  const numbers = await parent.receive({ timeout: 30_000 });
  await parent.send(numbers.split(" ").reverse().join(" "));
  await parent.close();
} else {
  const dir = await rt.makeTempDir("ipckit-example-fifo-");
  const at = `${dir}/pair`; // the FIFOs are pair.in and pair.out
  try {
    const peer = rt.name === "bun" ? "deno" : "bun";
    const child = rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(import.meta.url)), "child", at], { stdio: "inherit" });
    const channel = typed<string>(await fifo.create(at, { signal: AbortSignal.timeout(30_000) }));
    const numbers = "4 8 15 16 23 42";
    await channel.send(numbers);
    const reversed = await channel.receive({ timeout: 30_000 });
    console.log(`over a FIFO pair: ${rt.name} -> ${peer}: "${numbers}" reversed is "${reversed}"`);
    await channel.close();
    await child.exited;
  } finally {
    await rt.removeDir(dir);
  }
}
