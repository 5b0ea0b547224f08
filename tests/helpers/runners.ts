/**
 * Which runner of an `npm test` run takes the checks that are the same whichever runner starts them.
 *
 * npm test runs every file on three runners (Deno, Bun, Node), so that each mechanism runs in a parent of each
 * runtime. A few checks do not depend on the parent at all: their parties are child processes of every runtime
 * (a Deno, a Bun and a Node process on one segment, in the sync suite), and the runner only sets the stage and
 * reads the result. Run by three runners they would run three times, identical. They run on one: the
 * first of bun, deno, node among the runners npm test names in `IPCKIT_TEST_RUNNERS` (Bun starts fastest). A file
 * run by hand (`deno test tests/x.test.ts`, no `IPCKIT_TEST_RUNNERS`) runs them all.
 */
import process from "node:process";
import { runtimeName } from "../../runtimes/detect.ts";

/** Whether this runner takes the checks that are the same on every runner (see the module's text). */
export function takesSharedChecks(): boolean {
  const runners = (process.env.IPCKIT_TEST_RUNNERS ?? "").split(",").filter(Boolean);
  if (runners.length === 0) return true;
  const owner = ["bun", "deno", "node"].find((r) => runners.includes(r));
  return owner === undefined || owner === runtimeName();
}
