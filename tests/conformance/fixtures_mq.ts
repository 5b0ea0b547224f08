/**
 * The conformance fixture of the POSIX message queue channel (`mq.channel`). The child peer loads it through
 * `peer.ts mq <name> [flags]`.
 *
 * The queues keep the Linux default sizes (10 messages of 8192 bytes, the most an unprivileged process may ask
 * for, and within RLIMIT_MSGQUEUE): the suite's 4 MiB messages travel in pieces, which is what it checks.
 */
import * as mq from "../../transports/mq.ts";
import { CONNECT_TIMEOUT, createWithPeer, type Fixture, remoteOf } from "./fixtures.ts";

/** Every channel name the fixture handed out, so a test can check no queue is left behind. */
export const mqNames: Set<string> = new Set();

function mqName(): string {
  const name = `/ipckit-test-mq-${Math.random().toString(36).slice(2, 12)}`;
  mqNames.add(name);
  return name;
}

export const fixture: Fixture = {
  name: "mq",
  capabilities: mq.capabilities,
  async pair(options = {}) {
    const name = mqName();
    const [a, b] = await Promise.all([
      mq.channel(name, { ...options, create: true }),
      mq.channel(name, { ...options, wait: 10_000 }),
    ]);
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const name = mqName();
    const { channel, child } = await createWithPeer(
      (signal) => mq.channel(name, { ...options, create: true, signal }),
      rtName,
      ["mq", name, ...flags],
    );
    return remoteOf(channel, child);
  },
  childSide: (name, options) => mq.channel(name, { ...options, wait: CONNECT_TIMEOUT }),
  raw: "a message queue carries whole messages, not a byte stream: tests/mq.test.ts checks the wire format",
};
