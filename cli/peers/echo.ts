/**
 * Echo peer for `ipckit bench`, `ipckit demo` and `bench/`: connects over every transport named in its arguments
 * and sends every message it receives straight back, through ipckit channels. It exits once the parent closed all
 * of them. It logs only to stderr: stdout belongs to the pipe channel.
 *
 * Arguments, any subset, in any order:
 *   pipe               the parent started us with `pipe.spawn`: echo over stdin/stdout
 *   unix=<path>        connect to the parent's Unix socket listener at <path>
 *   tcp=<port>         connect to the parent's TCP listener on 127.0.0.1:<port>
 *   fifo=<path>        open the FIFO pair the parent creates at <path>
 *   shm=<name>         open the shared-memory channel the parent creates at <name>
 *   mq=<name>          open the POSIX message queue channel the parent creates at <name>
 *
 *   deno run -A cli/peers/echo.ts unix=/tmp/x.sock tcp=4000
 *
 * @module
 */
import { runtime } from "../../runtimes/detect.ts";
import type { Channel } from "../../transports/channel.ts";
import * as fifo from "../../transports/fifo.ts";
import * as mq from "../../transports/mq.ts";
import * as pipe from "../../transports/pipe.ts";
import * as shm from "../../transports/shm.ts";
import * as tcp from "../../transports/tcp.ts";
import * as unix from "../../transports/unix.ts";

/** How long to wait for the parent's FIFOs, segment or queues to appear, in milliseconds. */
const WAIT_MS = 15_000;

async function open(arg: string): Promise<Channel> {
  const eq = arg.indexOf("=");
  const kind = eq < 0 ? arg : arg.slice(0, eq);
  const address = eq < 0 ? "" : arg.slice(eq + 1);
  switch (kind) {
    case "pipe":
      return await pipe.stdio();
    case "unix":
      return await unix.connect(address);
    case "tcp":
      return await tcp.connect({ port: Number(address) });
    case "fifo":
      return await fifo.open(address, { wait: WAIT_MS });
    case "shm":
      return await shm.open(address, { wait: WAIT_MS });
    case "mq":
      return await mq.channel(address, { wait: WAIT_MS });
    default:
      throw new TypeError(
        `Cannot echo over "${arg}": expected pipe, unix=<path>, tcp=<port>, fifo=<path>, shm=<name> or mq=<name>`,
      );
  }
}

async function echo(channel: Channel): Promise<void> {
  try {
    for await (const message of channel) await channel.send(message);
  } finally {
    await channel.close();
  }
}

async function main(): Promise<void> {
  const rt = await runtime();
  const args = rt.args();
  if (args.length === 0) {
    rt.printError("usage: echo.ts [pipe] [unix=<path>] [tcp=<port>] [fifo=<path>] [shm=<name>] [mq=<name>]\n");
    rt.exit(2);
  }
  // Open all at once: the parent accepts them in whatever order they come.
  const results = await Promise.allSettled(args.map(async (arg) => echo(await open(arg))));
  let failed = false;
  for (const [i, r] of results.entries()) {
    if (r.status === "rejected") {
      failed = true;
      rt.printError(`echo peer (${rt.name}) ${args[i]}: ${(r.reason as Error)?.stack ?? r.reason}\n`);
    }
  }
  if (failed) rt.exit(1);
}

void main();
