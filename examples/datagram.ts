/**
 * A metrics collector over datagrams: one collector process binds a Unix datagram socket and a UDP socket, and
 * reporters on Deno, Bun and Node each send a few samples (JSON) over one of them, then "done". The collector sums
 * what arrives per reporter and answers each "done" with the total it saw, so every reporter can check nothing was
 * lost (Unix datagrams are reliable on Linux; UDP over loopback normally is too, but the collector does not count on
 * it: it reports what it got).
 *
 *   node --import tsx examples/datagram.ts
 *   npx deno run -A examples/datagram.ts
 *   npx bun examples/datagram.ts
 *
 * @module
 */
import { type Channel, json, runtime, runtimeArgv, type RuntimeName, udp, unixDgram } from "../mod.ts";

interface Sample {
  from: string;
  value: number;
}

const rt = await runtime();
const [role, kind, address] = rt.args();

if (role === "reporter") {
  const channel: Channel = kind === "udp"
    ? await udp.connect({ port: Number(address) })
    : await unixDgram.connect(address!);
  const me = `${rt.name}/${kind}`;
  let sum = 0;
  for (let i = 1; i <= 5; i++) {
    await channel.send(json.encode({ from: me, value: i * 10 } satisfies Sample));
    sum += i * 10;
  }
  await channel.send(json.encode({ from: me, value: -1 })); // done
  const total = json.decode(await channel.receive({ timeout: 10_000 })) as number;
  console.log(`${me}: sent ${sum}, the collector saw ${total}`);
  await channel.close();
} else {
  const dir = await rt.makeTempDir("ipckit-example-");
  const unixSocket = await unixDgram.bind(`${dir}/collector`);
  const udpSocket = await udp.bind({ port: 0 });
  try {
    const runtimes: RuntimeName[] = ["deno", "bun", "node"];
    const children = runtimes.flatMap((r) => [
      rt.spawn([...runtimeArgv(r, rt.fromFileUrl(import.meta.url)), "reporter", "unix", unixSocket.address], {
        stdio: "inherit",
      }),
      rt.spawn(
        [...runtimeArgv(r, rt.fromFileUrl(import.meta.url)), "reporter", "udp", String(udpSocket.address.port)],
        {
          stdio: "inherit",
        },
      ),
    ]);
    const totals = new Map<string, number>();
    // One loop per socket; each ends when all three of its reporters said "done".
    const collect = async <A>(
      socket: {
        receive(o?: { timeout?: number }): Promise<{ data: Uint8Array; from: A }>;
        send(d: Uint8Array, to: A): Promise<void>;
      },
    ) => {
      let done = 0;
      while (done < runtimes.length) {
        const { data, from } = await socket.receive({ timeout: 60_000 });
        const s = json.decode(data) as Sample;
        if (s.value >= 0) totals.set(s.from, (totals.get(s.from) ?? 0) + s.value);
        else {
          done++;
          await socket.send(json.encode(totals.get(s.from) ?? 0), from);
        }
      }
    };
    await Promise.all([collect(unixSocket), collect(udpSocket)]);
    for (const child of children) await child.exited;
    console.log(`collector (${rt.name}): ${[...totals].map(([k, v]) => `${k}=${v}`).join(", ")}`);
  } finally {
    await unixSocket.close();
    await udpSocket.close();
    await rt.removeDir(dir);
  }
}
