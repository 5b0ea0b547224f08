/**
 * Raw echo peer for `bench/roundtrip.ts`: the baseline without ipckit's framing or channels. It talks to the
 * runtime adapter's ByteStreams directly and writes every chunk it reads straight back. It exits once the parent
 * closed every stream. It logs only to stderr: stdout may be one of the streams.
 *
 * Arguments, any subset, in any order:
 *   stdio              echo over our own stdin/stdout (the parent spawned us with stdio "pipe")
 *   unix=<path>        connect to the parent's raw Unix socket at <path>
 *   tcp=<port>         connect to the parent's raw TCP socket on 127.0.0.1:<port>
 *   fifo=<path>        write <path>.in and read <path>.out (two FIFOs the parent made)
 *
 * @module
 */
import { type ByteStream, runtime } from "../../mod.ts";

const rt = await runtime();

/** Echoes `input` to `output` until `input` ends, then ends `output` and closes both. */
function echo(input: ByteStream, output: ByteStream): Promise<void> {
  return new Promise((resolve, reject) => {
    const copy = !input.ownsChunks;
    input.start({
      data(chunk) {
        void output.write(copy ? chunk.slice() : chunk)?.catch(() => {});
      },
      end(error) {
        output.end().catch(() => {}).finally(() => {
          output.close();
          input.close();
          error ? reject(error) : resolve();
        });
      },
    });
  });
}

async function serve(arg: string): Promise<void> {
  const eq = arg.indexOf("=");
  const kind = eq < 0 ? arg : arg.slice(0, eq);
  const address = eq < 0 ? "" : arg.slice(eq + 1);
  const signal = AbortSignal.timeout(15_000);
  switch (kind) {
    case "stdio": {
      const s = rt.stdio();
      return echo(s, s);
    }
    case "unix": {
      const s = await rt.connectUnix(address);
      return echo(s, s);
    }
    case "tcp": {
      const s = await rt.connectTcp({ port: Number(address), hostname: "127.0.0.1" });
      return echo(s, s);
    }
    case "fifo": {
      // Write end first, as ipckit's fifo.open does: the parent opens both of its ends at once.
      const w = await rt.openFifo(`${address}.in`, "write", signal);
      const r = await rt.openFifo(`${address}.out`, "read", signal);
      return echo(r, w);
    }
    default:
      throw new TypeError(`Cannot echo over "${arg}": expected stdio, unix=<path>, tcp=<port> or fifo=<path>`);
  }
}

const args = rt.args();
if (args.length === 0) {
  rt.printError("usage: raw_echo.ts [stdio] [unix=<path>] [tcp=<port>] [fifo=<path>]\n");
  rt.exit(2);
}
const results = await Promise.allSettled(args.map(serve));
let failed = false;
for (const [i, r] of results.entries()) {
  if (r.status === "rejected") {
    failed = true;
    rt.printError(`raw echo peer (${rt.name}) ${args[i]}: ${(r.reason as Error)?.stack ?? r.reason}\n`);
  }
}
if (failed) rt.exit(1);
