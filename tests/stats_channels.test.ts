/**
 * Counters of every channel kind (transports/channel.ts: messages and bytes each way, ends by an error) and of NATS
 * links (transports/nats_link.ts: connected, drops, reconnects, channels on it), read from this process's stats
 * segment. The broken peer is raw bytes on a socket; the link's drops and reconnects come from a real server that
 * stops and from a connection whose status events the test writes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect as rawConnect } from "node:net";
import { nats, ProtocolError, runtime, stats, unix } from "../mod.ts";
import { startNatsServer } from "./helpers/nats_server.ts";

const LONG = { timeout: 120_000 };
const rt = await runtime();
stats.setStats(true);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** This process's objects named `name`, once `ok` accepts them (at most 60 s; no timing is asserted). */
async function mine(name: string, ok: (os: stats.ObjectStats[]) => boolean): Promise<stats.ObjectStats[]> {
  const end = Date.now() + 60_000;
  for (;;) {
    const os = (await stats.listStats()).flatMap((p) => ("pid" in p && p.pid === rt.pid ? p.objects : []))
      .filter((o) => o.name === name);
    if (ok(os)) return os;
    if (Date.now() > end) throw new Error(`timed out waiting for "${name}": last ${JSON.stringify(os)}`);
    await sleep(20);
  }
}

test(
  "stats channels: a Unix socket pair counts messages and bytes each way; a broken frame counts as an error",
  LONG,
  async () => {
    const dir = await rt.makeTempDir("ipckit-stats-unix-");
    const path = `${dir}/s.sock`;
    const name = `Unix socket "${path}"`;
    const listener = await unix.listen(path);
    try {
      const client = await unix.connect(path);
      const server = await listener.accept();
      for (let i = 0; i < 3; i++) await client.send(new Uint8Array(10));
      for (let i = 0; i < 3; i++) await server.receive();
      await server.send(new Uint8Array(4));
      await client.receive();
      const pair = await mine(name, (os) => os.some((o) => o.counters.messagesOut === 3 && o.counters.bytesIn === 4));
      const c = pair.find((o) => o.counters.messagesOut === 3)!;
      const s = pair.find((o) => o.counters.messagesIn === 3)!;
      assert.deepEqual([c.kind, c.counters.bytesOut, c.counters.messagesIn, c.counters.errors], ["channel", 30, 1, 0]);
      assert.deepEqual([s.counters.bytesIn, s.counters.messagesOut, s.counters.bytesOut], [30, 1, 4]);
      await client.close();
      await server.close();
      await mine(name, (os) => os.length >= 2 && os.every((o) => o.state === "closed"));
      // A raw peer: a frame that says 5 bytes, then 1 byte and the end.
      const raw = rawConnect(path);
      const broken = await listener.accept();
      raw.end(new Uint8Array([0, 0, 0, 5, 0x61]));
      await assert.rejects(broken.receive(), ProtocolError);
      const ended = await mine(name, (os) => os.some((o) => o.counters.errors === 1));
      assert.equal(ended.find((o) => o.counters.errors === 1)!.state, "closed");
      await broken.close();
      raw.destroy();
    } finally {
      await listener.close();
      await rt.removeDir(dir);
    }
  },
);

test("stats channels: a NATS link is connected with its channels; a stopped server counts a drop", LONG, async () => {
  const server = await startNatsServer();
  try {
    const link = await nats.open({ servers: server.url, name: "stats-link", options: { reconnect: false } });
    const name = `stats-link ${link.server}`;
    const listener = await nats.listen(`stats.${rt.pid}.${rt.name}`, { link });
    const client = await nats.connect(listener.subject, { link });
    const peer = await listener.accept();
    await client.send(new Uint8Array(8));
    await peer.receive();
    const [up] = await mine(name, (os) => os[0]?.counters.channels! >= 2);
    // The channels count too: the 8 bytes went out of the client and into the accepted end, within the credit.
    const ends = (await stats.listStats()).flatMap((p) => ("pid" in p && p.pid === rt.pid ? p.objects : []))
      .filter((o) => o.kind === "channel" && o.state === "live" && o.counters.capacity! > 0 && !o.name.startsWith("/"));
    const sender = ends.find((o) => o.counters.bytesOut === 8);
    assert.ok(sender, JSON.stringify(ends));
    assert.ok(sender.counters.credit! > 0 && sender.counters.credit! <= sender.counters.capacity!, "credit left");
    assert.ok(ends.some((o) => o.counters.bytesIn === 8));
    assert.deepEqual([up!.kind, up!.counters.connected, up!.counters.disconnects], ["nats", 1, 0]);
    await server.stop();
    const [down] = await mine(name, (os) => os[0]?.state === "closed");
    assert.deepEqual([down!.counters.connected, down!.counters.channels], [0, 0]);
    await Promise.all([client.close(), peer.close(), listener.close(), link.close()]);
  } finally {
    await server.stop();
  }
});

test(
  "stats channels: a link's drops and reconnects are counted from its connection's status events",
  LONG,
  async () => {
    let push!: (s: { type: string }) => void;
    let finish!: () => void;
    const events: { type: string }[] = [];
    let closed = false;
    let resolveClosed!: () => void;
    const whenClosed = new Promise<void>((r) => (resolveClosed = r));
    const connection = {
      info: { max_payload: 1024 },
      publish() {},
      subscribe: () => ({ unsubscribe() {} }),
      getServer: () => "fake:4222",
      isClosed: () => closed,
      flush: () => Promise.resolve(),
      closed: () => whenClosed,
      close: () => {
        closed = true;
        finish();
        resolveClosed();
        return Promise.resolve();
      },
      async *status() {
        for (;;) {
          while (events.length > 0) yield events.shift()!;
          const more = await new Promise<boolean>((r) => {
            push = (s) => {
              events.push(s);
              r(true);
            };
            finish = () => r(false);
          });
          if (!more) return;
        }
      },
    };
    const link = nats.NatsLink.wrap(connection as unknown as Parameters<typeof nats.NatsLink.wrap>[0]);
    const name = "nats link fake:4222";
    await mine(name, (os) => os[0]?.counters.connected === 1);
    await sleep(0);
    for (const type of ["disconnect", "reconnecting", "reconnect", "disconnect", "reconnect", "update"]) push({ type });
    const [o] = await mine(name, (os) => os[0]?.counters.reconnects === 2);
    assert.deepEqual([o!.counters.connected, o!.counters.disconnects], [1, 2]);
    await link.close();
    await mine(name, (os) => os[0]?.state === "closed" && os[0].counters.connected === 0);
  },
);
