/**
 * A pool over NATS that requires a shared secret (`nats: { secret }`): workers that know it join, the others are
 * refused with a clear error on their side; a raw NATS peer (a plain nats.js connection speaking the channel wire
 * format and the handshake of `transports/auth.ts` by hand) shows the pool proves the secret too, and that a
 * recorded join exchange replayed later is refused.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Pool } from "../mod.ts";
import { natsServerForFile } from "./helpers/nats_server.ts";
import { HEARTBEAT, killAll, spawnWorker, stderrOf } from "./helpers/nats_workers.ts";
import { frame, rawConnection, RawEnd, T } from "./helpers/nats_raw.ts";

const server = natsServerForFile();

const LONG = { timeout: 300_000 };
const subject = () => `ipckit.test.auth.${Math.random().toString(36).slice(2, 10)}`;
type Handlers = { run(n: number): number; whoami(): { pid: number; runtime: string } };

const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
const randomSecret = () => hex(crypto.getRandomValues(new Uint8Array(32)));

test(
  "Pool over NATS with a secret: workers that know it join (file or IPCKIT_SECRET); the others are refused, " +
    "each with a clear error; the secret is never printed",
  LONG,
  async () => {
    const secret = randomSecret();
    const wrong = randomSecret();
    const file = join(tmpdir(), `ipckit-secret-${Math.random().toString(36).slice(2)}`);
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    const s = subject();
    const started = [];
    try {
      await using p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT, secret },
        size: 2,
        signals: false,
      });
      const good = [
        await spawnWorker("node", server.url, s, { extra: ["--secret-file", file] }),
        await spawnWorker("bun", server.url, s, { env: { IPCKIT_SECRET: secret } }),
      ];
      started.push(...good);
      await p.ready();
      const out = await Promise.all(Array.from({ length: 20 }, (_, i) => p.run(i)));
      assert.deepEqual(out, Array.from({ length: 20 }, (_, i) => i * i));
      const bad = [
        ["deno", {}, /the pool requires a shared secret \(give it with --secret-file FILE or the IPCKIT_SECRET/],
        ["node", { IPCKIT_SECRET: wrong }, /Cannot join the pool .*refused the auth secret/],
      ] as const;
      for (const [runtime, env, message] of bad) {
        const w = await spawnWorker(runtime, server.url, s, { env: { ...env }, stderr: "pipe" });
        started.push(w);
        const [err, exit] = await Promise.all([stderrOf(w), w.exited]);
        assert.equal(exit.code, 1, `${runtime}: ${err}`);
        assert.match(err, message);
        assert.ok(!err.includes(secret) && !err.includes(wrong), "a secret was printed");
      }
      assert.deepEqual(p.stats.workers.map((w) => w.id).sort(), good.map((w) => w.pid).sort());
      await p.close();
      assert.deepEqual(await Promise.all(good.map((w) => w.exited)), [
        { code: 0, signal: null },
        { code: 0, signal: null },
      ]);
    } finally {
      await killAll(started);
      rmSync(file, { force: true });
    }
  },
);

test(
  "ipckit worker: a secret for a pool that asks for none is refused (the pool cannot prove it); a short one exits 2",
  LONG,
  async () => {
    const s = subject();
    const started = [];
    try {
      await using p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT },
        signals: false,
      });
      const w = await spawnWorker("node", server.url, s, { env: { IPCKIT_SECRET: randomSecret() }, stderr: "pipe" });
      started.push(w);
      const [err, exit] = await Promise.all([stderrOf(w), w.exited]);
      assert.equal(exit.code, 1, err);
      assert.match(err, /the pool did not ask for the secret, so it cannot prove it knows it/);
      assert.equal(p.stats.workers.length, 0);
      const short = await spawnWorker("node", server.url, s, { env: { IPCKIT_SECRET: "too-short" }, stderr: "pipe" });
      started.push(short);
      const [err2, exit2] = await Promise.all([stderrOf(short), short.exited]);
      assert.equal(exit2.code, 2, err2);
      assert.match(err2, /IPCKIT_SECRET holds 9 bytes; a secret has at least 16/);
      assert.doesNotMatch(err2, /too-short/);
      // A pool's own secret is checked when it is made.
      assert.throws(() => new Pool({ transport: "nats", nats: { secret: "short" } }), RangeError);
      assert.throws(() => new Pool({ transport: "nats", nats: { secret: 42 as unknown as string } }), TypeError);
    } finally {
      await killAll(started);
    }
  },
);

/** HMAC-SHA256(key, parts...) with WebCrypto, as a peer in any language would compute it. */
async function hmac(key: string, ...parts: Uint8Array[]): Promise<Uint8Array> {
  const k = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(key),
    { name: "HMAC", hash: "SHA-256" },
    false,
    [
      "sign",
    ],
  );
  const data = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    data.set(p, at);
    at += p.byteLength;
  }
  return new Uint8Array(await crypto.subtle.sign("HMAC", k, data));
}

const MAGIC = new TextEncoder().encode("IPCKAUTH\x01");
const CLIENT = new TextEncoder().encode("ipckit-auth-1 client");
const SERVER = new TextEncoder().encode("ipckit-auth-1 server");

/** The body of the next DATA message (CREDIT and PING skipped), or the type of an END/REFUSE that came instead. */
async function nextData(end: RawEnd): Promise<Uint8Array | "END" | "REFUSE"> {
  const m = await end.next((d) => d[0] === T.DATA || d[0] === T.END || d[0] === T.REFUSE);
  if (m.data[0] === T.END) return "END";
  if (m.data[0] === T.REFUSE) return "REFUSE";
  return m.data.subarray(1);
}

test(
  "Pool over NATS with a secret, against a raw NATS peer: the pool proves the secret; a replayed join exchange " +
    "and a wrong proof are refused (the channel ends without the pool's proof)",
  LONG,
  async () => {
    const secret = randomSecret();
    const s = subject();
    const c = await rawConnection(server.url);
    try {
      await using p = new Pool<Handlers>({
        transport: "nats",
        nats: { servers: server.url, subject: s, heartbeat: HEARTBEAT, secret },
        startTimeout: 5000,
        signals: false,
      });
      // The pool listens on <subject>.join once its NATS connection is up: HELLO until it answers.
      // A fresh inbox each time, so that a late answer to an earlier HELLO cannot mix in.
      let first: RawEnd | undefined;
      for (let i = 0; i < 120 && first === undefined; i++) {
        const end = new RawEnd(c);
        const welcome = await end.hello(`${s}.join`, 65536, 60_000, 1000).catch(() => undefined);
        if (welcome?.[0] === T.WELCOME) first = end;
        else end.close();
      }
      assert.ok(first, "the pool never answered a HELLO on its join subject");
      // 1. The pool's challenge: "IPCKAUTH" 0x01 Ns (41 bytes), one DATA.
      const challenge = await nextData(first);
      assert.ok(challenge instanceof Uint8Array && challenge.byteLength === 41, String(challenge));
      assert.deepEqual([...challenge.subarray(0, 9)], [...MAGIC]);
      const ns = challenge.slice(9);
      // 2. This peer's answer: "IPCKAUTH" 0x01 Nc HMAC(K, "ipckit-auth-1 client" Ns Nc).
      const nc = crypto.getRandomValues(new Uint8Array(32));
      const answer = new Uint8Array([...MAGIC, ...nc, ...await hmac(secret, CLIENT, ns, nc)]);
      first.send(frame(T.DATA, answer));
      // 3. The pool's proof: HMAC(K, "ipckit-auth-1 server" Ns Nc).
      const proof = await nextData(first);
      assert.ok(proof instanceof Uint8Array, String(proof));
      assert.deepEqual([...proof], [...await hmac(secret, SERVER, ns, nc)]);
      first.send(frame(T.END));
      first.close();

      // The recorded answer, replayed on a new channel: the pool's nonce is new, so it fails.
      const replay = new RawEnd(c);
      assert.equal((await replay.hello(`${s}.join`, 65536, 60_000))[0], T.WELCOME);
      const again = await nextData(replay);
      assert.ok(again instanceof Uint8Array && again.byteLength === 41);
      assert.notDeepEqual([...again.subarray(9)], [...ns]);
      replay.send(frame(T.DATA, answer));
      assert.equal(await nextData(replay), "END"); // no proof: closed without another word
      replay.close();

      // A proof made with another secret fails the same way.
      const guess = new RawEnd(c);
      assert.equal((await guess.hello(`${s}.join`, 65536, 60_000))[0], T.WELCOME);
      const ns3 = (await nextData(guess) as Uint8Array).slice(9);
      guess.send(frame(T.DATA, new Uint8Array([...MAGIC, ...nc, ...await hmac(randomSecret(), CLIENT, ns3, nc)])));
      assert.equal(await nextData(guess), "END");
      guess.close();
      assert.equal(p.stats.workers.length, 0, "no raw peer became a worker");
    } finally {
      await c.close();
    }
  },
);
