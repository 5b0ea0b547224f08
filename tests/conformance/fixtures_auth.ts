/**
 * The conformance fixture of Unix sockets with the shared-secret handshake (`unix.listen(path, { auth })`,
 * `unix.connect(path, { auth })`): every connection runs the handshake before its first frame. The child peer loads
 * it through `peer.ts auth <path> [flags]`.
 */
import * as unix from "../../transports/unix.ts";
import { type Fixture, listenerFixture, unixSides } from "./fixtures.ts";

/** The secret both sides use (test data, not a secret). */
export const SECRET = "ipckit conformance secret, 36 bytes";

export const fixture: Fixture = {
  name: "auth",
  capabilities: unix.capabilities,
  ...listenerFixture("auth", unixSides({ auth: { secret: SECRET } })),
  raw: "the handshake is fed raw bytes by a Python peer in tests/auth.test.ts; after it, the unix fixture's framing",
};
