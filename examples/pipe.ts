/**
 * Anonymous pipes to children: this process starts a Bun child and talks to it over the child's stdin and stdout,
 * then a Deno child over two extra pipes (fds 3 and 4), which leaves that child its stdio for logging. Both children
 * are this same file; each sums the numbers it is sent and answers.
 *
 *   node --import tsx examples/pipe.ts      (or: npx deno run -A / npx bun examples/pipe.ts)
 *
 * @module
 */
import { type Channel, pipe, runtime, runtimeArgv, typed } from "../mod.ts";

const rt = await runtime();
const [role] = rt.args();

/** The child's side: answer each list of numbers with its sum, until the parent closes. */
async function sums(channel: Channel): Promise<void> {
  const parent = typed<number[] | number>(channel);
  for await (const numbers of parent) await parent.send((numbers as number[]).reduce((a, b) => a + b, 0));
  await parent.close();
}

if (role === "stdio-child") {
  console.error(`${rt.name} child: stdout belongs to the channel, so this goes to stderr`);
  await sums(await pipe.stdio());
} else if (role === "fds-child") {
  const channel = await pipe.inherited(); // fds 3 and 4
  console.log(`${rt.name} child: stdout is still mine`);
  await sums(channel);
} else {
  const script = rt.fromFileUrl(import.meta.url);
  for (
    const [over, runtimeName, label] of [["stdio", "bun", "over stdio"], ["fds", "deno", "over fds 3 and 4"]] as const
  ) {
    const { channel, child } = await pipe.spawn([...runtimeArgv(runtimeName, script), `${over}-child`], { over });
    const ch = typed<number[] | number>(channel);
    await ch.send([1, 2, 3]);
    console.log(`${label}: ${await ch.receive({ timeout: 30_000 })} (from a ${runtimeName} child)`);
    await ch.close(); // the child sees the end of its input and exits
    const status = await child.exited;
    if (status.code !== 0) throw new Error(`Cannot finish: the ${runtimeName} child exited with ${status.code}`);
  }
}
