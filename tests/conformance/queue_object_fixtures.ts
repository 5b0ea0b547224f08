/**
 * The one list of queue-object fixtures: each OS queue object joins the queue-object suite
 * (`queue_objects.ts`) by one entry here. `tests/helpers/queue_object_child.ts` opens them by kind in a child.
 */
// The objects' own modules, not mod.ts: the child that opens a queue object loads this file.
import { NotFoundError } from "../../errors.ts";
import { FileQueue } from "../../os/file_queue.ts";
import { MessageQueue } from "../../os/mq.ts";
import { SysvQueue } from "../../os/sysv.ts";
import * as sysv from "../../transports/sysv.ts";
import { runtime } from "../../runtimes/detect.ts";
import type { QueueObject, QueueObjectFixture } from "./queue_objects.ts";
import { randomKey } from "./fixtures_sysv.ts";

/** Every address the fixtures made, per kind, so a test can check that nothing is left behind. */
export const made: Map<string, Set<string>> = new Map();

function remember(kind: string, address: string): string {
  if (!made.has(kind)) made.set(kind, new Set());
  made.get(kind)!.add(address);
  return address;
}

/** POSIX mq: 4 messages of 8192 bytes (the Linux default limits), sent at priority 0. */
const MQ_SIZES = { maxMessages: 4, messageSize: 8192 };

function mqObject(q: MessageQueue): QueueObject {
  return {
    send: (data, options) => q.send(data, options),
    receive: async (options) => (await q.receive(options)).data,
    tryReceive: () => q.tryReceive()?.data,
    trySend: (data) => q.trySend(data),
    close: () => q.close(),
    get closed() {
      return q.closed;
    },
  };
}

/** System V: type 1 only; a queue of 8192 bytes (one msgmax message; 8192 messages of 1 byte). */
const SYSV_BYTES = 8192;

function sysvObject(q: SysvQueue): QueueObject {
  return {
    send: (data, options) => q.send(1, data, options),
    receive: async (options) => (await q.receive(options)).data,
    tryReceive: () => q.tryReceive()?.data,
    trySend: (data) => q.trySend(1, data),
    close: () => q.close(),
    get closed() {
      return q.closed;
    },
  };
}

function fileObject(q: FileQueue): QueueObject {
  return {
    send: (data, options) => q.send(data, options?.signal ? { signal: options.signal } : {}),
    receive: (options) => q.receive(options),
    tryReceive: () => q.tryReceive(),
    trySend: () => {
      throw new TypeError("a file queue has no trySend: it is never full");
    },
    close: () => q.close(),
    get closed() {
      return q.closed;
    },
  };
}

export const QUEUE_OBJECTS: readonly QueueObjectFixture[] = [
  {
    name: "POSIX mq",
    childKind: "mq",
    async make() {
      const name = remember("mq", `/ipckit-test-qo-${Math.random().toString(36).slice(2, 12)}`);
      return { queue: mqObject(await MessageQueue.create(name, MQ_SIZES)), address: name };
    },
    open: async (address) => mqObject(await MessageQueue.open(address)),
    remove: (address) => MessageQueue.unlink(address),
    largest: MQ_SIZES.messageSize,
    tooLarge: MQ_SIZES.messageSize + 1,
    capacity: MQ_SIZES.maxMessages,
  },
  {
    name: "System V",
    childKind: "sysv",
    async make() {
      const k = randomKey();
      remember("sysv", String(k));
      return { queue: sysvObject(await SysvQueue.create(k, { maxBytes: SYSV_BYTES })), address: String(k) };
    },
    open: async (address) => sysvObject(await SysvQueue.open(Number(address))),
    remove: async (address) => (await SysvQueue.open(Number(address))).remove(),
    largest: (await sysv.limits()).msgmax,
    tooLarge: (await sysv.limits()).msgmax + 1,
    capacity: SYSV_BYTES,
  },
  {
    name: "file queue",
    childKind: "file",
    async make() {
      const rt = await runtime();
      const dir = remember("file", `${await rt.makeTempDir("ipckit-test-qo-")}/q`);
      return { queue: fileObject(await FileQueue.create(dir)), address: dir };
    },
    open: async (address) => fileObject(await FileQueue.open(address)),
    async remove(address) {
      const rt = await runtime();
      if (!(await rt.exists(address))) {
        throw new NotFoundError(`Cannot remove file queue "${address}": it does not exist`);
      }
      await rt.removeDir(address.slice(0, address.lastIndexOf("/"))); // the temporary directory around it
    },
    largest: 1024 * 1024,
    tooLarge: "records go up to 4 GiB - 1 bytes (a u32 length): the suite does not allocate that",
    capacity: "a file queue is never full: send() appends to its log",
  },
];

/** The fixture a child process names by `childKind`. */
export function queueObjectFixture(kind: string): QueueObjectFixture {
  const f = QUEUE_OBJECTS.find((x) => x.childKind === kind);
  if (f === undefined) throw new TypeError(`Cannot find queue object kind "${kind}"`);
  return f;
}
