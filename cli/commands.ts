/**
 * The `ipckit` command table and its dispatcher, `main()`: what `cli/main.ts` runs, importable without running it.
 *
 * @module
 */
import { runtime } from "../runtimes/detect.ts";
import { UsageError } from "./args.ts";

interface Command {
  readonly usage: string;
  readonly summary: string;
  run(args: readonly string[]): Promise<number>;
}

// Each command's module is loaded when it runs: `ipckit ls` does not load the benchmark's peers or the NATS worker.
const COMMANDS: Record<string, Command> = {
  ls: {
    usage: "ipckit ls [--json] [--all]",
    summary: "list the objects ipckit created, their owner and whether it is alive",
    run: async (args) => (await import("./records.ts")).ls(args),
  },
  clean: {
    usage: "ipckit clean [--dry-run] [--force] [--json]",
    summary: "remove the objects of dead owners, and stale records",
    run: async (args) => (await import("./records.ts")).clean(args),
  },
  stats: {
    usage: "ipckit stats [--json | --prometheus] [--watch] [--interval MS]",
    summary: "the live counters of every ipckit process on this machine (channels, pools)",
    run: async (args) => (await import("./stats.ts")).statsCommand(args),
  },
  top: {
    usage: "ipckit top [--sort rate|name|pid] [--interval MS]",
    summary: "a live view of every ipckit process and its objects, with rates (s: sort, q: quit)",
    run: async (args) => (await import("./top.ts")).top(args),
  },
  monitor: {
    usage: "ipckit monitor --web [--port N] [--host H [--insecure]] [--interval MS]",
    summary: "the same in a browser, live, with charts, /metrics and a clean button (127.0.0.1:8019 by default)",
    run: async (args) => (await import("./monitor.ts")).monitor(args),
  },
  bench: {
    usage: "ipckit bench [--runtime deno,bun,node] [--transport unix,tcp,pipe,fifo,shm,mq] [--quick] [--iterations N]",
    summary: "round trips per transport with a child of each runtime",
    run: async (args) => (await import("./bench.ts")).bench(args),
  },
  demo: {
    usage: "ipckit demo [--iterations N]",
    summary: "one process talking to Deno, Bun and Node children",
    run: async (args) => (await import("./demo.ts")).demo(args),
  },
  worker: {
    usage: "ipckit worker --nats URL[,URL...] --module FILE [--subject NAME] [--heartbeat MS] [--wait MS] " +
      "[--secret-file FILE] [--tls-ca FILE] [--tls-cert FILE --tls-key FILE] [--name NAME]",
    summary: "serve a module's handlers to a Pool over NATS, from any host",
    run: async (args) => (await import("./worker.ts")).workerCommand(args),
  },
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length));
  return [
    "usage: ipckit <command> [options]",
    "",
    ...Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    "",
    ...Object.values(COMMANDS).map((c) => `  ${c.usage}`),
    "",
    "`ipckit <command> --help` shows one command. Records: IPCKIT_REGISTRY (a directory, or off),",
    "else $XDG_RUNTIME_DIR/ipckit, else <tmpdir>/ipckit-<uid>.",
  ].join("\n");
}

/** Where `main()` writes its own lines (help, usage errors); a command's output goes to the console. */
export interface CliOutput {
  out(text: string): void;
  err(text: string): void;
}

/**
 * Runs the command line `args`; resolves with the exit code (0 done, 1 failed, 2 bad usage). A command's failure
 * rejects (`cli/main.ts` prints it).
 */
export async function main(args: readonly string[], io?: CliOutput): Promise<number> {
  const rt = await runtime();
  const { out, err } = io ?? { out: (text: string) => console.log(text), err: (text: string) => rt.printError(text) };
  const [name, ...rest] = args;
  if (name === undefined) {
    err(`${help()}\n`);
    return 2;
  }
  if (name === "--help" || name === "-h" || name === "help") {
    const about = rest[0] === undefined ? undefined : COMMANDS[rest[0]];
    out(about ? `usage: ${about.usage}\n\n${about.summary}` : help());
    return 0;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    err(`ipckit: unknown command "${name}"\n\n${help()}\n`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    out(`usage: ${command.usage}\n\n${command.summary}`);
    return 0;
  }
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      err(`ipckit ${name}: ${e.message}\nusage: ${command.usage}\n`);
      return 2;
    }
    throw e;
  }
}
