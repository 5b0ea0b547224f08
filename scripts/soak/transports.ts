/**
 * The soak's view of each transport: how the hosting side (the consumer, or the chaos run's survivor) makes its end
 * for n peers, and how a peer (a producer, or a victim) joins it. One entry per transport, in the order of the
 * output. The consumer, the producers, the survivor and the victims all take their ends from here.
 *
 * - Listeners (unix, tcp, nats): one listener, n clients of it.
 * - One-to-one transports (fifo, shm, mq, sysv, fileQueue): n channels, one per peer, each created by the host.
 * - pipe: the host starts each peer as its child; the channel is the child's stdin/stdout.
 * - Datagram sockets (unixDgram, udp): one bound socket that every peer sends to; a peer says hello first, so the
 *   host learns its address (and, in the chaos run, turns the socket into a channel to it).
 *
 * @module
 */
// The transports' own modules, not mod.ts: every soak peer process loads this file.
import { IpcError } from "../../errors.ts";
import type { ChildProcess } from "../../runtimes/runtime.ts";
import type { Channel } from "../../transports/channel.ts";
import type { DatagramSocket } from "../../transports/datagram.ts";
import * as fifo from "../../transports/fifo.ts";
import * as fileQueue from "../../transports/file_queue.ts";
import * as mq from "../../transports/mq.ts";
import * as nats from "../../transports/nats.ts";
import * as pipe from "../../transports/pipe.ts";
import * as shm from "../../transports/shm.ts";
import * as sysv from "../../transports/sysv.ts";
import * as tcp from "../../transports/tcp.ts";
import * as udp from "../../transports/udp.ts";
import * as unix from "../../transports/unix.ts";
import * as unixDgram from "../../transports/unix_dgram.ts";
import { runtime } from "../../runtimes/detect.ts";
import { HELLO, hello, MAX_SOAK_MESSAGE } from "./message.ts";

/** How a transport family behaves when a peer dies. */
export type Family = "stream" | "shm" | "queue" | "datagram" | "nats";

/** Where a process puts what it makes, and what it made (for the leftovers check at the end). */
export interface Context {
  /** A directory for socket files, FIFOs and file queues (the run's). */
  readonly dir: string;
  /** A prefix of POSIX names unique to the run (shm segments, mq queues). */
  readonly tag: string;
  /** The nats-server URL, for nats. */
  readonly nats?: string;
  /** The NATS heartbeat, in ms. */
  readonly heartbeat: number;
  /** Named objects this process made or joined. */
  readonly used: Used;
}

/** Named objects a run used, by kind. */
export interface Used {
  shm: string[];
  mq: string[];
  sysv: number[];
}

/** The hosting side of n peers. */
export interface Hosted {
  /** What peer i is given to join (the same address for every peer of a listener). */
  readonly addresses: string[];
  /** The channel to peer i, once it came (a listener's: the next accepted, whichever peer it is). */
  accept(i: number): Promise<Channel>;
  /** Datagram transports: the bound socket every peer sends to. */
  readonly socket?: DatagramSocket<unknown>;
  /** Stops hosting (a listener stops listening; channels already accepted stay open). */
  close(): Promise<void>;
}

/** Sizes a host prepares for. */
export interface HostOptions {
  /** Room for one message of this many bytes (the chaos run's large messages); 64 KiB by default. */
  largest?: number;
}

/** One transport, as the soak and the chaos run use it. */
export interface SoakTransport {
  /** Its name in `--only` and in the tables. */
  readonly name: string;
  readonly family: Family;
  /** Messages are never lost or duplicated while both sides live (false: udp, whose loss is reported, not failed). */
  readonly reliable: boolean;
  /** Connectionless (udp, unixDgram): a dead peer cannot be noticed, a receive timeout is checked instead. */
  readonly datagram: boolean;
  /** The largest soak message: 64 KiB, or less where the transport cannot carry it. */
  readonly soakMax: number;
  /** The largest message of the chaos run's large rounds. */
  readonly largeMax: number;
  /** Whether a victim can take the hosting side (create / listen) in the chaos run. */
  readonly swappable: boolean;
  /** Only for pipe: starts `argv` as a child whose stdin/stdout is the channel. */
  spawn?(argv: string[], cwd: string): Promise<{ channel: Channel; child: ChildProcess }>;
  /** Addresses for n peers, without hosting them (the chaos run, when the victim hosts). */
  pick(ctx: Context, n: number): Promise<string[]>;
  /** Hosts n peers, at `at` when given (else at fresh addresses). */
  host(ctx: Context, n: number, options?: HostOptions, at?: string[]): Promise<Hosted>;
  /** Joins the host at `address`, waiting up to a minute for it to be there. */
  join(ctx: Context, address: string): Promise<Channel>;
}

/** How long a joining peer waits for its host. */
const JOIN_WAIT = 60_000;
const MiB = 1024 * 1024;
/** The chaos run's large messages: 4 to 64 MiB where the transport carries them. */
export const LARGE_MIN = 4 * MiB;

let counter = 0;
async function unique(ctx: Context, what: string): Promise<string> {
  return `${ctx.tag}-${what}-${(await runtime()).pid}-${counter++}`;
}

/** Retries `connect` while nothing listens yet (the victim may still be starting), up to JOIN_WAIT. */
async function retry<T>(connect: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + JOIN_WAIT;
  for (let delay = 5;; delay = Math.min(delay * 2, 200)) {
    try {
      return await connect();
    } catch (e) {
      if (!(e instanceof IpcError) || Date.now() > deadline) throw e;
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** n accepts on one listener. */
function listening(
  address: string,
  n: number,
  listener: { accept(): Promise<Channel>; close(): Promise<void> },
): Hosted {
  return { addresses: Array(n).fill(address), accept: () => listener.accept(), close: () => listener.close() };
}

/** n one-to-one channels, each created at once and waiting for its peer; close() gives up on those still waiting. */
function creating(addresses: string[], create: (address: string, signal: AbortSignal) => Promise<Channel>): Hosted {
  const abort = new AbortController();
  const pending = addresses.map((a) => create(a, abort.signal));
  for (const p of pending) p.catch(() => {}); // a create nobody took is reported by accept(), or not at all
  return {
    addresses,
    accept: (i) => pending[i]!,
    close() {
      abort.abort(); // an accepted channel belongs to its taker; a create still waiting gives up (and removes its name)
      return Promise.resolve();
    },
  };
}

/** A datagram host: the bound socket; peer i's channel is made from its hello. */
function datagramHost(addresses: string[], socket: DatagramSocket<unknown>): Hosted {
  return {
    addresses,
    socket,
    async accept() {
      for (;;) {
        const { data, from } = await socket.receive({ timeout: JOIN_WAIT });
        if (data.byteLength === 2 && data[0] === HELLO) return await socket.connect(from);
      }
    },
    close: () => socket.close(),
  };
}

/**
 * Joins a datagram host: says hello (a soak producer says it again while no answer comes: udp may lose it). Awaited
 * before anything else is sent: overlapping udp sends may leave in any order (Deno's do).
 */
async function sayHello(channel: Channel): Promise<Channel> {
  await channel.send(hello(0));
  return channel;
}

const unixT: SoakTransport = {
  name: "unix",
  family: "stream",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  pick: async (ctx, n) => Array(n).fill(`${ctx.dir}/${await unique(ctx, "unix")}.sock`),
  async host(ctx, n, _o, at) {
    const path = at?.[0] ?? (await this.pick(ctx, 1))[0]!;
    return listening(path, n, await unix.listen(path));
  },
  join: (_ctx, path) => retry(() => unix.connect(path)),
};

const tcpT: SoakTransport = {
  name: "tcp",
  family: "stream",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  async pick(_ctx, n) {
    // A port that was free a moment ago: the victim listens on it (the chance that another program takes it in
    // between is that of two ephemeral ports colliding).
    const probe = await tcp.listen({ port: 0 });
    const port = probe.port;
    await probe.close();
    return Array(n).fill(String(port));
  },
  async host(_ctx, n, _o, at) {
    const listener = await tcp.listen({ port: Number(at?.[0] ?? 0) });
    return listening(String(listener.port), n, listener);
  },
  join: (_ctx, port) => retry(() => tcp.connect({ port: Number(port) })),
};

const pipeT: SoakTransport = {
  name: "pipe",
  family: "stream",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: false,
  spawn: (argv, cwd) => pipe.spawn(argv, { cwd }),
  pick: () => Promise.reject(new TypeError("Cannot pick a pipe address: the host starts its peer")),
  host: () => Promise.reject(new TypeError("Cannot host pipe peers: use spawn()")),
  join: () => pipe.stdio(),
};

const fifoT: SoakTransport = {
  name: "fifo",
  family: "stream",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  pick: (ctx, n) => Promise.all(Array.from({ length: n }, async () => `${ctx.dir}/${await unique(ctx, "fifo")}`)),
  async host(ctx, n, _o, at) {
    return creating(at ?? await this.pick(ctx, n), (path, signal) => fifo.create(path, { signal }));
  },
  join: (_ctx, path) => fifo.open(path, { wait: JOIN_WAIT }),
};

const shmT: SoakTransport = {
  name: "shm",
  family: "shm",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB - 64,
  swappable: true,
  async pick(ctx, n) {
    const names = await Promise.all(Array.from({ length: n }, async () => `/${await unique(ctx, "shm")}`));
    ctx.used.shm.push(...names);
    return names;
  },
  async host(ctx, n, o = {}, at) {
    // A ring holds a whole message: the default 1 MiB for the soak, a power of two above the largest for chaos.
    let capacity = 1 << 20;
    while (capacity - 8 < (o.largest ?? 0)) capacity *= 2;
    return creating(at ?? await this.pick(ctx, n), (name, signal) => shm.create(name, { capacity, signal }));
  },
  join: (ctx, name) => {
    ctx.used.shm.push(name);
    return shm.open(name, { wait: JOIN_WAIT });
  },
};

const mqT: SoakTransport = {
  name: "mq",
  family: "queue",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  async pick(ctx, n) {
    const names = await Promise.all(Array.from({ length: n }, async () => `/${await unique(ctx, "mq")}`));
    ctx.used.mq.push(...names);
    return names;
  },
  async host(ctx, n, _o, at) {
    // Half the default depth: a user's queues share RLIMIT_MSGQUEUE (800 KiB by default), and 4 channels of two
    // default queues (10 × 8 KiB each) would take 660 KB of it, leaving too little for other programs of that user.
    const o = { create: true, maxMessages: 5 };
    return creating(at ?? await this.pick(ctx, n), (name, signal) => mq.channel(name, { ...o, signal }));
  },
  join: (ctx, name) => {
    ctx.used.mq.push(name);
    return mq.channel(name, { wait: JOIN_WAIT });
  },
};

const sysvT: SoakTransport = {
  name: "sysv",
  family: "queue",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  pick(ctx, n) {
    // Random keys (a key in use makes the create fail with AlreadyExistsError: then the round fails, loudly).
    const keys = Array.from({ length: n }, () => 1 + Math.floor(Math.random() * (2 ** 31 - 2)));
    ctx.used.sysv.push(...keys);
    return Promise.resolve(keys.map(String));
  },
  async host(ctx, n, _o, at) {
    return creating(at ?? await this.pick(ctx, n), (k, signal) => sysv.channel(Number(k), { create: true, signal }));
  },
  join: (ctx, k) => {
    ctx.used.sysv.push(Number(k));
    return sysv.channel(Number(k), { wait: JOIN_WAIT });
  },
};

const fileQueueT: SoakTransport = {
  name: "fileQueue",
  family: "queue",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  pick: (ctx, n) => Promise.all(Array.from({ length: n }, async () => `${ctx.dir}/${await unique(ctx, "fq")}`)),
  async host(ctx, n, _o, at) {
    return creating(at ?? await this.pick(ctx, n), (dir, signal) => fileQueue.channel(dir, { create: true, signal }));
  },
  join: (_ctx, dir) => fileQueue.channel(dir, { wait: JOIN_WAIT }),
};

const unixDgramT: SoakTransport = {
  name: "unixDgram",
  family: "datagram",
  reliable: true,
  datagram: true,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: unixDgram.capabilities.maxMessage,
  swappable: false,
  pick: async (ctx, n) => Array(n).fill(`${ctx.dir}/${await unique(ctx, "dgram")}.sock`),
  async host(ctx, n, _o, at) {
    const path = at?.[0] ?? (await this.pick(ctx, 1))[0]!;
    return datagramHost(Array(n).fill(path), (await unixDgram.bind(path)) as DatagramSocket<unknown>);
  },
  join: async (_ctx, path) => sayHello(await retry(() => unixDgram.connect(path))),
};

const udpT: SoakTransport = {
  name: "udp",
  family: "datagram",
  reliable: false,
  datagram: true,
  soakMax: Math.min(MAX_SOAK_MESSAGE, udp.capabilities.maxMessage),
  largeMax: udp.capabilities.maxMessage,
  swappable: false,
  pick: () => Promise.reject(new TypeError("Cannot pick a udp address: the host binds port 0")),
  async host(_ctx, n) {
    const socket = await udp.bind({ port: 0 });
    return datagramHost(Array(n).fill(String(socket.address.port)), socket as DatagramSocket<unknown>);
  },
  join: async (_ctx, port) => sayHello(await udp.connect({ port: Number(port) })),
};

const natsT: SoakTransport = {
  name: "nats",
  family: "nats",
  reliable: true,
  datagram: false,
  soakMax: MAX_SOAK_MESSAGE,
  largeMax: 64 * MiB,
  swappable: true,
  pick: async (ctx, n) => Array(n).fill((await unique(ctx, "nats")).replace(/[^A-Za-z0-9-]/g, "_")),
  async host(ctx, n, _o, at) {
    const subject = at?.[0] ?? (await this.pick(ctx, 1))[0]!;
    const listener = await nats.listen(subject, { servers: natsUrl(ctx), heartbeat: ctx.heartbeat });
    return listening(subject, n, listener);
  },
  join: (ctx, subject) =>
    retry(() => nats.connect(subject, { servers: natsUrl(ctx), heartbeat: ctx.heartbeat, timeout: JOIN_WAIT })),
};

function natsUrl(ctx: Context): string {
  if (ctx.nats === undefined) throw new TypeError("Cannot use nats: no nats-server URL (is nats-server installed?)");
  return ctx.nats;
}

/** Every transport, in the order of the tables. */
export const TRANSPORTS: readonly SoakTransport[] = [
  unixT,
  tcpT,
  pipeT,
  fifoT,
  shmT,
  mqT,
  sysvT,
  fileQueueT,
  unixDgramT,
  udpT,
  natsT,
];

/** The transport named `name`. @throws {TypeError} for an unknown name. */
export function transport(name: string): SoakTransport {
  const t = TRANSPORTS.find((x) => x.name === name);
  if (!t) throw new TypeError(`Cannot soak "${name}": transports are ${TRANSPORTS.map((x) => x.name).join(", ")}`);
  return t;
}
