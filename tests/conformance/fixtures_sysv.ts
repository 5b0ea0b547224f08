/**
 * The conformance fixture of the System V message queue channel (`sysv.channel`). The child peer loads it through
 * `peer.ts sysv <key> [flags]`.
 *
 * Keys are random 31-bit numbers; the creator refuses a key in use (`AlreadyExistsError`), so the fixture tries
 * another. Messages over msgmax - 1 bytes (8191 by default) travel in pieces, which the suite's 4 MiB messages
 * check.
 */
import { AlreadyExistsError } from "../../errors.ts";
import * as sysv from "../../transports/sysv.ts";
import { CONNECT_TIMEOUT, createWithPeer, type Fixture, remoteOf } from "./fixtures.ts";

/** Every key the fixture handed out, so a test can check no queue is left behind. */
export const sysvKeys: Set<number> = new Set();

/** A fresh random key (1 .. 2^31 - 1), recorded in `sysvKeys`. */
export function randomKey(): number {
  const k = 1 + Math.floor(Math.random() * (2 ** 31 - 2));
  sysvKeys.add(k);
  return k;
}

/** Runs `fn` with fresh keys until one is free. */
async function withFreeKey<T>(fn: (k: number) => Promise<T>): Promise<T> {
  for (let i = 0;; i++) {
    try {
      return await fn(randomKey());
    } catch (e) {
      if (!(e instanceof AlreadyExistsError) || i > 10) throw e;
    }
  }
}

export const fixture: Fixture = {
  name: "sysv",
  capabilities: sysv.capabilities,
  async pair(options = {}) {
    const [a, b] = await withFreeKey((k) =>
      Promise.all([sysv.channel(k, { ...options, create: true }), sysv.channel(k, { ...options, wait: 10_000 })])
    );
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const { channel, child } = await withFreeKey((k) =>
      createWithPeer(
        (signal) => sysv.channel(k, { ...options, create: true, signal }),
        rtName,
        ["sysv", String(k), ...flags],
      )
    );
    return remoteOf(channel, child);
  },
  childSide: (k, options) => sysv.channel(Number(k), { ...options, wait: CONNECT_TIMEOUT }),
  raw: "a message queue carries whole messages, not a byte stream: tests/sysv.test.ts checks the wire format",
};
