/**
 * The shared-secret handshake (transports/auth.ts; issue 16, "Authentication and TLS"). Raw peers: Python speaking
 * the documented wire format with hmac/hashlib over a TCP socket (as client and as server), and `node:net` sockets
 * replaying a recorded exchange, sending garbage or nothing. The conformance suite runs over authenticated Unix
 * sockets (fixtures_auth.ts), in-process and with a child of every runtime.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import * as net from "node:net";
import {
  authenticate,
  type Channel,
  ClosedError,
  PermissionError,
  ProtocolError,
  rpc,
  shm,
  tcp,
  TimeoutError,
  unix,
} from "../mod.ts";
import { conformance } from "./conformance/registry.ts";
import { removeDir, tempDir } from "./conformance/fixtures.ts";

await conformance("auth");

const LONG = { timeout: 120_000 };
const SECRET = "the shared secret of this test";
const text = new TextEncoder();
const untext = new TextDecoder();

/** Python's side of the wire format, as in the module doc of transports/auth.ts. */
const PY_COMMON = `
import hashlib, hmac, json, os, socket, struct, sys
def reader(s):
    def read(n):  # None at the end: EOF, or a reset (a side that closes with bytes unread sends one)
        b = b""
        while len(b) < n:
            try: c = s.recv(n - len(b))
            except ConnectionResetError: return None
            if not c: return None
            b += c
        return b
    return read
mac = lambda k, label, ns, nc: hmac.new(k, label + ns + nc, hashlib.sha256).digest()
`;

/**
 * Client: `port secret`. Sends its response and a first frame in one write (before the server's proof came),
 * checks the proof, reads one framed reply. Prints the exchange as JSON.
 */
const PY_CLIENT = PY_COMMON + `
port, k = int(sys.argv[1]), sys.argv[2].encode()
s = socket.create_connection(("127.0.0.1", port)); read = reader(s)
ch = read(41); assert ch[:9] == b"IPCKAUTH\\x01"
ns, nc = ch[9:], os.urandom(32)
resp = b"IPCKAUTH\\x01" + nc + mac(k, b"ipckit-auth-1 client", ns, nc)
msg = b"ping from python"
s.sendall(resp + struct.pack(">I", len(msg)) + msg)
out = {"challenge": ch.hex(), "response": resp.hex()}
proof = read(32)
if proof is None: out["result"] = "refused"
elif not hmac.compare_digest(proof, mac(k, b"ipckit-auth-1 server", ns, nc)): out["result"] = "bad server proof"
else:
    out["proof"] = proof.hex()
    n = struct.unpack(">I", read(4))[0]
    out["reply"] = read(n).decode(); out["result"] = "ok"
print(json.dumps(out))
`;

/** Server: `secret mode` (good, badproof, refuse). Prints its port, serves one connection, prints the outcome. */
const PY_SERVER = PY_COMMON + `
k, mode = sys.argv[1].encode(), sys.argv[2]
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
print(l.getsockname()[1], flush=True)
s, _ = l.accept(); read = reader(s)
ns = os.urandom(32)
s.sendall(b"IPCKAUTH\\x01" + ns)
resp = read(73)
nc, m = resp[9:41], resp[41:]
if not hmac.compare_digest(m, mac(k, b"ipckit-auth-1 client", ns, nc)): print("client refused"); sys.exit(0)
if mode == "refuse": s.close(); print("refused on purpose"); sys.exit(0)
s.sendall(os.urandom(32) if mode == "badproof" else mac(k, b"ipckit-auth-1 server", ns, nc))
if mode == "badproof": read(1); print("sent a bad proof"); sys.exit(0)
n = struct.unpack(">I", read(4))[0]
body = read(n)
s.sendall(struct.pack(">I", n) + body)
print("echoed " + body.decode(), flush=True)
read(1)
`;

interface Python {
  firstLine: Promise<string>;
  output: Promise<string>;
  kill(): void;
}

function python(script: string, args: string[]): Python {
  const child = spawn("python3", ["-c", script, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  let gotLine!: (line: string) => void;
  const firstLine = new Promise<string>((r) => (gotLine = r));
  child.stdout.on("data", (d: Uint8Array) => {
    out += untext.decode(d);
    const nl = out.indexOf("\n");
    if (nl >= 0) gotLine(out.slice(0, nl));
  });
  const output = new Promise<string>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited ${code}: ${out}`))));
  });
  return { firstLine, output, kill: () => void child.kill("SIGKILL") };
}

/** A raw TCP socket with exact reads (null at the end of stream). */
async function rawConnect(port: number) {
  const sock = net.connect(port, "127.0.0.1");
  sock.on("error", () => {});
  let buffered = new Uint8Array(0);
  let ended = false;
  let wake: (() => void) | undefined;
  sock.on("data", (d: Uint8Array) => {
    const next = new Uint8Array(buffered.length + d.length);
    next.set(buffered);
    next.set(d, buffered.length);
    buffered = next;
    wake?.();
  });
  const closed = new Promise<void>((r) => sock.once("close", () => r()));
  void closed.then(() => {
    ended = true;
    wake?.();
  });
  await new Promise<void>((r, j) => sock.once("connect", () => r()).once("error", j));
  return {
    async read(n: number): Promise<Uint8Array | null> {
      while (buffered.length < n && !ended) await new Promise<void>((r) => (wake = r));
      if (buffered.length < n) return null;
      const out = buffered.slice(0, n);
      buffered = buffered.slice(n);
      return out;
    },
    write: (b: Uint8Array) => new Promise<void>((r) => sock.write(b, () => r())),
    closed,
    destroy: () => sock.destroy(),
  };
}

const hex = (s: string) => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

/** Collects what `onReject` reports, and waits for one that `match` accepts. */
function rejections() {
  const seen: Error[] = [];
  let wake: (() => void) | undefined;
  return {
    seen,
    onReject(e: Error) {
      seen.push(e);
      wake?.();
    },
    async next(match: (e: Error) => boolean): Promise<Error> {
      for (;;) {
        const e = seen.find(match);
        if (e) return e;
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
}

async function roundTrip(a: Channel, b: Channel): Promise<void> {
  await a.send(text.encode("ping"));
  assert.equal(untext.decode(await b.receive({ timeout: 30_000 })), "ping");
  await b.send(text.encode("pong"));
  assert.equal(untext.decode(await a.receive({ timeout: 30_000 })), "pong");
}

/** One exchange recorded by a Python client that knew the secret (for the replay test). */
let recorded: { challenge: string; response: string; proof: string } | undefined;

test(
  "a raw Python client that knows the secret is accepted, and its first frame, sent along with its proof, arrives",
  LONG,
  async () => {
    await using listener = await tcp.listen({ port: 0, auth: { secret: SECRET } });
    const py = python(PY_CLIENT, [String(listener.port), SECRET]);
    try {
      await using peer = await listener.accept();
      assert.equal(untext.decode(await peer.receive({ timeout: 30_000 })), "ping from python");
      await peer.send(text.encode("pong from ipckit"));
      const out = JSON.parse(await py.output);
      assert.equal(out.result, "ok", JSON.stringify(out));
      assert.equal(out.reply, "pong from ipckit");
      recorded = out;
    } finally {
      py.kill();
    }
  },
);

test(
  "a raw Python client with a wrong secret gets no server proof; the server reports PermissionError and goes on",
  LONG,
  async () => {
    const r = rejections();
    await using listener = await tcp.listen({ port: 0, auth: { secret: SECRET }, onReject: r.onReject });
    const out = JSON.parse(await python(PY_CLIENT, [String(listener.port), "a different secret, as long"]).output);
    assert.equal(out.result, "refused");
    const e = await r.next((e) => e instanceof PermissionError);
    assert.match(e.message, /client did not prove that it knows the auth secret/);
    await using client = await tcp.connect({ port: listener.port, auth: { secret: SECRET } });
    await using peer = await listener.accept(); // the refused one never reached the accept queue
    await roundTrip(client, peer);
  },
);

for (const mode of ["good", "badproof", "refuse"] as const) {
  test(`tcp.connect({ auth }) against a raw Python server (${mode})`, LONG, async () => {
    const py = python(PY_SERVER, [SECRET, mode]);
    try {
      const port = Number(await py.firstLine);
      const connecting = tcp.connect({ port, auth: { secret: SECRET } });
      if (mode === "good") {
        await using client = await connecting;
        await client.send(text.encode("hello python"));
        assert.equal(untext.decode(await client.receive({ timeout: 30_000 })), "hello python");
        await client.close();
        assert.match(await py.output, /echoed hello python/);
      } else {
        await assert.rejects(connecting, (e: Error) => {
          assert.ok(e instanceof PermissionError, `${e}`);
          assert.match(e.message, mode === "badproof" ? /server did not prove/ : /server refused the auth secret/);
          return true;
        });
        await py.output;
      }
    } finally {
      py.kill();
    }
  });
}

test(
  "a recorded exchange replayed is refused: by the server (its nonce is new) and by the client (its nonce is new)",
  LONG,
  async () => {
    assert.ok(recorded, "the Python client test recorded an exchange");
    const r = rejections();
    await using listener = await tcp.listen({ port: 0, auth: { secret: SECRET }, onReject: r.onReject });
    const raw = await rawConnect(listener.port);
    try {
      const challenge = await raw.read(41);
      assert.ok(challenge && untext.decode(challenge).startsWith("IPCKAUTH"));
      assert.notDeepEqual([...challenge], [...hex(recorded.challenge)], "a fresh nonce");
      await raw.write(hex(recorded.response));
      assert.equal(await raw.read(32), null, "no proof for a replayed response: the server closed");
      assert.ok((await r.next((e) => e instanceof PermissionError)).message.includes("did not prove"));
    } finally {
      raw.destroy();
    }

    // A fake server replays the recorded server side to a real client.
    const fake = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.write(hex(recorded!.challenge));
      let got = 0;
      sock.on("data", (d: Uint8Array) => {
        got += d.length;
        if (got >= 73) sock.write(hex(recorded!.proof));
      });
    });
    await new Promise<void>((res) => fake.listen(0, "127.0.0.1", () => res()));
    try {
      const port = (fake.address() as net.AddressInfo).port;
      await assert.rejects(tcp.connect({ port, auth: { secret: SECRET } }), (e: Error) => {
        assert.ok(e instanceof PermissionError, `${e}`);
        assert.match(e.message, /server did not prove/);
        return true;
      });
    } finally {
      await new Promise<void>((res) => fake.close(() => res()));
    }
  },
);

test(
  "raw peers that send nothing or garbage get TimeoutError and ProtocolError; the listener goes on",
  LONG,
  async () => {
    const r = rejections();
    await using listener = await tcp.listen({
      port: 0,
      auth: { secret: SECRET },
      handshakeTimeout: 200,
      onReject: r.onReject,
    });
    const silent = await rawConnect(listener.port);
    const garbage = await rawConnect(listener.port);
    try {
      await garbage.write(new Uint8Array(73));
      assert.match((await r.next((e) => e instanceof TimeoutError)).message, /took longer than 200 ms/);
      assert.match((await r.next((e) => e instanceof ProtocolError)).message, /does not speak the ipckit auth/);
      await silent.closed;
      await garbage.closed;
      await using client = await tcp.connect({ port: listener.port, auth: { secret: SECRET } });
      await using peer = await listener.accept();
      await roundTrip(client, peer);
    } finally {
      silent.destroy();
      garbage.destroy();
    }
  },
);

test(
  "at most 128 handshakes wait at once: further connections are closed at once, and close() ends the pending ones",
  LONG,
  async () => {
    const r = rejections();
    const listener = await tcp.listen({
      port: 0,
      auth: { secret: SECRET },
      handshakeTimeout: 100_000,
      onReject: r.onReject,
    });
    const raws: Awaited<ReturnType<typeof rawConnect>>[] = [];
    try {
      for (let i = 0; i < 131; i++) raws.push(await rawConnect(listener.port));
      const over = await r.next((e) => e instanceof ClosedError && /128 auth handshakes are pending/.test(e.message));
      assert.ok(over);
      await listener.close();
      await Promise.all(raws.map((raw) => raw.closed)); // every connection ended: none hangs until the timeout
      assert.ok(r.seen.filter((e) => /pending/.test(e.message)).length >= 3, "the last three were turned away");
    } finally {
      for (const raw of raws) raw.destroy();
      await listener.close();
    }
  },
);

test(
  "authenticate() runs the handshake on any Channel (an shm pair); a wrong secret fails on both sides",
  LONG,
  async () => {
    {
      const [a, handle] = shm.pair();
      const b = shm.fromHandle(handle);
      const [sa, sb] = await Promise.all([
        authenticate(a, { secret: SECRET, role: "server" }),
        authenticate(b, { secret: SECRET, role: "client" }),
      ]);
      assert.equal(sa, a);
      await roundTrip(sb, sa);
      await Promise.all([a.close(), b.close()]);
    }
    {
      const [a, handle] = shm.pair();
      const b = shm.fromHandle(handle);
      const [server, client] = await Promise.allSettled([
        authenticate(a, { secret: SECRET, role: "server" }),
        authenticate(b, { secret: "another secret of enough bytes", role: "client" }),
      ]);
      assert.equal(server.status, "rejected");
      assert.ok((server as PromiseRejectedResult).reason instanceof PermissionError);
      assert.equal(client.status, "rejected");
      assert.ok((client as PromiseRejectedResult).reason instanceof PermissionError);
      assert.equal(a.closed && b.closed, true, "both channels closed");
    }
  },
);

test(
  "RPC over unix.listen({ auth }): an authenticated client calls; a raw client that cannot prove the secret is turned away",
  LONG,
  async () => {
    const dir = await tempDir();
    try {
      const path = `${dir}/rpc.sock`;
      const r = rejections();
      await using _server = rpc.serve(await unix.listen(path, { auth: { secret: SECRET }, onReject: r.onReject }), {
        add: (a: number, b: number) => a + b,
      });
      const intruder = await new Promise<net.Socket>((res) => {
        const s = net.connect(path, () => res(s));
        s.on("error", () => {});
      });
      intruder.write(new Uint8Array(73)); // garbage where the proof goes
      await r.next((e) => e instanceof ProtocolError);
      intruder.destroy();
      await using client = rpc.connect<{ add(a: number, b: number): number }>(
        await unix.connect(path, { auth: { secret: SECRET } }),
      );
      assert.equal(await client.api.add(2, 3), 5);
    } finally {
      await removeDir(dir);
    }
  },
);

test("auth works with lines framing: the handshake comes before the first line", LONG, async () => {
  await using listener = await tcp.listen({ port: 0, framing: "lines", auth: { secret: SECRET } });
  await using client = await tcp.connect({ port: listener.port, framing: "lines", auth: { secret: SECRET } });
  await using peer = await listener.accept();
  await roundTrip(client, peer);
});

test(
  "auth on one side only fails clearly: TimeoutError for the client that waits, ProtocolError for the plain one",
  LONG,
  async () => {
    await using plain = await tcp.listen({ port: 0 });
    await assert.rejects(
      tcp.connect({ port: plain.port, auth: { secret: SECRET }, handshakeTimeout: 300 }),
      TimeoutError,
    );
    await using guarded = await tcp.listen({ port: 0, auth: { secret: SECRET } });
    await using naive = await tcp.connect({ port: guarded.port });
    await assert.rejects(naive.receive({ timeout: 30_000 }), ProtocolError); // "IPCK" read as a frame length
  },
);

test("auth options are validated: TypeError for the shape, RangeError for a secret under 16 bytes", async () => {
  await assert.rejects(tcp.listen({ port: 0, auth: { secret: "short" } }), RangeError);
  await assert.rejects(tcp.connect({ port: 1, auth: { secret: new Uint8Array(15) } }), RangeError);
  await assert.rejects(tcp.listen({ port: 0, auth: { secret: 42 } as never }), TypeError);
  await assert.rejects(tcp.listen({ port: 0, auth: null as never }), TypeError);
  await assert.rejects(tcp.listen({ port: 0, auth: { secret: SECRET }, onReject: "log" as never }), TypeError);
  await assert.rejects(tcp.listen({ port: 0, auth: { secret: SECRET }, handshakeTimeout: 0 }), RangeError);
  const [a, handle] = shm.pair();
  const b = shm.fromHandle(handle);
  try {
    await assert.rejects(authenticate(a, { secret: SECRET, role: "peer" as never }), TypeError);
    await assert.rejects(authenticate(a, { secret: SECRET, role: "server", timeout: -5 }), RangeError);
  } finally {
    await Promise.all([a.close(), b.close()]);
  }
});
