/**
 * Child of `tests/shm_listener.test.ts`. Usage: `<runtime argv> shm_listener_peer.ts <role> ...`:
 *
 * - `client <name> <id> <calls> [block]`: an RPC client over `shm.connect(name)`: `calls` calls of `add(i, id)`,
 *   each answer checked, then prints `done <id> <calls>` and exits 0. With `block`, after 10 calls it calls
 *   `block()`, which the server never answers (the test kills it there).
 * - `ask <socket path> <step>`: a client that stops half-way through the rendezvous, speaking the bytes of the
 *   module doc itself: it sends the request, prints the segment name it got (`asked <name>`), and with step
 *   `attached` also attaches to the segment (without the notice) and prints `attached`; then waits to be killed.
 * - `listen <name>`: `shm.listen(name)`, prints `listening <socket path>`, then waits to be killed.
 */
import { native } from "../../ffi/native.ts";
import { rpc, shm } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { attachOpener, openLaidOut } from "../../shm/ring_channel_layout.ts";

const rt = await runtime();
const [role, ...args] = rt.args();
const forever = () => new Promise(() => setInterval(() => {}, 60_000));

if (role === "client") {
  const [name, idArg, callsArg, block] = args;
  const id = Number(idArg), calls = Number(callsArg);
  const client = rpc.connect<{ add(a: number, b: number): number; block(): void }>(
    await shm.connect(name!, { timeout: 60_000 }),
  );
  for (let i = 0; i < calls; i++) {
    if (block === "block" && i === 10) await client.api.block();
    const got = await client.api.add(i, id);
    if (got !== i + id) throw new Error(`client ${id} (${rt.name}): add(${i}, ${id}) gave ${got}`);
  }
  await client.close();
  console.log(`done ${id} ${calls}`);
} else if (role === "ask") {
  const [path, step] = args;
  const stream = await rt.connectUnix(path!);
  let got = new Uint8Array(0);
  const reply = new Promise<string>((resolve) => {
    stream.start({
      data(chunk) {
        got = new Uint8Array([...got, ...chunk]);
        const view = new DataView(got.buffer);
        if (got.length >= 12 && got.length >= 12 + view.getUint32(8, true)) {
          resolve(new TextDecoder().decode(got.subarray(12, 12 + view.getUint32(8, true))));
        }
      },
      end() {},
    });
  });
  const request = new Uint8Array(16);
  const view = new DataView(request.buffer);
  view.setUint32(0, 0x4c435049, true);
  view.setUint32(4, 1, true);
  view.setUint32(8, rt.pid, true);
  await stream.write(request);
  const name = await reply;
  console.log(`asked ${name}`);
  if (step === "attached") {
    const segment = await openLaidOut(name, 10_000, undefined);
    attachOpener(await native(), segment, name, true);
    console.log("attached");
  }
  await forever();
} else if (role === "listen") {
  const listener = await shm.listen(args[0]!, { capacity: 4096 });
  console.log(`listening ${listener.path}`);
  await forever();
} else {
  throw new TypeError(`Cannot run shm_listener_peer: unknown role ${JSON.stringify(role)}`);
}
