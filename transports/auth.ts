/**
 * A shared-secret handshake: both ends prove they know the same secret before a connection is used, without
 * sending it. `auth: { secret }` on `unix.listen`/`unix.connect` and `tcp.listen`/`tcp.connect` runs it on every
 * connection before the Channel is returned (so RPC over such a listener serves authenticated peers only);
 * {@linkcode authenticate} runs it on any Channel.
 *
 * ## Wire format, version 1
 *
 * `K` is the secret (a string secret is its UTF-8 bytes), `HMAC` is HMAC-SHA256, `|` is concatenation, and the
 * labels are the ASCII bytes shown. Three messages, of fixed sizes:
 *
 * ```text
 * 1. server -> client, 41 bytes: "IPCKAUTH" | 0x01 | Ns
 * 2. client -> server, 73 bytes: "IPCKAUTH" | 0x01 | Nc | HMAC(K, "ipckit-auth-1 client" | Ns | Nc)
 * 3. server -> client, 32 bytes: HMAC(K, "ipckit-auth-1 server" | Ns | Nc)
 * ```
 *
 * `Ns` and `Nc` are 32 fresh random bytes of each side. Each side checks the other's HMAC (a constant-time
 * comparison) and, when it is wrong, closes the connection without another byte: a server that refuses a client
 * sends no message 3. On a Unix or TCP socket the messages are raw bytes at the start of the stream, before the
 * first frame (so they work with either framing); with {@linkcode authenticate} each is one message of the Channel.
 *
 * A Python client, for example (after it connected a socket `s` and `read(n)` reads exactly n bytes):
 *
 * ```text
 * ns = read(41)[9:]; nc = os.urandom(32)
 * s.sendall(b"IPCKAUTH\x01" + nc + hmac.new(k, b"ipckit-auth-1 client" + ns + nc, "sha256").digest())
 * assert hmac.compare_digest(read(32), hmac.new(k, b"ipckit-auth-1 server" + ns + nc, "sha256").digest())
 * ```
 *
 * What it gives: a peer that does not know the secret is refused, and a recorded exchange replayed later fails
 * (the other side's nonce is new). The server speaks first and proves last, so a stranger who connects learns
 * nothing that would let it test guesses of the secret offline. What it does not give: secrecy or integrity of
 * the bytes that follow, on a network someone can tamper with. Use TLS there (`tcp.listen({ tls })`), with `auth`
 * or alone. Someone who recorded an exchange can test guesses of the secret offline: use a random secret (at least
 * 16 bytes are required; 32 random bytes are good).
 *
 * @module
 */
import { onAbort } from "../async/abort.ts";
import { ClosedError, PermissionError, ProtocolError, TimeoutError } from "../errors.ts";
import type { ByteSink, ByteStream } from "../runtimes/runtime.ts";
import { DEFAULT_HANDSHAKE_TIMEOUT } from "../runtimes/tls_errors.ts";
import type { Channel } from "./channel.ts";

/** The shared secret of the handshake. */
export interface AuthOptions {
  /** At least 16 bytes; a string is taken as its UTF-8 bytes. Both sides must have the same. */
  secret: string | Uint8Array;
}

/** Options of {@linkcode authenticate}. */
export interface AuthenticateOptions extends AuthOptions {
  /** Which side of the handshake this end plays: one end is the `"server"`, the other the `"client"`. */
  role: "client" | "server";
  /** How long the whole handshake may take, in milliseconds; 10 000 by default. */
  timeout?: number;
  /** Gives up the handshake (the channel is closed). */
  signal?: AbortSignal;
}

/** A validated secret, ready to sign with. */
export interface PreparedAuth {
  readonly key: CryptoKey;
}

/** The shortest secret accepted, in bytes. */
export const MIN_SECRET_BYTES = 16;

const MAGIC = new TextEncoder().encode("IPCKAUTH");
const VERSION = 1;
const NONCE = 32;
const MAC = 32;
const CHALLENGE = MAGIC.length + 1 + NONCE; // 41
const RESPONSE = MAGIC.length + 1 + NONCE + MAC; // 73
const CLIENT_LABEL = new TextEncoder().encode("ipckit-auth-1 client");
const SERVER_LABEL = new TextEncoder().encode("ipckit-auth-1 server");

/**
 * Validates `auth` options and imports the secret as an HMAC key.
 *
 * @throws {TypeError} when the secret is not a string or Uint8Array; {@linkcode RangeError} when it is shorter
 * than {@linkcode MIN_SECRET_BYTES}.
 */
export async function prepareAuth(auth: unknown, what: string): Promise<PreparedAuth> {
  const secret = (auth as AuthOptions | null)?.secret;
  if (typeof auth !== "object" || auth === null || (typeof secret !== "string" && !(secret instanceof Uint8Array))) {
    throw new TypeError(`Cannot ${what}: auth must be { secret } with a string or Uint8Array secret`);
  }
  const bytes = typeof secret === "string" ? new TextEncoder().encode(secret) : secret;
  if (bytes.byteLength < MIN_SECRET_BYTES) {
    throw new RangeError(
      `Cannot ${what}: the auth secret is ${bytes.byteLength} bytes; at least ${MIN_SECRET_BYTES} are needed ` +
        `(a recorded handshake lets anyone test guesses offline: use random bytes)`,
    );
  }
  const key = await crypto.subtle.importKey("raw", bytes.slice(), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return { key };
}

/**
 * Validates a handshake timeout (milliseconds).
 *
 * @throws {RangeError} when it is not a positive number of at most 2^31 - 1.
 */
export function checkHandshakeTimeout(timeout: unknown, what: string): number {
  if (timeout === undefined) return DEFAULT_HANDSHAKE_TIMEOUT;
  if (typeof timeout !== "number" || !(timeout > 0) || timeout > 2 ** 31 - 1) {
    throw new RangeError(`Cannot ${what}: handshakeTimeout ${String(timeout)} must be from 1 to ${2 ** 31 - 1} ms`);
  }
  return timeout;
}

async function mac(auth: PreparedAuth, label: Uint8Array, ns: Uint8Array, nc: Uint8Array): Promise<Uint8Array> {
  const data = new Uint8Array(label.length + NONCE * 2);
  data.set(label);
  data.set(ns, label.length);
  data.set(nc, label.length + NONCE);
  return new Uint8Array(await crypto.subtle.sign("HMAC", auth.key, data));
}

/** Compares two MACs in time that depends only on their length. */
function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function hasMagic(m: Uint8Array): boolean {
  for (let i = 0; i < MAGIC.length; i++) if (m[i] !== MAGIC[i]) return false;
  return m[MAGIC.length] === VERSION;
}

/** Where the handshake's messages go: exact-size reads and writes. A read resolves null at the end of stream. */
interface Wire {
  read(n: number): Promise<Uint8Array | null>;
  write(bytes: Uint8Array): Promise<void>;
}

async function serverSide(wire: Wire, auth: PreparedAuth, what: string): Promise<void> {
  const ns = crypto.getRandomValues(new Uint8Array(NONCE));
  const challenge = new Uint8Array(CHALLENGE);
  challenge.set(MAGIC);
  challenge[MAGIC.length] = VERSION;
  challenge.set(ns, MAGIC.length + 1);
  await wire.write(challenge);
  const response = await wire.read(RESPONSE);
  if (response === null) throw new ClosedError(`Cannot ${what}: the client left during the auth handshake`);
  if (!hasMagic(response)) {
    throw new ProtocolError(`Cannot ${what}: the client does not speak the ipckit auth handshake (version 1)`);
  }
  const nc = response.subarray(MAGIC.length + 1, MAGIC.length + 1 + NONCE);
  if (!same(response.subarray(RESPONSE - MAC), await mac(auth, CLIENT_LABEL, ns, nc))) {
    throw new PermissionError(`Cannot ${what}: the client did not prove that it knows the auth secret`);
  }
  await wire.write(await mac(auth, SERVER_LABEL, ns, nc));
}

async function clientSide(wire: Wire, auth: PreparedAuth, what: string): Promise<void> {
  const challenge = await wire.read(CHALLENGE);
  if (challenge === null) {
    throw new PermissionError(`Cannot ${what}: the server closed the connection before the auth handshake`);
  }
  if (!hasMagic(challenge)) {
    throw new ProtocolError(`Cannot ${what}: the server does not speak the ipckit auth handshake (version 1)`);
  }
  const ns = challenge.slice(MAGIC.length + 1);
  const nc = crypto.getRandomValues(new Uint8Array(NONCE));
  const response = new Uint8Array(RESPONSE);
  response.set(challenge.subarray(0, MAGIC.length + 1));
  response.set(nc, MAGIC.length + 1);
  response.set(await mac(auth, CLIENT_LABEL, ns, nc), MAGIC.length + 1 + NONCE);
  await wire.write(response);
  const proof = await wire.read(MAC);
  if (proof === null) {
    throw new PermissionError(`Cannot ${what}: the server refused the auth secret (it closed the connection)`);
  }
  if (!same(proof, await mac(auth, SERVER_LABEL, ns, nc))) {
    throw new PermissionError(`Cannot ${what}: the server did not prove that it knows the auth secret`);
  }
}

/** Runs `run` within `timeout` ms and until `signal` aborts; `stop` is called when either ends it early. */
async function bounded(
  run: Promise<void>,
  timeout: number,
  signal: AbortSignal | undefined,
  stop: () => void,
  what: string,
): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let unlisten: (() => void) | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new TimeoutError(`Cannot ${what}: the auth handshake took longer than ${timeout} ms`)),
      timeout,
    );
    unlisten = onAbort(signal, () => reject(signal!.reason));
  });
  try {
    await Promise.race([run, limit]);
  } catch (e) {
    stop();
    run.catch(() => {}); // it fails once stopped
    throw e;
  } finally {
    clearTimeout(timer);
    unlisten?.();
  }
}

/**
 * Runs the handshake on `channel` (each handshake message is one message of the channel) and resolves with the
 * channel once both sides proved they know the secret. On failure the channel is closed.
 *
 * @returns The same channel, authenticated.
 * @throws {PermissionError} when the peer does not prove it knows the secret (or refused this side's proof).
 * @throws {ProtocolError} when the peer does not speak the handshake.
 * @throws {TimeoutError} after `timeout` ms; {@linkcode ClosedError} when the channel ends first.
 * @throws {RangeError} for a secret under 16 bytes or a bad timeout.
 *
 * @example
 * ```ts
 * import { authenticate, shm } from "ipckit";
 * const secret = "correct horse battery staple";
 * const [a, handle] = shm.pair();
 * const b = shm.fromHandle(handle);
 * await Promise.all([authenticate(a, { secret, role: "server" }), authenticate(b, { secret, role: "client" })]);
 * await b.send(new TextEncoder().encode("hello, proven peer"));
 * console.log(new TextDecoder().decode(await a.receive())); // "hello, proven peer"
 * await a.close();
 * await b.close();
 * ```
 */
export async function authenticate<C extends Channel>(channel: C, options: AuthenticateOptions): Promise<C> {
  const what = `authenticate ${options?.role ?? "a"} end of a channel`;
  if (options?.role !== "client" && options?.role !== "server") {
    throw new TypeError(`Cannot ${what}: role must be "client" or "server"`);
  }
  const timeout = checkHandshakeTimeout(options.timeout, what);
  const auth = await prepareAuth(options, what);
  const wire: Wire = {
    async read(n) {
      let m: Uint8Array;
      try {
        m = await channel.receive();
      } catch (e) {
        if (e instanceof ClosedError && !(e.cause instanceof Error)) return null;
        throw e;
      }
      if (m.byteLength !== n) {
        throw new ProtocolError(`Cannot ${what}: an auth handshake message is ${m.byteLength} bytes, not ${n}`);
      }
      return m;
    },
    write: (bytes) => channel.send(bytes),
  };
  const run = options.role === "server" ? serverSide(wire, auth, what) : clientSide(wire, auth, what);
  try {
    await bounded(run, timeout, options.signal, () => void channel.close(), what);
  } catch (e) {
    await channel.close();
    throw e;
  }
  return channel;
}

/**
 * Collects a byte stream's first bytes for the handshake, then hands the stream on: bytes that arrived after the
 * handshake's last message go first to whoever starts the returned stream.
 */
class HandshakeReader implements ByteSink {
  #stream: ByteStream;
  #chunks: Uint8Array[] = [];
  #have = 0;
  #want = 0;
  #wake: (() => void) | undefined;
  #ended = false;
  #endError: Error | undefined;
  #target: ByteSink | undefined;

  constructor(stream: ByteStream) {
    this.#stream = stream;
    stream.start(this);
  }

  data(chunk: Uint8Array): void {
    if (this.#target) return this.#target.data(chunk);
    this.#chunks.push(this.#stream.ownsChunks ? chunk : chunk.slice());
    this.#have += chunk.byteLength;
    if (this.#have >= this.#want) this.#wake?.();
  }

  end(error?: Error): void {
    if (this.#target) return this.#target.end(error);
    this.#ended = true;
    this.#endError = error;
    this.#wake?.();
  }

  /**
   * Exactly `n` bytes, or null when the stream ended first, cleanly or with a reset (a peer that refuses closes with
   * our bytes unread, and the kernel resets). Reading stops (pause) once they are here.
   */
  async read(n: number): Promise<Uint8Array | null> {
    this.#want = n;
    this.#stream.resume();
    while (this.#have < n && !this.#ended) await new Promise<void>((r) => (this.#wake = r));
    this.#wake = undefined;
    this.#stream.pause();
    if (this.#have < n) return null;
    const out = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const c = this.#chunks[0]!;
      const take = Math.min(c.byteLength, n - off);
      out.set(c.subarray(0, take), off);
      off += take;
      if (take === c.byteLength) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(take);
    }
    this.#have -= n;
    this.#want = 0;
    return out;
  }

  /** The stream, for its next user: what was read ahead is delivered first, then reading resumes. */
  handOver(): ByteStream {
    const stream = this.#stream;
    let paused = false;
    return {
      ownsChunks: stream.ownsChunks,
      start: (sink) => {
        this.#target = sink;
        for (const c of this.#chunks.splice(0)) sink.data(c);
        this.#have = 0;
        if (this.#ended) return sink.end(this.#endError);
        if (!paused) stream.resume();
      },
      pause: () => {
        paused = true;
        stream.pause();
      },
      resume: () => {
        paused = false;
        if (this.#target) stream.resume();
      },
      write: (chunk) => stream.write(chunk),
      end: () => stream.end(),
      close: () => stream.close(),
    };
  }
}

/**
 * Runs the handshake at the start of a byte stream (the messages as raw bytes) and resolves with the stream to
 * frame from then on. On failure the stream is closed.
 */
export async function authenticateStream(
  stream: ByteStream,
  auth: PreparedAuth,
  role: "client" | "server",
  timeout: number,
  what: string,
  signal?: AbortSignal,
): Promise<ByteStream> {
  const reader = new HandshakeReader(stream);
  const wire: Wire = {
    read: (n) => reader.read(n),
    async write(bytes) {
      await stream.write(bytes);
    },
  };
  const run = role === "server" ? serverSide(wire, auth, what) : clientSide(wire, auth, what);
  try {
    await bounded(run, timeout, signal, () => stream.close(), what);
  } catch (e) {
    stream.close();
    throw e;
  }
  return reader.handOver();
}
