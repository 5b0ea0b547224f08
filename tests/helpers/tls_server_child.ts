/**
 * A TLS server in a child process, for tests/tls.test.ts across runtimes, started with `pipe.spawn`. Its first
 * message from the parent is the test CA's PEM texts as JSON. It listens on 127.0.0.1 with the CA's server
 * certificate and `requestCert`, sends its port to the parent as JSON, then for each connection it accepts echoes every message, and sends the parent
 * `{ reject: name, message }` for each connection it refused. It exits when the parent closes the pipe.
 */
import { pipe, tcp } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import type { TestCa } from "./tls_ca.ts";

const rt = await runtime();
const parent = await pipe.stdio();
const ca = JSON.parse(new TextDecoder().decode(await parent.receive())) as TestCa;
const say = (value: unknown) => parent.send(new TextEncoder().encode(JSON.stringify(value))).catch(() => {});
const listener = await tcp.listen({
  port: 0,
  tls: { cert: ca.cert, key: ca.key, ca: ca.ca, requestCert: true },
  onReject: (e) => void say({ reject: e.name, message: e.message }),
});
void (async () => {
  for await (const channel of listener) {
    void (async () => {
      for await (const m of channel) await channel.send(m);
      await channel.close();
    })().catch(() => {});
  }
})();
await say({ port: listener.port, runtime: rt.name });
for await (const _ of parent) { /* until the parent closes */ }
await listener.close();
await parent.close();
rt.exit(0);
