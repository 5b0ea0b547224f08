/**
 * One fixture per transport: how to make an in-process pair, how to connect to a child process (both sides),
 * and how to talk to a channel with raw bytes. The conformance suite needs nothing else from a transport.
 */
// The transports' own modules, not mod.ts: the child peer loads this file, and a process start should not pay for
// the whole library.
import * as fifo from "../../transports/fifo.ts";
import * as pipe from "../../transports/pipe.ts";
import * as shm from "../../transports/shm.ts";
import * as tcp from "../../transports/tcp.ts";
import * as unix from "../../transports/unix.ts";
import type { Capabilities, Channel, ChannelOptions, ChildProcess, Listener, RuntimeName } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";
import type { ByteStream } from "../../runtimes/runtime.ts";

/** Two connected channels in this process. */
export interface Pair {
  a: Channel;
  b: Channel;
  cleanup(): Promise<void>;
}

/** A channel to a peer child process. */
export interface Remote {
  channel: Channel;
  child: ChildProcess;
  cleanup(): Promise<void>;
}

/** A channel whose peer is raw bytes written by the test. */
export interface Raw {
  channel: Channel;
  write(bytes: Uint8Array): Promise<void>;
  end(): Promise<void>;
  cleanup(): Promise<void>;
}

/** What the conformance suite needs from a transport. */
export interface Fixture {
  name: string;
  capabilities: Capabilities;
  /** An in-process pair, or why the transport has none (the suite says so instead of skipping silently). */
  pair: ((options?: ChannelOptions) => Promise<Pair>) | string;
  /** Connects to a child process running `tests/conformance/peer.ts` on `runtime` with `flags`. */
  remote(runtime: RuntimeName, flags: string[], options?: ChannelOptions): Promise<Remote>;
  /** In the child: the channel to the parent, from the address the parent passed. */
  childSide(address: string, options: ChannelOptions): Promise<Channel>;
  /** A channel fed by raw bytes, or why the transport has no byte stream to feed. */
  raw: ((options?: ChannelOptions) => Promise<Raw>) | string;
}

const PEER = new URL("./peer.ts", import.meta.url);
const ROOT = new URL("../../", import.meta.url);
export const CONNECT_TIMEOUT = 60_000;

export async function tempDir(): Promise<string> {
  return (await runtime()).makeTempDir("ipckit-test-");
}

export async function removeDir(dir: string): Promise<void> {
  await (await runtime()).removeDir(dir);
}

/** A rejection handler that cleans up, then rethrows: setup that fails half-way leaves nothing behind. */
export function failWith(cleanup: () => Promise<unknown>): (e: unknown) => Promise<never> {
  return async (e) => {
    await cleanup().catch(() => {});
    throw e;
  };
}

export async function spawnPeer(rtName: RuntimeName, args: string[]): Promise<ChildProcess> {
  const rt = await runtime();
  return rt.spawn([...runtimeArgv(rtName, rt.fromFileUrl(PEER)), ...args], {
    cwd: rt.fromFileUrl(ROOT),
    stdio: "null",
    stderr: "inherit",
  });
}

/** Waits for `p`, but fails if the child exits first or nothing happens for a minute. */
export async function beforeExit<T>(p: Promise<T>, child: ChildProcess, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const guard = new Promise<never>((_, reject) => {
    child.exited.then((s) => reject(new Error(`${what}: the peer exited first (${JSON.stringify(s)})`)));
    timer = setTimeout(() => reject(new Error(`${what}: no connection after ${CONNECT_TIMEOUT} ms`)), CONNECT_TIMEOUT);
  });
  try {
    return await Promise.race([p, guard]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts the peer child while `create` waits for it to connect. If that fails, aborts the create, stops the child
 * and runs `cleanup`, then rethrows.
 */
export async function createWithPeer(
  create: (signal: AbortSignal) => Promise<Channel>,
  rtName: RuntimeName,
  peerArgs: string[],
  cleanup: () => Promise<void> = () => Promise.resolve(),
): Promise<{ channel: Channel; child: ChildProcess }> {
  const abort = new AbortController();
  const pending = create(abort.signal);
  const child = await spawnPeer(rtName, peerArgs);
  try {
    return { channel: await beforeExit(pending, child, `${peerArgs[0]} create`), child };
  } catch (e) {
    abort.abort();
    await pending.catch(() => {});
    await stopChild(child);
    await cleanup();
    throw e;
  }
}

export async function stopChild(child: ChildProcess): Promise<void> {
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await child.exited.catch(() => {});
  clearTimeout(timer);
}

/** A remote fixture's result: its cleanup closes the channel, stops the child, then runs `after`. */
export function remoteOf(channel: Channel, child: ChildProcess, after?: () => Promise<unknown>): Remote {
  return {
    channel,
    child,
    async cleanup() {
      await channel.close();
      await stopChild(child);
      await after?.();
    },
  };
}

/** A raw fixture over a runtime server stream. */
function rawOver(stream: ByteStream, channel: Channel, cleanup: () => Promise<void>): Raw {
  stream.start({ data() {}, end() {} });
  return {
    channel,
    write: async (bytes) => void (await stream.write(bytes)),
    end: () => stream.end(),
    async cleanup() {
      stream.close();
      await channel.close();
      await cleanup();
    },
  };
}

/** How a transport with listeners makes its two ends: a listener (and the address a peer connects to), a connect. */
export interface ListenerSides {
  listen(options: ChannelOptions): Promise<{ listener: Listener; address: string; cleanup(): Promise<void> }>;
  connect(address: string, options: ChannelOptions): Promise<Channel>;
}

/**
 * `pair`, `remote` and `childSide` of a fixture over a listener: a pair is a connect and an accept, a remote is a
 * child connecting to this side's listener (`peer.ts <name> <address>`). Setup that fails half-way removes what it made.
 */
export function listenerFixture(name: string, sides: ListenerSides): Pick<Fixture, "pair" | "remote" | "childSide"> {
  return {
    async pair(options = {}) {
      const { listener, address, cleanup } = await sides.listen(options);
      const [a, b] = await Promise.all([sides.connect(address, options), listener.accept()]).catch(failWith(cleanup));
      return {
        a,
        b,
        async cleanup() {
          await Promise.all([a.close(), b.close()]);
          await cleanup();
        },
      };
    },
    async remote(rtName, flags, options = {}) {
      const { listener, address, cleanup } = await sides.listen(options);
      const child = await spawnPeer(rtName, [name, address, ...flags]);
      const channel = await beforeExit(listener.accept(), child, `${name} accept`).catch(failWith(async () => {
        await stopChild(child);
        await cleanup();
      }));
      return remoteOf(channel, child, cleanup);
    },
    childSide: (address, options) => sides.connect(address, options),
  };
}

/** Unix sockets in a fresh directory, with `extra` options on both sides (the auth fixture adds its secret). */
export function unixSides(extra: { auth?: { secret: string } } = {}): ListenerSides {
  return {
    async listen(options) {
      const dir = await tempDir();
      const path = `${dir}/s.sock`;
      const listener = await unix.listen(path, { ...options, ...extra }).catch(failWith(() => removeDir(dir)));
      return {
        listener,
        address: path,
        async cleanup() {
          await listener.close();
          await removeDir(dir);
        },
      };
    },
    connect: (path, options) => unix.connect(path, { ...options, ...extra }),
  };
}

export const unixFixture: Fixture = {
  name: "unix",
  capabilities: unix.capabilities,
  ...listenerFixture("unix", unixSides()),
  async raw(options = {}) {
    const rt = await runtime();
    const dir = await tempDir();
    const path = `${dir}/raw.sock`;
    let accepted!: (s: ByteStream) => void;
    const got = new Promise<ByteStream>((r) => (accepted = r));
    const server = await rt.listenUnix(path, (s) => accepted(s));
    const channel = await unix.connect(path, options);
    return rawOver(await got, channel, async () => {
      await server.close();
      await rt.removeDir(dir);
    });
  },
};

export const tcpFixture: Fixture = {
  name: "tcp",
  capabilities: tcp.capabilities,
  ...listenerFixture("tcp", {
    async listen(options) {
      const listener = await tcp.listen({ ...options, port: 0 });
      return { listener, address: String(listener.port), cleanup: () => listener.close() };
    },
    connect: (port, options) => tcp.connect({ ...options, port: Number(port) }),
  }),
  async raw(options = {}) {
    const rt = await runtime();
    let accepted!: (s: ByteStream) => void;
    const got = new Promise<ByteStream>((r) => (accepted = r));
    const server = await rt.listenTcp({ port: 0, hostname: "127.0.0.1" }, (s) => accepted(s));
    const channel = await tcp.connect({ ...options, port: server.port });
    return rawOver(await got, channel, () => server.close());
  },
};

export const fifoFixture: Fixture = {
  name: "fifo",
  capabilities: fifo.capabilities,
  async pair(options = {}) {
    const dir = await tempDir();
    const path = `${dir}/f`;
    const [a, b] = await Promise.all([fifo.create(path, options), fifo.open(path, { ...options, wait: 10_000 })])
      .catch(failWith(() => removeDir(dir)));
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
        await (await runtime()).removeDir(dir);
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const dir = await tempDir();
    const path = `${dir}/f`;
    const { channel, child } = await createWithPeer(
      (signal) => fifo.create(path, { ...options, signal }),
      rtName,
      ["fifo", path, ...flags],
      () => removeDir(dir),
    );
    return remoteOf(channel, child, async () => (await runtime()).removeDir(dir));
  },
  childSide: (path, options) => fifo.open(path, { ...options, wait: CONNECT_TIMEOUT }),
  async raw(options = {}) {
    const rt = await runtime();
    const dir = await tempDir();
    const path = `${dir}/f`;
    const pending = fifo.create(path, options);
    while (!(await rt.exists(`${path}.out`))) await new Promise((r) => setTimeout(r, 2));
    // The raw side: open our write end first, then the read end (as fifo.open does).
    const w = await rt.openFifo(`${path}.in`, "write");
    const r = await rt.openFifo(`${path}.out`, "read");
    r.start({ data() {}, end() {} });
    const channel = await pending;
    return {
      channel,
      write: async (bytes) => void (await w.write(bytes)),
      end: () => w.end(),
      async cleanup() {
        w.close();
        r.close();
        await channel.close();
        await rt.removeDir(dir);
      },
    };
  },
};

export const pipeFixture: Fixture = {
  name: "pipe",
  capabilities: pipe.capabilities,
  pair: "a pipe channel joins a parent to its child process; the cross-process cases run every check on it",
  async remote(rtName, flags, options = {}) {
    const rt = await runtime();
    const { channel, child } = await pipe.spawn([...runtimeArgv(rtName, rt.fromFileUrl(PEER)), "pipe", "-", ...flags], {
      ...options,
      cwd: rt.fromFileUrl(ROOT),
    });
    return remoteOf(channel, child);
  },
  childSide: (_address, options) => pipe.stdio(options),
  raw(options = {}) {
    // A child that writes raw bytes (hex in its argument) to stdout, then exits: `sh` is enough.
    let queued: Uint8Array[] = [];
    let started: Remote | undefined;
    const start = async (): Promise<Remote> => {
      const bytes = queued.flatMap((b) => [...b]);
      const octal = bytes.map((x) => `\\${x.toString(8).padStart(3, "0")}`).join("");
      const { channel, child } = await pipe.spawn(["sh", "-c", `printf '${octal}'`], options);
      return { channel, child, cleanup: async () => void (await child.exited) };
    };
    // The channel exists only once the bytes are known: write() collects, end() starts the child.
    let resolveChannel!: (c: Channel) => void;
    const channelReady = new Promise<Channel>((r) => (resolveChannel = r));
    const proxy: Channel = {
      get capabilities() {
        return pipe.capabilities;
      },
      get closed() {
        return started?.channel.closed ?? false;
      },
      send: async (m, o) => (await channelReady).send(m, o),
      receive: async (o) => (await channelReady).receive(o),
      close: async () => {
        if (started) await started.channel.close();
      },
      [Symbol.asyncDispose]: async () => {
        if (started) await started.channel.close();
      },
      async *[Symbol.asyncIterator]() {
        yield* await channelReady;
      },
    };
    return Promise.resolve({
      channel: proxy,
      write: (bytes) => {
        queued.push(bytes);
        return Promise.resolve();
      },
      async end() {
        started = await start();
        queued = [];
        resolveChannel(started.channel);
      },
      async cleanup() {
        if (started) {
          await started.channel.close();
          await started.cleanup();
        }
      },
    });
  },
};

/** Rings big enough for the suite's largest message (4 MiB) and its floods (3 MiB before reading). */
const SHM_CAPACITY = 8 * 1024 * 1024;

/** Every shm name the fixture handed out, so a test can check none is left in /dev/shm. */
export const shmNames: Set<string> = new Set();

function shmName(): string {
  const name = `/ipckit-test-${Math.random().toString(36).slice(2, 12)}`;
  shmNames.add(name);
  return name;
}

export const shmFixture: Fixture = {
  name: "shm",
  capabilities: { ordered: true, reliable: true, maxMessage: SHM_CAPACITY - 8, crossHost: false, datagram: false },
  async pair(options = {}) {
    const name = shmName();
    // One thread holds both ends: spinning cannot see the other end move, so do not spin.
    const o = { ...options, capacity: SHM_CAPACITY, spin: 0 };
    const [a, b] = await Promise.all([shm.create(name, o), shm.open(name, { ...o, wait: 10_000 })]);
    return {
      a,
      b,
      async cleanup() {
        await Promise.all([a.close(), b.close()]);
      },
    };
  },
  async remote(rtName, flags, options = {}) {
    const name = shmName();
    const { channel, child } = await createWithPeer(
      (signal) => shm.create(name, { ...options, capacity: SHM_CAPACITY, signal }),
      rtName,
      ["shm", name, ...flags],
    );
    return remoteOf(channel, child);
  },
  childSide: (name, options) => shm.open(name, { ...options, wait: CONNECT_TIMEOUT }),
  raw: "a shm channel has no byte stream; tests/shm.test.ts feeds the ring a corrupt record instead",
};

/** The fixtures defined in this file; tests/conformance/registry.ts lists them with all the others. */
export const BUILT_IN: Record<"unix" | "tcp" | "fifo" | "pipe" | "shm", Fixture> = {
  unix: unixFixture,
  tcp: tcpFixture,
  fifo: fifoFixture,
  pipe: pipeFixture,
  shm: shmFixture,
};
