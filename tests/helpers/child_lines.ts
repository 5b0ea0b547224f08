/** A child process whose stdout is read line by line, for tests that talk to a child by what it prints. */
import type { ChildProcess } from "../../mod.ts";
import type { Runtime } from "../../runtimes/runtime.ts";

/** A child and its stdout's lines as they come (`line()`; "(the child's output ended)" once it ends). */
export interface LineChild {
  child: ChildProcess;
  line: () => Promise<string>;
}

/** Spawns `argv` with `env` added to this environment, stdin and stdout piped. */
export function spawnWithLines(rt: Runtime, argv: string[], env: Record<string, string>): LineChild {
  const child = rt.spawn(argv, { stdio: "pipe", env });
  let buffer = "";
  const waiting: ((l: string) => void)[] = [];
  const lines: string[] = [];
  const decoder = new TextDecoder();
  child.stdio!.start({
    data: (d) => {
      buffer += decoder.decode(d, { stream: true });
      for (let i = buffer.indexOf("\n"); i >= 0; i = buffer.indexOf("\n")) {
        const l = buffer.slice(0, i);
        buffer = buffer.slice(i + 1);
        const w = waiting.shift();
        if (w) w(l);
        else lines.push(l);
      }
    },
    end: () => {
      for (const w of waiting.splice(0)) w("(the child's output ended)");
    },
  });
  return {
    child,
    line: () => lines.length > 0 ? Promise.resolve(lines.shift()!) : new Promise((r) => waiting.push(r)),
  };
}
