// shm.listen / shm.connect: many clients of every runtime on one listener, each on a ring pair of its own; clients
// that die or misbehave during the rendezvous leave nothing and stop no one; close; what a dead listener leaves.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { ClosedError, NotFoundError, ProtocolError, resources, rpc, shm, TimeoutError } from "../mod.ts";
import type { ChildProcess, IpcError, RuntimeName } from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import type { ByteStream } from "../runtimes/runtime.ts";
import { conformance, rpcConformanceFor } from "./conformance/registry.ts";
import { type LineChild, spawnWithLines } from "./helpers/child_lines.ts";

// Every await before the first test is registered: a test() call made while a test runs would become its subtest.
const rt = await runtime();
await conformance("shm_listener");
await rpcConformanceFor("shm_listener");

const LONG = { timeout: 240_000 };
const PEER = rt.fromFileUrl(new URL("./helpers/shm_listener_peer.ts", import.meta.url));
const name = () => `/ipckit-test-l${Math.random().toString(36).slice(2, 12)}`;
/** Segments under /dev/shm whose name starts with `prefix` (the listener's per-client segments). */
const segments = (prefix: string) => readdirSync("/dev/shm").filter((f) => f.startsWith(prefix.slice(1)));

function peer(runtimeName: RuntimeName, args: string[], env: Record<string, string> = {}): LineChild {
  return spawnWithLines(rt, [...runtimeArgv(runtimeName, PEER), ...args], env);
}

async function stop(children: ChildProcess[]): Promise<void> {
  for (const c of children) c.kill("SIGKILL");
  await Promise.all(children.map((c) => c.exited.catch(() => {})));
}

/** Resolves when `check` holds, looking every 20 ms; fails after a minute (no timing is asserted). */
async function until(what: string, check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 3000; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`Cannot see ${what}: still not so after a minute`);
}

/** A raw connection to a listener's socket: what a hostile client writes, and what it hears back. */
async function raw(path: string): Promise<{ stream: ByteStream; heard: () => Uint8Array; ended: Promise<void> }> {
  const stream = await rt.connectUnix(path);
  let got = new Uint8Array(0);
  let end!: () => void;
  const ended = new Promise<void>((r) => (end = r));
  stream.start({ data: (c) => void (got = new Uint8Array([...got, ...c])), end: () => end() });
  return { stream, heard: () => got, ended };
}

function request(pid: number, magic = 0x4c435049): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic, true);
  view.setUint32(4, 1, true);
  view.setUint32(8, pid, true);
  return bytes;
}

const status = (reply: Uint8Array) => new DataView(reply.buffer, reply.byteOffset).getUint32(4, true);

test(
  "8 clients of every runtime are served by one RPC server over a shm listener; one killed mid-way stops no one",
  LONG,
  async () => {
    const n = name();
    const listener = await shm.listen(n, { capacity: 64 * 1024 });
    let blocked!: () => void;
    const victimBlocked = new Promise<void>((r) => (blocked = r));
    const server = rpc.serve(listener, {
      add: (a: number, b: number) => a + b,
      block: () => {
        blocked();
        return new Promise(() => {}); // never answered: the client is killed while it waits
      },
    });
    const runtimes: RuntimeName[] = ["deno", "bun", "node", "deno", "bun", "node", "deno", "bun"];
    const calls = 300;
    const clients = runtimes.map((r, id) => peer(r, ["client", n, String(id), String(calls), id === 2 ? "block" : ""]));
    try {
      await victimBlocked;
      clients[2]!.child.kill("SIGKILL");
      const results = await Promise.all(clients.map(async (c, id) => id === 2 ? "" : await c.line()));
      const statuses = await Promise.all(clients.map((c) => c.child.exited));
      for (const [id, line] of results.entries()) {
        if (id === 2) continue;
        assert.equal(line, `done ${id} ${calls}`, `client ${id} (${runtimes[id]})`);
        assert.equal(statuses[id]!.code, 0, `client ${id} (${runtimes[id]}) exit`);
      }
      assert.equal(statuses[2]!.signal, "SIGKILL");
      // Every client's channel ends on the server (the killed one's too: its connection ended with it).
      await until("every served channel end", () => server.peers.size === 0);
      assert.deepEqual(segments(`${n}-`), [], "no client segment is left in /dev/shm");
    } finally {
      await stop(clients.map((c) => c.child));
      await server.close();
    }
    assert.equal(existsSync(listener.path), false, "close() removed the socket file");
  },
);

for (const step of ["asked", "attached"] as const) {
  test(
    `a client killed during the rendezvous (${step}) leaves no segment or record, and others still connect`,
    LONG,
    async () => {
      const n = name();
      const rejected: Error[] = [];
      const listener = await shm.listen(n, { capacity: 4096, onReject: (e) => rejected.push(e) });
      const child = peer("bun", ["ask", listener.path, step]);
      try {
        const line = await child.line();
        const segment = /^asked (\S+)$/.exec(line)?.[1];
        assert.ok(segment?.startsWith(`${n}-`), `the child got a segment of the listener: ${line}`);
        if (step === "attached") assert.equal(await child.line(), "attached");
        assert.equal(existsSync(`/dev/shm${segment}`), true, "the segment exists while the client is in rendezvous");
        child.child.kill("SIGKILL");
        await child.child.exited;
        await until("the listener drop the rendezvous", () => listener.pending === 0);
        assert.equal(existsSync(`/dev/shm${segment}`), false, "the segment was removed");
        assert.equal((await resources.list()).some((r) => r.name === segment), false, "its record was removed");
        assert.ok(rejected.some((e) => e instanceof ClosedError), `the rendezvous ended as closed: ${rejected}`);
        const [client, served] = await Promise.all([shm.connect(n), listener.accept()]);
        await client.send(new Uint8Array([4, 2]));
        assert.deepEqual([...await served.receive()], [4, 2]);
        await Promise.all([client.close(), served.close()]);
      } finally {
        await stop([child.child]);
        await listener.close();
      }
    },
  );
}

test(
  "hostile peers on the rendezvous (garbage, half a request, a request then silence) are refused or timed out while a good client connects",
  LONG,
  async () => {
    const n = name();
    const rejected: Error[] = [];
    const listener = await shm.listen(n, { capacity: 4096, handshakeTimeout: 1000, onReject: (e) => rejected.push(e) });
    const peers: Awaited<ReturnType<typeof raw>>[] = [];
    try {
      const garbage = await raw(listener.path);
      const half = await raw(listener.path);
      const silent = await raw(listener.path);
      peers.push(garbage, half, silent);
      await garbage.stream.write(new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
      await half.stream.write(request(rt.pid).subarray(0, 7));
      await silent.stream.write(request(rt.pid));
      await until("the silent peer's reply", () => silent.heard().length >= 12);
      const segment = new TextDecoder().decode(silent.heard().subarray(12));
      assert.ok(segment.startsWith(`${n}-`));
      // A good client is served while the three are pending.
      const [client, served] = await Promise.all([shm.connect(n), listener.accept()]);
      await served.send(new Uint8Array([1]));
      assert.deepEqual([...await client.receive()], [1]);
      // The garbage is refused at once (status 2), the other two time out; every connection is closed.
      await Promise.all([garbage.ended, half.ended, silent.ended]);
      assert.equal(status(garbage.heard()), 2);
      await until("all three rejected", () => rejected.length >= 3);
      assert.ok(rejected.some((e) => e instanceof ProtocolError), `garbage: ${rejected}`);
      assert.equal(rejected.filter((e) => e instanceof TimeoutError).length, 2, `timeouts: ${rejected}`);
      assert.equal(existsSync(`/dev/shm${segment}`), false, "the silent peer's segment was removed");
      assert.equal(listener.pending, 0);
      // The good channel is unaffected.
      await client.send(new Uint8Array([2]));
      assert.deepEqual([...await served.receive()], [2]);
      await Promise.all([client.close(), served.close()]);
    } finally {
      for (const p of peers) p.stream.close();
      await listener.close();
    }
  },
);

test("rendezvous beyond maxPending are answered busy; connect() says so", LONG, async () => {
  const n = name();
  const listener = await shm.listen(n, { capacity: 4096, maxPending: 1, handshakeTimeout: 60_000 });
  const silent = await raw(listener.path);
  try {
    await until("the first rendezvous pending", () => listener.pending === 1);
    const busy = await raw(listener.path);
    await busy.ended;
    assert.equal(status(busy.heard()), 1);
    busy.stream.close();
    await assert.rejects(shm.connect(n), (e: IpcError) => e.code === "EAGAIN" && /too many clients/.test(e.message));
    silent.stream.close();
    await until("the silent one dropped", () => listener.pending === 0);
    const [client, served] = await Promise.all([shm.connect(n), listener.accept()]);
    await Promise.all([client.close(), served.close()]);
  } finally {
    silent.stream.close();
    await listener.close();
  }
});

test(
  "close(): a pending accept rejects with ClosedError, new connects fail clearly, accepted channels work on",
  LONG,
  async () => {
    const n = name();
    const listener = await shm.listen(n, { capacity: 4096 });
    const [client, served] = await Promise.all([shm.connect(n), listener.accept()]);
    try {
      const waiting = assert.rejects(listener.accept(), ClosedError);
      await listener.close();
      await waiting;
      await assert.rejects(listener.accept(), ClosedError);
      await assert.rejects(shm.connect(n), (e) => e instanceof NotFoundError && /nothing listens/.test(e.message));
      assert.equal(existsSync(listener.path), false);
      assert.equal((await resources.list()).some((r) => r.name === listener.path), false, "the socket's record went");
      await client.send(new Uint8Array([7]));
      assert.deepEqual([...await served.receive()], [7]);
      await served.send(new Uint8Array([8]));
      assert.deepEqual([...await client.receive()], [8]);
      await client.close();
      await assert.rejects(served.receive(), ClosedError);
    } finally {
      await Promise.all([client.close(), served.close(), listener.close()]);
    }
  },
);

test("connect() to a listener that never answers times out; a signal aborts it", LONG, async () => {
  const n = name();
  // A socket at the listener's place (in a directory given as `dir`) that accepts and says nothing.
  const dir = await rt.makeTempDir("ipckit-test-");
  const held: ByteStream[] = [];
  const server = await rt.listenUnix(`${dir}${n}.sock`, (s) => held.push(s));
  try {
    await assert.rejects(shm.connect(n, { dir, timeout: 200 }), TimeoutError);
    const ac = new AbortController();
    const pending = shm.connect(n, { dir, signal: ac.signal });
    ac.abort();
    await assert.rejects(pending, (e: Error) => e.name === "AbortError");
  } finally {
    for (const s of held) s.close();
    await server.close();
    await rt.removeDir(dir);
  }
});

test(
  "what a killed listener leaves (its socket, a pending client's segment) is listed and removed by resources.clean()",
  LONG,
  async () => {
    const registry = await rt.makeTempDir("ipckit-test-registry-");
    const n = name();
    const listening = peer("node", ["listen", n], { IPCKIT_REGISTRY: registry });
    let asker: LineChild | undefined;
    try {
      const path = /^listening (\S+)$/.exec(await listening.line())?.[1];
      assert.ok(path, "the child listens");
      asker = peer("bun", ["ask", path, "asked"]);
      const segment = /^asked (\S+)$/.exec(await asker.line())?.[1];
      assert.ok(segment);
      listening.child.kill("SIGKILL");
      await listening.child.exited;
      const left = await resources.list({ dir: registry });
      const byName = (x: string) => left.find((r) => r.name === x);
      assert.equal(byName(path)?.kind, "unix");
      assert.equal(byName(path)?.owner, "dead");
      assert.equal(byName(segment)?.kind, "shm");
      const report = await resources.clean({ dir: registry });
      assert.deepEqual(report.removed.map((r) => r.name).sort(), [path, segment].sort());
      assert.equal(existsSync(path), false);
      assert.equal(existsSync(`/dev/shm${segment}`), false);
      // The name is free again.
      const again = await shm.listen(n, { capacity: 4096 });
      await again.close();
    } finally {
      await stop([listening.child, ...(asker ? [asker.child] : [])]);
      await rt.removeDir(registry);
    }
  },
);

test("shm.listen/connect validate their options", async () => {
  await assert.rejects(shm.listen("no-slash"), TypeError);
  await assert.rejects(shm.listen(name(), { capacity: 0 }), RangeError);
  await assert.rejects(shm.listen(name(), { maxPending: 0 }), RangeError);
  await assert.rejects(shm.listen(name(), { handshakeTimeout: -1 }), RangeError);
  await assert.rejects(shm.listen(name(), { maxConnections: 0 }), RangeError);
  await assert.rejects(shm.listen(name(), { idleTimeout: -1 }), RangeError);
  await assert.rejects(shm.listen(`/${"x".repeat(200)}`), RangeError);
  await assert.rejects(shm.connect(name(), { timeout: 0 }), RangeError);
  await assert.rejects(shm.connect(name()), NotFoundError);
});

test("beyond maxConnections a client is answered full; a closed channel frees its place", LONG, async () => {
  const n = name();
  const rejected: Error[] = [];
  const listener = await shm.listen(n, { capacity: 4096, maxConnections: 2, onReject: (e) => rejected.push(e) });
  const open: shm.ShmChannel[] = [];
  try {
    for (let i = 0; i < 2; i++) open.push(...await Promise.all([shm.connect(n), listener.accept()]));
    assert.equal(listener.connections, 2);
    const full = await raw(listener.path);
    full.stream.write(request(rt.pid))?.catch(() => {});
    await full.ended;
    assert.equal(status(full.heard()), 4);
    full.stream.close();
    await assert.rejects(shm.connect(n), (e: IpcError) => e.code === "EAGAIN" && /maxConnections/.test(e.message));
    assert.ok(rejected.length >= 2 && rejected.every((e) => /maxConnections/.test(e.message)));
    assert.deepEqual(segments(n), []); // a refused client cost no segment
    // The first pair closes: its place is free again once the served end is closed.
    await Promise.all(open.splice(0, 2).map((c) => c.close()));
    await until("the closed channel uncounted", () => listener.connections === 1);
    const [client, served] = await Promise.all([shm.connect(n), listener.accept()]);
    open.push(client, served);
    await client.send(new Uint8Array([7]));
    assert.deepEqual([...await served.receive()], [7]);
  } finally {
    await Promise.all(open.map((c) => c.close()));
    await listener.close();
  }
});

test("idleTimeout closes an accepted channel with no message either way; one in use stays", LONG, async () => {
  const n = name();
  const listener = await shm.listen(n, { capacity: 4096, idleTimeout: 1000 });
  const [idleClient, idle] = await Promise.all([shm.connect(n), listener.accept()]);
  const [busyClient, busy] = await Promise.all([shm.connect(n), listener.accept()]);
  let talking = true;
  const talk = (async () => {
    for (let i = 0; talking; i++) {
      await busyClient.send(new Uint8Array([i & 255]));
      await busy.receive();
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    // The idle channel's pending receive ends, saying why; the client hears the close as the peer's.
    await assert.rejects(
      idle.receive({ timeout: 120_000 }),
      (e: Error) => e instanceof ClosedError && /idleTimeout/.test(e.message) && e.cause instanceof TimeoutError,
    );
    assert.ok(idle.closed);
    await assert.rejects(idle.send(new Uint8Array([1])), (e: Error) => /idleTimeout/.test(e.message));
    await assert.rejects(idleClient.receive({ timeout: 120_000 }), ClosedError);
    await until("the idle channel uncounted", () => listener.connections === 1);
    assert.ok(!busy.closed);
  } finally {
    talking = false;
    await talk.catch(() => {});
    await Promise.all([idleClient, idle, busyClient, busy].map((c) => c.close()));
    await listener.close();
  }
});
