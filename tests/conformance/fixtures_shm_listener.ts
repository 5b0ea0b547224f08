/**
 * The conformance fixture of the shm listener (`shm.listen(name)`, `shm.connect(name)`): each pair is a client's
 * channel and the one the listener accepted for it, a ring pair in a segment of its own. The child peer loads it
 * through `peer.ts shm_listener <name> [flags]`.
 */
import * as shm from "../../transports/shm.ts";
import type { ChannelOptions } from "../../mod.ts";
import { CONNECT_TIMEOUT, type Fixture, listenerFixture } from "./fixtures.ts";

/** Rings big enough for the suite's largest message (4 MiB) and its floods (3 MiB before reading), as the shm fixture. */
const CAPACITY = 8 * 1024 * 1024;

const limit = (options: ChannelOptions) => options.maxMessage === undefined ? {} : { maxMessage: options.maxMessage };

export const fixture: Fixture = {
  name: "shm_listener",
  capabilities: { ordered: true, reliable: true, maxMessage: CAPACITY - 8, crossHost: false, datagram: false },
  ...listenerFixture("shm_listener", {
    async listen(options) {
      const name = `/ipckit-test-l${Math.random().toString(36).slice(2, 12)}`;
      // spin 0: a pair has both ends in one thread, where spinning cannot see the other end move.
      const listener = await shm.listen(name, { ...limit(options), capacity: CAPACITY, spin: 0 });
      return { listener, address: name, cleanup: () => listener.close() };
    },
    connect: (name, options) => shm.connect(name, { ...limit(options), spin: 0, timeout: CONNECT_TIMEOUT }),
  }),
  raw: "a shm channel has no byte stream; tests/shm_listener.test.ts feeds the rendezvous raw bytes instead",
};
