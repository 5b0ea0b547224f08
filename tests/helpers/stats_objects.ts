/**
 * Waiting for an object in a process's live stats (`stats.listStats()`), as the stats tests do: by name, until a
 * check accepts it, for at most a minute (no timing is asserted).
 *
 * @module
 */
import { stats } from "../../mod.ts";

/** The object named `name` in the stats segment of process `pid`, once `ok` accepts it; throws after 60 s. */
export async function statsObject(
  pid: number,
  name: string,
  ok: (o: stats.ObjectStats) => boolean,
): Promise<stats.ObjectStats> {
  const end = Date.now() + 60_000;
  for (;;) {
    const os = (await stats.listStats()).flatMap((p) => ("pid" in p && p.pid === pid ? p.objects : []))
      .filter((o) => o.name === name);
    const found = os.find(ok);
    if (found) return found;
    if (Date.now() > end) throw new Error(`timed out waiting for "${name}": last ${JSON.stringify(os)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
