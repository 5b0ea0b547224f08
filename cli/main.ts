#!/usr/bin/env node
/**
 * The `ipckit` command: inspect and clean the OS objects ipckit created, benchmark the transports, run the demo.
 *
 *   ipckit ls [--json] [--all]          objects recorded by ipckit, with owner pid and whether the owner is alive
 *   ipckit clean [--dry-run] [--force] [--json]   remove the objects of dead owners that are still the objects
 *                                       recorded (and stale records); --force: also those of records without identity
 *   ipckit stats [--json | --prometheus]  every ipckit process's live counters
 *   ipckit top                          the same live in the terminal, with rates
 *   ipckit monitor --web [--port N]     the same live in a browser, with charts, /metrics and a clean button
 *   ipckit bench [--runtime ...] [--quick]   round trips per transport, a table per runtime
 *   ipckit demo                         one process talking to a Deno, a Bun and a Node child
 *   ipckit worker --nats URL --module F  a pool worker on any host, joining a Pool over NATS
 *
 * From the source: `deno task ipckit ls`, `bun cli/main.ts ls`, `node --import tsx cli/main.ts ls`. Records live in
 * `IPCKIT_REGISTRY`, `$XDG_RUNTIME_DIR/ipckit` or `<tmpdir>/ipckit-<uid>` (see `resources.ts`). Exit codes: 0 done,
 * 1 failed, 2 bad usage.
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import { main } from "./commands.ts";

async function run(): Promise<void> {
  const rt = await runtime();
  let code: number;
  try {
    code = await main(rt.args());
  } catch (e) {
    // The stack only on request: a failed command says what failed, in one line.
    const debug = rt.env("IPCKIT_DEBUG") !== undefined;
    rt.printError(`ipckit: ${debug ? (e as Error)?.stack : (e as Error)?.message ?? e}\n`);
    code = 1;
  }
  rt.exit(code);
}

void run();
