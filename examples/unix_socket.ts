/**
 * Client/server over a Unix domain socket: an echo server in this process, and one client per runtime (Deno, Bun,
 * Node) in child processes. Each client says who it is, sends 100 messages without waiting, then checks that the
 * 101 echoes came back whole and in order. Values travel as CBOR (`typed()`); the socket file lives in a fresh
 * temporary directory and `close()` removes it.
 *
 *   node --import tsx examples/unix_socket.ts      (or: npx deno run -A / npx bun examples/unix_socket.ts)
 *
 * @module
 */
import { runtime, runtimeArgv, type RuntimeName, typed, unix } from "../mod.ts";

const rt = await runtime();
const [role, path] = rt.args();
const MESSAGES = 100;

if (role === "client") {
  const server = typed<string>(await unix.connect(path!));
  const sent = [`hello from ${rt.name}`];
  for (let i = 1; i <= MESSAGES; i++) sent.push(`message ${i} from ${rt.name}`);
  for (const m of sent) await server.send(m); // all at once: the socket buffers them
  for (const m of sent) {
    const echo = await server.receive({ timeout: 30_000 });
    if (echo !== m) throw new Error(`Cannot trust the echo: got "${echo}", expected "${m}"`);
  }
  console.log(`${rt.name} client: ${sent.length} echoes, whole and in order`);
  await server.close();
} else {
  const dir = await rt.makeTempDir("ipckit-example-unix-");
  const socketPath = `${dir}/echo.sock`;
  const listener = await unix.listen(socketPath);
  const runtimes: RuntimeName[] = ["deno", "bun", "node"];
  try {
    const script = rt.fromFileUrl(import.meta.url);
    const children = runtimes.map((r) =>
      rt.spawn([...runtimeArgv(r, script), "client", socketPath], { stdio: "inherit" })
    );
    /** Echoes everything on one connection; returns who it was and how many messages it echoed. */
    const serve = async (channel: Awaited<ReturnType<typeof unix.connect>>): Promise<[string, number]> => {
      const client = typed<string>(channel);
      let who = "";
      let count = 0;
      for await (const message of client) {
        if (count++ === 0) who = message.replace("hello from ", "");
        await client.send(message);
      }
      await client.close();
      return [who, count];
    };
    const served: Promise<[string, number]>[] = [];
    for (const _ of runtimes) served.push(serve(await listener.accept({ signal: AbortSignal.timeout(60_000) })));
    const counts = new Map(await Promise.all(served));
    for (const child of children) {
      const status = await child.exited;
      if (status.code !== 0) throw new Error(`Cannot finish: a client exited with ${status.code}`);
    }
    const each = new Set(runtimes.map((r) => counts.get(r)));
    console.log(
      `server (${rt.name}): echoed ${[...each].join("/")} messages for ${
        runtimes.join(", ").replace(/, (\w+)$/, " and $1")
      }`,
    );
  } finally {
    await listener.close(); // removes the socket file
    await rt.removeDir(dir);
  }
}
