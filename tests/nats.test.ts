import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { ClosedError, nats, NotFoundError, PermissionError, ProtocolError, TimeoutError } from "../mod.ts";
import { channelConformance } from "./conformance/channel.ts";
import { fixture, subject, useServer } from "./conformance/fixtures_nats.ts";
import { type NatsServer, startNatsServer } from "./helpers/nats_server.ts";

let server: NatsServer;
before(async () => {
  server = await startNatsServer();
  useServer(server.url);
});
after(() => server?.stop());

channelConformance(fixture);
