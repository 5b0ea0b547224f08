/**
 * The parts of the Runtime that `node:` modules implement well on all three runtimes. The Node adapter is built
 * from these alone; the Deno and Bun adapters take them and replace what their runtime does faster or differently.
 *
 * @module
 */
import * as childProcess from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import process from "node:process";
import { isatty } from "node:tty";
import { fileURLToPath } from "node:url";
import { parentPort as nodeParentPort, Worker } from "node:worker_threads";
import { AlreadyExistsError, IpcError, NotFoundError, PermissionError } from "../errors.ts";
import { duplex, socketStream } from "./streams.ts";
import { bindUdp } from "./node_udp.ts";
import { runtimeName } from "./detect.ts";
import { bindWithMode, DEFAULT_SOCKET_MODE } from "./unix_bind.ts";
import type {
  ByteStream,
  ChildProcess,
  ConnectTcpOptions,
  ExitStatus,
  FileInfo,
  ListenTcpOptions,
  ListenUnixOptions,
  ParentPort,
  Runtime,
  Server,
  SignalName,
  SpawnOptions,
  WorkerHandle,
  WorkerOptions,
} from "./runtime.ts";

/** Maps a `node:` error with a `code` to ipckit's error classes; other errors pass through. */
export function mapNodeError(e: unknown, what: string): unknown {
  const code = (e as { code?: unknown })?.code;
  if (typeof code !== "string") return e;
  const msg = `${what}: ${(e as Error).message}`;
  switch (code) {
    case "ENOENT":
    case "ECONNREFUSED":
      return new NotFoundError(msg, { code, cause: e });
    case "EEXIST":
    case "EADDRINUSE":
      return new AlreadyExistsError(msg, { code, cause: e });
    case "EACCES":
    case "EPERM":
      return new PermissionError(msg, { code, cause: e });
    default:
      return e;
  }
}

/**
 * libuv (Node's `net`) reports a Unix socket bind that failed with ENOENT as EACCES, where Deno and Bun report the
 * kernel's ENOENT. Undone where the cause shows: the directory is missing, or this process may create files in it
 * (so permission is not what failed: /proc, for one, refuses with ENOENT).
 */
function unixListenError(e: unknown, p: string): unknown {
  if ((e as { code?: unknown })?.code !== "EACCES" || runtimeName() !== "node" || /^[\0@]/.test(p)) return e;
  try {
    fs.accessSync(path.dirname(path.resolve(p)), fs.constants.W_OK | fs.constants.X_OK);
  } catch (a) {
    const code = (a as { code?: unknown }).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") return e;
  }
  return Object.assign(new Error(`listen ENOENT: no such file or directory ${p}`, { cause: e }), { code: "ENOENT" });
}

function listen(
  options: net.ListenOptions,
  onConnection: (s: ByteStream) => void,
  what: string,
  tcp: boolean,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (sock) => {
      if (tcp) sock.setNoDelay(true);
      onConnection(socketStream(sock));
    });
    server.once("error", (e) => {
      reject(mapNodeError(options.path === undefined ? e : unixListenError(e, options.path), what));
    });
    server.listen(options, () => {
      const addr = server.address();
      resolve({
        port: typeof addr === "object" && addr !== null ? addr.port : 0,
        // server.close()'s callback waits for every accepted connection to end; stopping to listen is enough.
        close() {
          server.close();
          return Promise.resolve();
        },
      });
    });
  });
}

function connect(options: net.NetConnectOpts, what: string): Promise<ByteStream> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ ...options, allowHalfOpen: true, noDelay: true } as net.NetConnectOpts);
    const onError = (e: Error) => reject(mapNodeError(e, what));
    sock.once("error", onError);
    sock.once("connect", () => {
      sock.off("error", onError);
      resolve(socketStream(sock));
    });
  });
}

function spawn(cmd: string[], options: SpawnOptions = {}): ChildProcess {
  const [file, ...args] = cmd;
  if (file === undefined) throw new TypeError("Cannot spawn a process: the command is empty");
  const io = options.stdio ?? "pipe";
  const err = options.stderr ?? "inherit";
  const map = (v: string) => (v === "null" ? "ignore" : v) as "pipe" | "inherit" | "ignore";
  const child = childProcess.spawn(file, args, {
    cwd: options.cwd,
    env: options.env ? { ...process.env, ...options.env } : process.env,
    stdio: [map(io), map(io), map(err), ...(options.fds ?? [])],
  });
  const exited = new Promise<ExitStatus>((resolve, reject) => {
    child.once("error", (e) => reject(mapNodeError(e, `Cannot spawn "${file}"`)));
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  let stdio: ByteStream | null = null;
  if (io === "pipe" && child.stdin && child.stdout) {
    stdio = pipePairStream(child.stdout, child.stdin);
  }
  let running = true;
  void exited.then(() => (running = false), () => (running = false));
  return {
    pid: child.pid ?? -1,
    stdio,
    stderr: err === "pipe" && child.stderr ? (child.stderr as AsyncIterable<Uint8Array>) : null,
    exited,
    kill(signal: SignalName = "SIGTERM") {
      // By pid, not child.kill(): under Deno only a child's first kill() sends anything (and closes its stdin), so a
      // SIGTERM then SIGKILL escalation never escalated. While `running`, the child is not reaped: the pid is its.
      if (!running || child.pid === undefined) return;
      try {
        process.kill(child.pid, signal);
      } catch { /* it exited meanwhile */ }
    },
    unref() {
      child.unref();
      (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
      (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    },
  };
}

/** A ByteStream over a readable and a writable `node:stream` (a child's stdout and stdin: libuv pipes). */
export function pipePairStream(readable: NodeJS.ReadableStream, writable: NodeJS.WritableStream): ByteStream {
  return duplex(socketStream(readable as net.Socket), socketStream(writable as net.Socket));
}

function onSignal(signal: SignalName, fn: () => void): Disposable {
  process.on(signal, fn);
  return { [Symbol.dispose]: () => void process.off(signal, fn) };
}

/**
 * Starts a worker thread on `url`. With `hooks` (the URL of a TypeScript loader), the worker first imports it and
 * calls its `register()` if it exports one, then imports `url`: Node workers do not inherit the main thread's module
 * hooks.
 */
export function worker(url: URL, options: WorkerOptions = {}, hooks?: string): WorkerHandle {
  const name = {
    ...(options.name === undefined ? {} : { name: options.name }),
    ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits }),
  };
  const w = hooks === undefined ? new Worker(url, name) : new Worker(
    `import(${JSON.stringify(hooks)}).then((m) => { m.register?.(); return import(${JSON.stringify(url.href)}); })`,
    { ...name, eval: true },
  );
  return {
    postMessage: (m, t) => w.postMessage(m, t as never),
    onMessage: (fn) => void w.on("message", fn),
    onError: (fn) => void w.on("error", fn),
    onExit: (fn) => void w.once("exit", fn),
    terminate: async () => void (await w.terminate()),
  };
}

/** The port to the parent thread (node:worker_threads' parentPort, on all three runtimes). */
function parentPort(): ParentPort | null {
  const port = nodeParentPort;
  if (!port) return null;
  return {
    postMessage: (m, t) => port.postMessage(m, t as never),
    onMessage: (fn) => void port.on("message", fn),
    close: () => (port as { close?: () => void }).close?.(), // Deno's parentPort has no close()
  };
}

async function fileInfo(p: string): Promise<FileInfo | undefined> {
  let s: fs.Stats;
  try {
    s = await fs.promises.lstat(p);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw mapNodeError(e, `Cannot inspect "${p}"`);
  }
  const type = s.isFile()
    ? "file"
    : s.isDirectory()
    ? "directory"
    : s.isSymbolicLink()
    ? "symlink"
    : s.isFIFO()
    ? "fifo"
    : s.isSocket()
    ? "socket"
    : "other";
  return { type, uid: s.uid, mode: s.mode & 0o7777, modified: s.mtimeMs };
}

/** The node:-module parts of a Runtime. */
export const nodeApi = {
  pid: process.pid,
  args: () => process.argv.slice(2),
  env: (name: string) => process.env[name],
  exit: (code: number): never => process.exit(code),
  onProcessExit: (fn: () => void): void => void process.once("exit", () => fn()),
  spawn,
  printError: (text: string) => void fs.writeSync(2, text),
  onSignal,
  kill: (pid: number, signal: SignalName) => void process.kill(pid, signal),
  listenUnix: (p: string, on: (s: ByteStream) => void, o: ListenUnixOptions = {}) => {
    const what = `Cannot listen on Unix socket "${p}"`;
    return bindWithMode(p, o.mode ?? DEFAULT_SOCKET_MODE, (at) => listen({ path: at }, on, what, false), what)
      .catch((e) => Promise.reject(e instanceof IpcError ? e : mapNodeError(e, what)));
  },
  connectUnix: (p: string) => connect({ path: p }, `Cannot connect to Unix socket "${p}"`),
  listenTcp: async (o: ListenTcpOptions, on: (s: ByteStream) => void) => {
    // node:tls is loaded only by those who use it.
    if (o.tls) return (await import("./tls_node.ts")).listenTls({ ...o, tls: o.tls }, on);
    return listen({ port: o.port, host: o.hostname }, on, `Cannot listen on TCP ${o.hostname}:${o.port}`, true);
  },
  connectTcp: async (o: ConnectTcpOptions) => {
    if (o.tls) return (await import("./tls_node.ts")).connectTls({ ...o, tls: o.tls });
    return connect({ port: o.port, host: o.hostname }, `Cannot connect to TCP ${o.hostname}:${o.port}`);
  },
  worker,
  parentPort,
  memoryUsage: () => {
    const m = process.memoryUsage();
    return { rss: m.rss, heapUsed: m.heapUsed };
  },
  bindUdp,
  removeFile: async (p: string) => {
    try {
      await fs.promises.unlink(p);
    } catch (e) {
      if ((e as { code?: string }).code !== "ENOENT") throw mapNodeError(e, `Cannot remove "${p}"`);
    }
  },
  exists: async (p: string) => {
    try {
      await fs.promises.lstat(p);
      return true;
    } catch {
      return false;
    }
  },
  fileInfo,
  readDir: (p: string) => fs.promises.readdir(p).catch((e) => Promise.reject(mapNodeError(e, `Cannot read "${p}"`))),
  readTextFile: (p: string) =>
    fs.promises.readFile(p, "utf8").catch((e) => Promise.reject(mapNodeError(e, `Cannot read "${p}"`))),
  availableCpus: () => os.availableParallelism(),
  ffiAllowed: () => true,
  isTerminal: (fd: number) => isatty(fd),
  terminalSize: () =>
    process.stdout.isTTY ? { columns: process.stdout.columns ?? 80, rows: process.stdout.rows ?? 24 } : undefined,
  setRawInput: (on: boolean) => {
    if (!process.stdin.isTTY) throw new Error("Cannot read keys: stdin is not a terminal");
    process.stdin.setRawMode(on);
  },
  makeTempDir: (prefix: string) => fs.promises.mkdtemp(path.join(os.tmpdir(), prefix)),
  removeDir: (p: string) => fs.promises.rm(p, { recursive: true, force: true }),
  fromFileUrl: (u: URL | string) => fileURLToPath(u),
} satisfies Partial<Runtime>;

/** Opens a FIFO end with `O_NONBLOCK` through node:fs. Writers poll until a reader is there (ENXIO). */
export async function openFifoFd(p: string, mode: "read" | "write", signal?: AbortSignal): Promise<number> {
  const { O_RDONLY, O_WRONLY, O_NONBLOCK } = fs.constants;
  const flags = (mode === "read" ? O_RDONLY : O_WRONLY) | O_NONBLOCK;
  for (let delay = 1;; delay = Math.min(delay * 2, 50)) {
    signal?.throwIfAborted();
    try {
      const fd = fs.openSync(p, flags);
      if (!fs.fstatSync(fd).isFIFO()) {
        fs.closeSync(fd);
        throw new TypeError(`Cannot open FIFO "${p}": it is not a FIFO`);
      }
      return fd;
    } catch (e) {
      if ((e as { code?: string }).code !== "ENXIO") throw mapNodeError(e, `Cannot open FIFO "${p}"`);
    }
    await new Promise((r) => setTimeout(r, delay));
  }
}

/** A one-way ByteStream over a FIFO fd, through a `node:net` Socket (libuv pipe: epoll, no thread pool). */
export function fifoSocketStream(fd: number, mode: "read" | "write"): ByteStream {
  const sock = new net.Socket({ fd, readable: mode === "read", writable: mode === "write" });
  return socketStream(sock);
}
