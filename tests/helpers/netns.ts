/**
 * Simulated hosts for the multi-host tests: Linux network namespaces, each joined to this one by a veth pair on a
 * /24 of its own (`ip netns`, `ip link`; needs root or CAP_NET_ADMIN). Hosts get their own hostname too
 * (`unshare --uts`). `makeHosts` says why when namespaces are not available, so the caller can fall back.
 */
import { execFileSync } from "node:child_process";

export interface Host {
  /** The namespace's name. */
  readonly ns: string;
  /** This machine's address as seen from the host (the root side of the veth pair). */
  readonly gateway: string;
  /** The host's own address. */
  readonly address: string;
  /** The hostname it gets. */
  readonly hostname: string;
  /** Wraps a command to run it on that host. */
  readonly prefix: string[];
}

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: "pipe" });

/** Creates `n` hosts, or returns why it cannot. `remove()` deletes them whatever happened. */
export function makeHosts(n: number, tag: string): { hosts: Host[]; remove(): void } | { unavailable: string } {
  const made: string[] = [];
  const remove = () => {
    for (const ns of made) {
      try {
        ip("netns", "del", ns); // deleting the namespace deletes its veth end, and with it the pair
      } catch {
        // already gone
      }
    }
  };
  const hosts: Host[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const ns = `ipk-${tag}-${i}`;
      const net = `10.${200 + i}.${Number(tag) % 250}`;
      const [outer, inner] = [`vo${tag}${i}`.slice(0, 15), `vi${tag}${i}`.slice(0, 15)];
      ip("netns", "add", ns);
      made.push(ns);
      ip("link", "add", outer, "type", "veth", "peer", "name", inner);
      ip("link", "set", inner, "netns", ns);
      ip("addr", "add", `${net}.1/24`, "dev", outer);
      ip("link", "set", outer, "up");
      ip("-n", ns, "addr", "add", `${net}.2/24`, "dev", inner);
      ip("-n", ns, "link", "set", inner, "up");
      ip("-n", ns, "link", "set", "lo", "up");
      const hostname = `ipk-host-${i}`;
      hosts.push({
        ns,
        gateway: `${net}.1`,
        address: `${net}.2`,
        hostname,
        prefix: ["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname],
      });
    }
    return { hosts, remove };
  } catch (e) {
    remove();
    return { unavailable: String((e as { stderr?: unknown }).stderr ?? (e as Error).message).trim() };
  }
}
