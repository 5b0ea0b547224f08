/**
 * A small TCP service: this process listens on 127.0.0.1 (a port the OS picks) and answers statistics requests;
 * one client per runtime (Deno, Bun, Node) connects, sends a request with its numbers and prints the answer. Each
 * message is one length-prefixed frame (see `transports/framing.ts`), carrying CBOR values.
 *
 *   node --import tsx examples/tcp.ts      (or: npx deno run -A / npx bun examples/tcp.ts)
 *
 * @module
 */
import { runtime, runtimeArgv, type RuntimeName, tcp, typed } from "../mod.ts";

interface Request {
  from: string;
  values: number[];
}
interface Answer {
  count: number;
  sum: number;
  mean: number;
}

const rt = await runtime();
const [role, port] = rt.args();

if (role === "client") {
  const service = typed<Request | Answer>(await tcp.connect({ port: Number(port) }));
  const values = Array.from({ length: 10 }, (_, i) => (i + 1) * rt.name.length);
  await service.send({ from: rt.name, values });
  const answer = (await service.receive({ timeout: 30_000 })) as Answer;
  console.log(`${rt.name} client: count ${answer.count}, sum ${answer.sum}, mean ${answer.mean}`);
  await service.close();
} else {
  await using listener = await tcp.listen({ port: 0 }); // hostname defaults to 127.0.0.1
  const runtimes: RuntimeName[] = ["deno", "bun", "node"];
  const script = rt.fromFileUrl(import.meta.url);
  const children = runtimes.map((r) =>
    rt.spawn([...runtimeArgv(r, script), "client", String(listener.port)], { stdio: "inherit" })
  );
  const answered: string[] = [];
  await Promise.all(runtimes.map(async () => {
    const client = typed<Request | Answer>(await listener.accept({ signal: AbortSignal.timeout(60_000) }));
    const { from, values } = (await client.receive({ timeout: 30_000 })) as Request;
    const sum = values.reduce((a, b) => a + b, 0);
    await client.send({ count: values.length, sum, mean: sum / values.length });
    answered.push(from);
    await client.close();
  }));
  for (const child of children) await child.exited;
  const who = runtimes.filter((r) => answered.includes(r)).join(", ");
  console.log(`server (${rt.name}, port ${listener.port}): ${answered.length} clients (${who}) got their answers`);
}
