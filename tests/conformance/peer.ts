/**
 * The child side of the cross-process conformance cases. Usage: `peer.ts <transport> <address> [flags]`.
 *
 * It connects to the parent, then:
 * - `--flood N:SIZE` first sends N messages of SIZE bytes (byte j of message i is (i + j) & 255) before reading;
 * - echoes every message it receives, in order, until the parent closes; then closes and exits 0;
 * - `--max N` sets its maxMessage; a larger message from the parent makes it exit 3 (after printing the error);
 * - `--rpc` serves the RPC suite's handlers (tests/helpers/rpc_handlers.ts) instead of echoing, until the end.
 * Anything unexpected exits 1. The process must end by itself: a leaked handle shows up as a hang.
 */
import { MessageTooLargeError } from "../../errors.ts";
import { runtime } from "../../runtimes/detect.ts";
import { pattern } from "./data.ts";
import { ENTRIES } from "./registry.ts";

const rt = await runtime();
const [name, address, ...flags] = rt.args();
const line = ENTRIES.find((e) => e.name === name);
if (!line || address === undefined) {
  rt.printError(
    `peer: usage: peer.ts <${ENTRIES.map((e) => e.name).join("|")}> <address> [--flood N:SIZE] [--max N]\n`,
  );
  rt.exit(2);
  throw new Error("unreachable");
}
const fixture = await line.load();
const flag = (f: string) => {
  const i = flags.indexOf(f);
  return i >= 0 ? flags[i + 1] : undefined;
};
const max = flag("--max");
const channel = await fixture.childSide(address, max === undefined ? {} : { maxMessage: Number(max) });
try {
  if (flags.includes("--rpc")) {
    const { rpc } = await import("../../mod.ts");
    const { handlers } = await import("../helpers/rpc_handlers.ts");
    await rpc.serve(channel, handlers).done;
    rt.exit(0);
  }
  const flood = flag("--flood");
  if (flood !== undefined) {
    const [n, size] = flood.split(":").map(Number) as [number, number];
    for (let i = 0; i < n; i++) await channel.send(pattern(i, size));
  }
  for await (const m of channel) await channel.send(m);
  await channel.close();
} catch (e) {
  await channel.close();
  rt.printError(`peer (${rt.name}): ${(e as Error).name}: ${(e as Error).message}\n`);
  rt.exit(e instanceof MessageTooLargeError ? 3 : 1);
}
