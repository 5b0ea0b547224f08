/**
 * What the test suite needs from the system, checked before anything runs (`npm test` calls it first), so that a
 * fresh machine needs only `npm install` and `npm test`:
 *
 * | command      | Debian package | used by                                                              |
 * | ------------ | -------------- | -------------------------------------------------------------------- |
 * | python3      | python3        | independent peers (ctypes, sockets, shared memory, zombies, pids)    |
 * | cc           | gcc            | SharedStruct's generated C header, compiled and run                  |
 * | flock        | util-linux     | FileLock against flock(1)                                            |
 * | unshare      | util-linux     | simulated hosts (network namespaces)                                 |
 * | nats-server  | nats-server    | the NATS transport, RPC and pool over NATS                           |
 * | openssl      | openssl        | throw-away certificate authorities (TLS tests)                       |
 * | ip           | iproute2       | simulated hosts (veth pairs)                                         |
 * | tmux         | tmux           | `ipckit top` in a real terminal                                      |
 * | chromium     | chromium       | the web monitor's page in a real browser (playwright-core drives it) |
 *
 * When some are missing: as root with apt-get, it says so on one line and installs them (`apt-get update`, then
 * `apt-get install -y`); otherwise it stops at once, naming the packages and the command to run.
 *
 * @module
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** [command, Debian package]. */
export const NEEDS = [
  ["python3", "python3"],
  ["cc", "gcc"],
  ["flock", "util-linux"],
  ["unshare", "util-linux"],
  ["nats-server", "nats-server"],
  ["openssl", "openssl"],
  ["ip", "iproute2"],
  ["tmux", "tmux"],
  ["chromium", "chromium"],
];

/** Whether `command` is on the PATH (or in the sbin directories, where ip and nats-server live). */
function found(command) {
  const dirs = [...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/sbin", "/usr/local/sbin"];
  return dirs.some((dir) => {
    try {
      accessSync(join(dir, command), constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** The Debian packages whose commands are missing, each once. */
export function missingPackages() {
  return [...new Set(NEEDS.filter(([command]) => !found(command)).map(([, pkg]) => pkg))];
}

/** Checks, installs when it can, or exits with a message. Returns quietly when everything is there. */
export function preflight() {
  const missing = missingPackages();
  if (missing.length === 0) return;
  const command = `apt-get update && apt-get install -y ${missing.join(" ")}`;
  const root = typeof process.getuid === "function" && process.getuid() === 0;
  if (!root || !found("apt-get")) {
    console.error(
      `npm test needs ${missing.join(", ")} (Debian packages), which this machine lacks.\n` +
        `Install them, then run npm test again:\n  ${root ? "" : "sudo "}${command}`,
    );
    process.exit(2);
  }
  console.log(`preflight: installing ${missing.join(", ")} with apt-get (running as root)`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  for (const args of [["update"], ["install", "-y", "--no-install-recommends", ...missing]]) {
    const r = spawnSync("apt-get", args, { stdio: ["ignore", "ignore", "inherit"], env });
    if (r.status !== 0) {
      console.error(`preflight: apt-get ${args[0]} failed (exit ${r.status}); install by hand:\n  ${command}`);
      process.exit(2);
    }
  }
  const still = missingPackages();
  if (still.length > 0) {
    console.error(`preflight: still missing after apt-get: ${still.join(", ")}`);
    process.exit(2);
  }
}
