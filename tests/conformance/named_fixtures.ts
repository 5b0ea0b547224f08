/**
 * THE list of named-object fixtures: one entry per kind of named object, each a few lines over the public API, and
 * the suite of `named.ts` instantiated over every one (`tests/named.test.ts`). A new named kind is one entry here.
 */
import {
  fifo,
  FileLock,
  FileQueue,
  MessageQueue,
  NamedSemaphore,
  SharedMemory,
  SysvQueue,
  unix,
  unixDgram,
} from "../../mod.ts";
import { native } from "../../ffi/native.ts";
import { mqName } from "../../os/mq_name.ts";
import { fifoName, unixDgramName, unixName } from "../../os/path_names.ts";
import { semName } from "../../os/sem_name.ts";
import { shmName } from "../../os/shm_name.ts";
import { sysvName } from "../../os/sysv_name.ts";
import { runtime } from "../../runtimes/detect.ts";
import type { Handle, MakeOptions, NamedFixture } from "./named.ts";

const rt = await runtime();
const ffi = await native();
const rand = () => Math.random().toString(36).slice(2, 10);
const posixName = () => `/ipckit-test-named-${rt.pid}-${rand()}`;
const inDir = (prefix: string) => (dir: string) => `${dir}/${prefix}-${rand()}`;

/** Names no POSIX-named create or open may accept. */
const POSIX_BAD: readonly unknown[] = ["", "jobs", "/a/b", `/${"x".repeat(300)}`, "/x\0y", 42, undefined];
/** Paths no path-named create or open may accept. */
const PATH_BAD: readonly unknown[] = ["", "a\0b", 42, undefined, "/no-such-dir-ipckit-test/x"];

/** A synchronous call as a promise: what it throws becomes the rejection. */
const settle = (fn: () => unknown) => (): Promise<void> => new Promise((resolve) => resolve(void fn()));

/** A handle on an object named by a POSIX name, with `close()` and `unlink()`. */
function posix(h: { name: string; close(): unknown; unlink(): unknown }): Handle {
  return {
    names: [h.name],
    close: async () => void (await h.close()),
    unlink: async () => void (await h.unlink()),
  };
}

/** A handle that owns no name (a connection), closed with `close()`. */
function unnamed(h: { close(): unknown }): Handle {
  return { names: [], close: async () => void (await h.close()) };
}

const size = { size: 4096 };
const shmFixture: NamedFixture = {
  name: "shared memory segment",
  kind: shmName,
  fresh: posixName,
  create: async (a, o) => posix(await SharedMemory.create(a, { ...size, ...o })),
  open: async (a) => posix(await SharedMemory.open(a)),
  openOrCreate: async (a, o) => posix(await SharedMemory.openOrCreate(a, { ...size, ...o })),
  closeRemoves: false,
  badNames: POSIX_BAD,
  fromChild: (m) => ({ address: m.name, names: [m.name] }),
};

const sizes = { maxMessages: 2, messageSize: 16 };
const mqFixture: NamedFixture = {
  name: "POSIX message queue",
  kind: mqName,
  fresh: posixName,
  create: async (a, o) => posix(await MessageQueue.create(a, { ...sizes, ...o })),
  open: async (a) => posix(await MessageQueue.open(a)),
  openOrCreate: async (a, o) => posix(await MessageQueue.openOrCreate(a, { ...sizes, ...o })),
  closeRemoves: false,
  badNames: POSIX_BAD,
  fromChild: (m) => ({ address: m.name, names: [m.name] }),
};

const semFixture: NamedFixture = {
  name: "named semaphore",
  kind: semName,
  fresh: posixName,
  create: async (a, o) => posix(await NamedSemaphore.create(a, { value: 1, ...o })),
  open: async (a) => posix(await NamedSemaphore.open(a)),
  openOrCreate: async (a, o) => posix(await NamedSemaphore.openOrCreate(a, { value: 1, ...o })),
  closeRemoves: false,
  badNames: POSIX_BAD,
  fromChild: (m) => ({ address: m.name, names: [m.name] }),
};

/** A System V address is the key, in decimal; anything else is passed on as it is (the bad-name cases). */
const key = (a: string): number => (typeof a === "string" && /^-?\d+$/.test(a) ? Number(a) : a as unknown as number);
function queue(q: { id: number; close(): void; remove(): void }, k: number): Handle {
  return {
    names: [String(q.id)],
    key: k,
    close: settle(() => q.close()),
    unlink: settle(() => q.remove()),
  };
}
const sysvFixture: NamedFixture = {
  name: "System V message queue",
  kind: sysvName,
  fresh: () => String(0x10000000 + Math.floor(Math.random() * 0x6fffffff)),
  create: async (a, o) => queue(await SysvQueue.create(key(a), o), key(a)),
  // The child's queue is private (no key): its address is `id:<id>`, opened by id.
  open: async (a) =>
    String(a).startsWith("id:")
      ? queue(await SysvQueue.fromId(Number(a.slice(3))), 0)
      : queue(await SysvQueue.open(key(a)), key(a)),
  openOrCreate: async (a, o) => queue(await SysvQueue.openOrCreate(key(a), o), key(a)),
  closeRemoves: false,
  badNames: [0, 1.5, Number.NaN, 2 ** 40, "x", undefined],
  fromChild: (m) => ({ address: `id:${m.id}`, names: [String(m.id)] }),
};

/**
 * A FIFO pair being created: `fifo.create` makes `<path>.in` and `<path>.out` and waits for a peer; the handle is
 * ready once both names exist, and its close ends the wait (which removes both names).
 */
async function fifoPair(path: string, options: MakeOptions = {}): Promise<Handle> {
  const names = [`${path}.in`, `${path}.out`];
  // Ready when both names hold new FIFOs: ones that were there before (a refused create) do not count.
  const look = (name: string) => {
    try {
      return JSON.stringify(fifoName.lookUp(ffi, name));
    } catch {
      return "a bad name";
    }
  };
  const before = names.map(look);
  const fresh = () => names.every((n, i) => look(n).includes('"object"') && look(n) !== before[i]);
  const abort = new AbortController();
  const pending = fifo.create(path, { ...options, signal: abort.signal });
  let done = false;
  const settled = pending.then(() => (done = true), (e) => {
    done = true;
    throw e;
  });
  const made = (async () => {
    while (!done && !fresh()) await new Promise((r) => setTimeout(r, 5));
  })();
  await Promise.race([settled, made]);
  return {
    names,
    async close() {
      abort.abort();
      const channel = await pending.catch(() => undefined);
      await channel?.close();
    },
  };
}
const fifoFixture: NamedFixture = {
  name: "FIFO pair",
  kind: fifoName,
  fresh: inDir("fifo"),
  create: fifoPair,
  open: async (a) => unnamed(await fifo.open(a)),
  openOrCreate: "a FIFO pair has create and open only",
  closeRemoves: true,
  noUnlink: "the creator removes both names when the peer has opened them, or when its create ends (close)",
  badNames: PATH_BAD,
  fromChild: (m) => ({ address: m.fifo, names: [`${m.fifo}.in`, `${m.fifo}.out`] }),
};

const listener = (l: { close(): unknown }, path: string): Handle => ({ ...unnamed(l), names: [path] });
const NO_UNLINK_SOCKET = "close() removes the socket file (a listener owns its name)";
const SOCKET_BAD: readonly unknown[] = [...PATH_BAD, `/tmp/${"x".repeat(200)}`];
const socketFixture: NamedFixture = {
  name: "Unix socket listener",
  kind: unixName,
  fresh: inDir("sock"),
  create: async (a, o) => listener(await unix.listen(a, o), a),
  open: async (a) => unnamed(await unix.connect(a)),
  openOrCreate: "a listener is created (listen) or connected to, never both",
  closeRemoves: true,
  noUnlink: NO_UNLINK_SOCKET,
  badNames: SOCKET_BAD,
  fromChild: (m) => ({ address: m.sock, names: [m.sock] }),
};

const dgramFixture: NamedFixture = {
  name: "Unix datagram socket",
  kind: unixDgramName,
  fresh: inDir("dgram"),
  create: async (a, o) => listener(await unixDgram.bind(a, o), a),
  open: async (a) => unnamed(await unixDgram.connect(a)),
  openOrCreate: "a datagram socket is bound or connected to, never both",
  closeRemoves: true,
  noUnlink: NO_UNLINK_SOCKET,
  badNames: SOCKET_BAD,
  fromChild: (m) => ({ address: m.dgram, names: [m.dgram] }),
};

const lockFile = (l: { path: string; close(): void }): Handle => ({
  names: [l.path],
  close: () => Promise.resolve(l.close()),
});
const fileLockFixture: NamedFixture = {
  name: "lock file",
  kind: "a lock file is an ordinary file of the caller's: ipckit keeps no record of it and never removes it",
  fresh: inDir("lock"),
  create: "FileLock.open() with create (the default) also opens an existing file: it is the openOrCreate",
  open: async (a) => lockFile(await FileLock.open(a, { create: false })),
  openOrCreate: async (a, o) => lockFile(await FileLock.open(a, o)),
  closeRemoves: false,
  noUnlink: "a lock file stays: removed while another process holds its lock, the lock would split over two files",
  badNames: PATH_BAD,
  fromChild: (m) => ({ address: m.lock, names: [m.lock] }),
  cleanup: (a) => rt.removeFile(a),
};

const fileQueueFixture: NamedFixture = {
  name: "file queue",
  kind: "a file queue is a directory of the caller's: ipckit keeps no record of it",
  fresh: inDir("queue"),
  create: async (a) => ({ ...unnamed(await FileQueue.create(a)), names: [`${a}/queue.log`] }),
  open: async (a) => ({ ...unnamed(await FileQueue.open(a)), names: [`${a}/queue.log`] }),
  openOrCreate: "a file queue has create and open only",
  closeRemoves: false,
  noUnlink: "a file queue is removed with its directory",
  noMode: "a file queue has no mode option: its log and offset files are always 0600",
  badNames: PATH_BAD,
  fromChild: (m) => ({ address: m.queue, names: [`${m.queue}/queue.log`] }),
  cleanup: (a) => rt.removeDir(a),
};

/** Every named kind's fixture. */
export const NAMED_FIXTURES: readonly NamedFixture[] = [
  shmFixture,
  mqFixture,
  semFixture,
  sysvFixture,
  fifoFixture,
  socketFixture,
  dgramFixture,
  fileLockFixture,
  fileQueueFixture,
];
