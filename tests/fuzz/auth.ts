/**
 * Fuzz target: the shared-secret handshake (`transports/auth.ts`), both sides, fed what a hostile peer can write at
 * the start of a socket: the right answer, one made with another secret, a replayed one, noise, each with bytes
 * flipped or set, cut short or followed by more bytes, and cut into chunks anywhere (empty chunks included), owned or
 * not; then the stream ends.
 *
 * For each input the handshake succeeds exactly when the peer's bytes are the right ones (the right secret, this
 * exchange's nonces, no byte changed), and then hands every byte that followed to the next reader, in order;
 * otherwise it rejects with `PermissionError`, `ProtocolError` or `ClosedError` (never another error, never a hang)
 * and closes the stream.
 *
 * @module
 */
import fc from "fast-check";
import { ClosedError, PermissionError, ProtocolError } from "../../errors.ts";
import type { ByteSink, ByteStream } from "../../runtimes/runtime.ts";
import { authenticateStream, prepareAuth, type PreparedAuth } from "../../transports/auth.ts";
import { expectOnlyAsync, type FuzzTarget } from "./target.ts";

const SECRET = "the fuzzed handshake's secret";
const OTHER = "another secret of enough bytes";
const MAGIC = new TextEncoder().encode("IPCKAUTH\x01");
const label = (side: string) => new TextEncoder().encode(`ipckit-auth-1 ${side}`);

const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(120), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(120), byte: fc.nat(255) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat(120) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

interface Input {
  role: "server" | "client";
  answer: "right" | "other secret" | "replay" | "noise";
  mutations: Mutation[];
  tail: Uint8Array;
  noise: Uint8Array;
  cuts: number[];
  owned: boolean;
}

const inputs: fc.Arbitrary<Input> = fc.record({
  role: fc.constantFrom("server" as const, "client" as const),
  answer: fc.constantFrom("right" as const, "other secret" as const, "replay" as const, "noise" as const),
  mutations: fc.oneof({ weight: 3, arbitrary: fc.constant<Mutation[]>([]) }, fc.array(mutation, { maxLength: 3 })),
  tail: fc.uint8Array({ maxLength: 40 }),
  noise: fc.uint8Array({ maxLength: 120 }),
  cuts: fc.array(fc.nat(160), { maxLength: 12 }),
  owned: fc.boolean(),
});

/** A ByteStream in memory: what the side under test writes goes to `written`; the test feeds `sink`. */
class MemoryStream implements ByteStream {
  readonly ownsChunks: boolean;
  sink: ByteSink | undefined;
  written: Uint8Array[] = [];
  closed = false;
  #onWrite: (() => void) | undefined;
  constructor(owned: boolean) {
    this.ownsChunks = owned;
  }
  start(sink: ByteSink): void {
    this.sink = sink;
  }
  pause(): void {}
  resume(): void {}
  write(chunk: Uint8Array): undefined {
    this.written.push(chunk.slice());
    this.#onWrite?.();
    return undefined;
  }
  end(): Promise<void> {
    return Promise.resolve();
  }
  close(): void {
    this.closed = true;
  }
  /** Resolves once the side under test wrote `n` messages. */
  async writes(n: number): Promise<void> {
    while (this.written.length < n && !this.closed) await new Promise<void>((r) => (this.#onWrite = r));
  }
}

let keys: { right: PreparedAuth; other: CryptoKey } | undefined;

async function hmac(key: CryptoKey, side: string, ns: Uint8Array, nc: Uint8Array): Promise<Uint8Array> {
  const data = new Uint8Array([...label(side), ...ns, ...nc]);
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, data));
}

/** Replayed bytes: a well-formed exchange of some other time (other nonces, the right secret). */
const stale = { ns: new Uint8Array(32).fill(7), nc: new Uint8Array(32).fill(9) };

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = bytes.slice();
  for (const m of mutations) {
    if (out.length === 0) break;
    const at = m.at % out.length;
    if (m.kind === "flip") out[at]! ^= 1 << m.bit;
    else if (m.kind === "set") out[at] = m.byte;
    else out = out.slice(0, at);
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

async function run(input: Input): Promise<void> {
  keys ??= {
    right: await prepareAuth({ secret: SECRET }, "fuzz"),
    other: await crypto.subtle.importKey(
      "raw",
      new TextEncoder().encode(OTHER),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    ),
  };
  const stream = new MemoryStream(input.owned);
  const pending = authenticateStream(stream, keys.right, input.role, 60_000, "fuzz the handshake");
  pending.catch(() => {}); // checked below; it may fail before the peer's answer is even made
  const key = input.answer === "other secret" ? keys.other : keys.right.key;
  // What the hostile peer sends, given what the side under test said first (the server's challenge).
  let answer: Uint8Array;
  if (input.role === "server") {
    await stream.writes(1);
    const ns = input.answer === "replay" ? stale.ns : stream.written[0]!.slice(9);
    const nc = input.answer === "replay" ? stale.nc : new Uint8Array(32).fill(3);
    answer = new Uint8Array([...MAGIC, ...nc, ...await hmac(key, "client", ns, nc)]);
  } else {
    // The challenge first; the proof can only be made once the client's nonce is known.
    const ns = new Uint8Array(32).fill(5);
    const challenge = new Uint8Array([...MAGIC, ...ns]);
    const sent = mutate(input.answer === "noise" ? input.noise : challenge, input.mutations);
    feed(stream, sent, input.cuts);
    const intact = input.answer !== "noise" && sameBytes(sent, challenge);
    if (intact) await stream.writes(1);
    const nc = stream.written[0]?.slice(9, 41) ?? new Uint8Array(32);
    const proof = await hmac(
      key,
      "server",
      input.answer === "replay" ? stale.ns : ns,
      input.answer === "replay" ? stale.nc : nc,
    );
    answer = intact ? proof : new Uint8Array(0);
  }
  const sent = input.role === "server"
    ? mutate(input.answer === "noise" ? input.noise : answer, input.mutations)
    : answer;
  feed(stream, new Uint8Array([...sent, ...input.tail]), input.cuts);
  stream.sink?.end();
  const right = input.answer === "right" && (input.role === "client" || sameBytes(sent, answer)) &&
    (input.role === "server" || sent.length === 32);
  let ok = false;
  await expectOnlyAsync([PermissionError, ProtocolError, ClosedError], async () => {
    const next = await pending;
    ok = true;
    // Everything after the handshake reaches the next reader, in order.
    const got: number[] = [];
    next.start({ data: (c) => got.push(...c), end: () => {} });
    if (!sameBytes(new Uint8Array(got), input.tail)) throw new Error("the bytes after the handshake were changed");
  });
  if (ok !== right) {
    throw new Error(`the handshake ${ok ? "accepted" : "refused"} ${right ? "the right" : "a wrong"} answer`);
  }
  if (!ok && !stream.closed) throw new Error("a refused handshake left its stream open");
}

/** Delivers `bytes` to the side under test in chunks cut at `cuts`. */
function feed(stream: MemoryStream, bytes: Uint8Array, cuts: number[]): void {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let from = 0;
  for (const c of [...at, bytes.length]) {
    stream.sink?.data(bytes.slice(from, Math.max(from, c)));
    from = Math.max(from, c);
  }
}

/** The target. */
export const target: FuzzTarget<Input> = { name: "auth", inputs, run };
