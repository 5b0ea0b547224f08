/**
 * Child of tests/cli.test.ts: creates one object of every recorded kind under names made from `<tag>` (a shm
 * segment, a POSIX mq, a named semaphore, a FIFO pair, a Unix socket listener, a bound Unix datagram socket and a
 * private System V queue), plus two objects ipckit keeps no record of (a lock file, held open, and a file queue,
 * closed again: its directory stays), sends "ready" with what it made over the pipe channel to its parent, then
 * waits. When the parent sends "stop" it removes everything and exits; a SIGKILL (or the end of the channel) leaves
 * it all. Also the creator side of tests/named.test.ts's cross-runtime cases, which may connect to its FIFO pair.
 *
 *   resource_child.ts <tag> <dir>
 */
import {
  fifo,
  FileLock,
  FileQueue,
  MessageQueue,
  NamedSemaphore,
  pipe,
  runtime,
  SharedMemory,
  SysvQueue,
  unix,
  unixDgram,
} from "../../mod.ts";

async function main(): Promise<void> {
  const rt = await runtime();
  const [tag, dir] = rt.args() as [string, string];
  const name = `/ipckit-test-res-${tag}`;
  const parent = await pipe.stdio();
  const segment = await SharedMemory.create(name, { size: 4096 });
  const queue = await MessageQueue.create(name, { maxMessages: 2, messageSize: 16 });
  const sem = await NamedSemaphore.create(name, { value: 1 });
  const abort = new AbortController();
  const fifoPath = `${dir}/${tag}.fifo`;
  const waiting = fifo.create(fifoPath, { signal: abort.signal }).catch(() => undefined); // no peer: it waits
  const listener = await unix.listen(`${dir}/${tag}.sock`);
  const dgram = await unixDgram.bind(`${dir}/${tag}.dgram`);
  const q = await SysvQueue.private();
  const lock = await FileLock.open(`${dir}/${tag}.lock`);
  await (await FileQueue.create(`${dir}/${tag}.queue`)).close();
  // The FIFOs exist once create() has made them: wait for both names.
  while (!(await rt.exists(`${fifoPath}.in`)) || !(await rt.exists(`${fifoPath}.out`))) {
    await new Promise((r) => setTimeout(r, 5));
  }
  const made = {
    pid: rt.pid,
    name,
    fifo: fifoPath,
    sock: `${dir}/${tag}.sock`,
    dgram: `${dir}/${tag}.dgram`,
    id: q.id,
    lock: `${dir}/${tag}.lock`,
    queue: `${dir}/${tag}.queue`,
  };
  await parent.send(new TextEncoder().encode(JSON.stringify({ ready: true, ...made })));
  // Only an explicit "stop" cleans up: Deno's kill() can close our stdin a moment before its SIGKILL lands, and a
  // child that cleaned up on that end of stream would not leave its objects behind as a killed process does.
  const stop = await parent.receive().then((m) => new TextDecoder().decode(m) === "stop", () => false);
  if (!stop) return rt.exit(0);
  segment.unlink();
  segment.close();
  queue.unlink();
  queue.close();
  sem.unlink();
  await sem.close();
  abort.abort();
  await (await waiting)?.close(); // a peer may have opened the pair (tests/named.test.ts)
  await listener.close();
  await dgram.close();
  q.remove();
  lock.close();
  await rt.removeFile(made.lock);
  await rt.removeDir(made.queue);
  await parent.close();
}

void main();
