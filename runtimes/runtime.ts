/**
 * The runtime seam: everything ipckit needs from Deno, Bun or Node, behind one interface. Only `runtimes/` and
 * `ffi/` may touch a runtime; the rest of ipckit talks to a {@linkcode Runtime}.
 *
 * @module
 */

/** The runtimes ipckit runs on. */
export type RuntimeName = "deno" | "bun" | "node";

/** The runtimes, in detection order. */
export const RUNTIMES: readonly RuntimeName[] = ["deno", "bun", "node"];

/**
 * Limits of a worker thread's JS engine (node:worker_threads' `resourceLimits`), in MiB. A thread that passes
 * `maxOldGenerationSizeMb` or `maxYoungGenerationSizeMb` ends (its `onExit` comes, with code 1) instead of growing.
 */
export interface ResourceLimits {
  maxOldGenerationSizeMb?: number;
  maxYoungGenerationSizeMb?: number;
  codeRangeSizeMb?: number;
  stackSizeMb?: number;
}

/**
 * Why a runtime's worker threads cannot take {@linkcode ResourceLimits}, or undefined where they can. Measured (Node
 * 20, Deno 2.9.6, Bun 1.4.5): a Node thread past `maxOldGenerationSizeMb: 32` ends with `ERR_WORKER_OUT_OF_MEMORY`;
 * Bun accepts the option and ignores it (the thread grew past 600 MiB of heap); Deno ends a thread that passes the
 * limit in its top-level code, but one that passes it in a message handler (where pool tasks run) stops without
 * ending or reporting (12 of 12 runs), which would hang its tasks. Both adapters refuse the option.
 */
export const WORKER_LIMITS_UNSUPPORTED: Readonly<Record<RuntimeName, string | undefined>> = {
  node: undefined,
  deno: "a Deno thread that reaches them in a message handler stops without ending (it would hang its tasks)",
  bun: "Bun's Worker ignores them",
};

/** Options of {@linkcode Runtime.worker}. */
export interface WorkerOptions {
  name?: string;
  /** Engine limits of the thread, where the runtime honours them ({@linkcode WORKER_LIMITS_UNSUPPORTED}). */
  resourceLimits?: ResourceLimits;
}

/** What {@linkcode Runtime.memoryUsage} reports, in bytes. */
export interface MemoryUsage {
  /** The resident set of the whole process (every thread's). */
  rss: number;
  /** The JS heap in use of this thread (its isolate or VM): a worker thread's own. */
  heapUsed: number;
}

/** Signals ipckit can send and handle. SIGUSR1 is left out on purpose: Node and Deno start an inspector on it. */
export type SignalName =
  | "SIGHUP"
  | "SIGINT"
  | "SIGQUIT"
  | "SIGTERM"
  | "SIGKILL"
  | "SIGUSR2"
  | "SIGCHLD"
  | "SIGCONT"
  | "SIGSTOP"
  | "SIGWINCH";

/** Receives the bytes of a {@linkcode ByteStream}. */
export interface ByteSink {
  /** A chunk of bytes. Valid only during the call unless the stream says `ownsChunks`. */
  data(chunk: Uint8Array): void;
  /** The end of the stream: `error` is undefined at a clean end (EOF). Called once, and nothing after it. */
  end(error?: Error): void;
}

/**
 * A bidirectional byte stream (a socket, a pair of pipes). Reading is push-based, with flow control; writing
 * returns a promise only when the runtime's buffer is full, so the fast path allocates nothing.
 */
export interface ByteStream {
  /** True when chunks handed to `sink.data` are fresh buffers the sink may keep without copying. */
  readonly ownsChunks: boolean;
  /** Starts delivering incoming bytes to `sink`. Call once. */
  start(sink: ByteSink): void;
  /** Stops delivering bytes until `resume()`; the OS buffers fill and the writer blocks (backpressure). */
  pause(): void;
  /** Resumes delivery after `pause()`. */
  resume(): void;
  /**
   * Queues `chunk` for writing; the caller must not modify it afterwards. Returns a promise when the caller should
   * wait before writing more (it rejects if the stream fails), or undefined when it may go on at once.
   */
  write(chunk: Uint8Array): Promise<void> | undefined;
  /** Flushes what was written, then signals end-of-stream to the peer (half-close). */
  end(): Promise<void>;
  /** Closes both directions now, discarding unwritten data. Idempotent. */
  close(): void;
  /** Lets the process exit while this stream is open (sockets only; reading goes on while something else runs). */
  unref?(): void;
  /** Undoes `unref()`: the open stream keeps the process alive again. */
  ref?(): void;
}

/** A listening socket. */
export interface Server {
  /** The bound TCP port (0 for Unix sockets). */
  readonly port: number;
  /** Stops accepting; existing connections stay open. */
  close(): Promise<void>;
}

/** How to start a child process. */
export interface SpawnOptions {
  /** Working directory; the parent's by default. */
  cwd?: string;
  /** Extra environment variables, merged over the parent's. */
  env?: Record<string, string>;
  /** What to do with the child's stdin and stdout: `"pipe"` (a ByteStream), `"inherit"` or `"null"`. */
  stdio?: "pipe" | "inherit" | "null";
  /** The child's stderr; `"inherit"` by default. */
  stderr?: "pipe" | "inherit" | "null";
  /** File descriptors of this process the child gets as its fds 3, 4, ... (their close-on-exec flag is ignored). */
  fds?: number[];
}

/** How a child ended. */
export interface ExitStatus {
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  /** The signal that ended it, or null. */
  signal: string | null;
}

/** Options of `Runtime.listenUnix`. */
export interface ListenUnixOptions {
  /** Permission bits of the socket file (who may connect); 0o600 by default. */
  mode?: number;
}

/**
 * TLS on a TCP listener: PEM text. `requestCert` asks every client for a certificate signed by `ca` and refuses
 * the connection without one.
 */
export interface TlsServerOptions {
  /** The server's certificate chain (PEM). */
  cert: string;
  /** The server's private key (PEM). */
  key: string;
  /** Certificate authorities that client certificates must chain to (PEM). */
  ca?: string | string[];
  /** Require a client certificate that chains to `ca`. */
  requestCert?: boolean;
}

/** TLS on a TCP connection: PEM text. The server's certificate is always verified. */
export interface TlsClientOptions {
  /** Certificate authorities the server's certificate must chain to (PEM); the system's roots when absent. */
  ca?: string | string[];
  /** This client's certificate chain (PEM), for servers that ask for one. */
  cert?: string;
  /** This client's private key (PEM). */
  key?: string;
  /** The name the server's certificate must carry (and the SNI sent); the connect hostname by default. */
  servername?: string;
}

/** Options of `Runtime.listenTcp`. */
export interface ListenTcpOptions {
  port: number;
  hostname: string;
  tls?: TlsServerOptions;
  /** With `tls`: how long a TLS handshake may take, in milliseconds. */
  handshakeTimeout?: number;
  /** With `tls`: told about each connection refused before it was handed over (a failed handshake). */
  onReject?: (error: Error) => void;
}

/** Options of `Runtime.connectTcp`. */
export interface ConnectTcpOptions {
  port: number;
  hostname: string;
  tls?: TlsClientOptions;
  /** With `tls`: how long the TLS handshake may take once connected, in milliseconds. */
  handshakeTimeout?: number;
}

/** A started child process. */
export interface ChildProcess {
  /** The child's pid. */
  readonly pid: number;
  /** The child's stdin (write) and stdout (read) as one stream, when spawned with `stdio: "pipe"`. */
  readonly stdio: ByteStream | null;
  /** The child's stderr, as text chunks, when spawned with `stderr: "pipe"`. */
  readonly stderr: AsyncIterable<Uint8Array> | null;
  /** Resolves when the child has exited. */
  readonly exited: Promise<ExitStatus>;
  /** Sends a signal to the child (SIGTERM by default). Does nothing once it has exited. */
  kill(signal?: SignalName): void;
  /** Lets this process exit while the child still runs. */
  unref(): void;
}

/** A running worker thread. */
export interface WorkerHandle {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onMessage(fn: (message: unknown) => void): void;
  onError(fn: (error: unknown) => void): void;
  /** Called once when the thread has stopped (it returned, threw, exited or was terminated), with its exit code. */
  onExit(fn: (code: number) => void): void;
  terminate(): Promise<void>;
}

/** Inside a worker thread: the port to the thread that started it. */
export interface ParentPort {
  postMessage(message: unknown, transfer?: Transferable[]): void;
  onMessage(fn: (message: unknown) => void): void;
  /** Stops listening, so the thread can end once it has nothing else to do. */
  close(): void;
}

/** A UDP address. */
export interface UdpAddress {
  /** An IPv4 or IPv6 address (no host names: they are resolved before). */
  readonly host: string;
  readonly port: number;
}

/** A bound UDP socket. */
export interface UdpHandle {
  /** The address it is bound to (the port the OS picked for port 0). */
  readonly address: UdpAddress;
  /**
   * Starts delivering datagrams; `data` is a fresh buffer the receiver may keep. `error` reports asynchronous
   * socket errors (an ICMP "port unreachable" on a connected socket arrives as ECONNREFUSED).
   */
  start(onMessage: (data: Uint8Array, from: UdpAddress) => void, onError: (error: Error) => void): void;
  /** Restricts the socket to one peer: sends go there and datagrams from anyone else are discarded by the OS. */
  connect(to: UdpAddress): Promise<void>;
  /** Sends one datagram (to the connected peer when `to` is undefined). Settles when the OS took it. */
  send(data: Uint8Array, to: UdpAddress | undefined): Promise<void>;
  /** Closes the socket. Idempotent. */
  close(): void;
}

/** What `Runtime.fileInfo` tells about a path (lstat: a final symlink is not followed). */
export interface FileInfo {
  readonly type: "file" | "directory" | "symlink" | "fifo" | "socket" | "other";
  /** The owner's user id. */
  readonly uid: number;
  /** The permission bits (`mode & 0o7777`). */
  readonly mode: number;
  /** Last modification, in milliseconds since the epoch. */
  readonly modified: number;
}

/** Everything ipckit needs from a runtime. One adapter per runtime implements it. */
export interface Runtime {
  /** Which runtime this is. */
  readonly name: RuntimeName;
  /** This process's id. */
  readonly pid: number;
  /** The runtime's version string. */
  readonly version: string;
  /** Command-line arguments after the script. */
  args(): string[];
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /** Ends this process. */
  exit(code: number): never;
  /**
   * Runs `fn` once when this process exits: its event loop ran dry, or `exit()` was called. Not when a signal kills
   * it (SIGKILL, or a SIGTERM nobody handles): what `fn` would have removed, the owner records let `ipckit clean` find.
   */
  onProcessExit(fn: () => void): void;

  /** Starts a child process. `cmd[0]` is the program. */
  spawn(cmd: string[], options?: SpawnOptions): ChildProcess;
  /** This process's own stdin (read) and stdout (write) as one stream. */
  stdio(): ByteStream;
  /** Writes text to stderr, synchronously (for diagnostics that must not go to stdout). */
  printError(text: string): void;

  /** Registers a signal handler; dispose it to remove it. A handler alone does not keep the process alive. */
  onSignal(signal: SignalName, fn: () => void): Disposable;
  /** Sends a signal to a process. */
  kill(pid: number, signal: SignalName): void;

  /**
   * Listens on a Unix stream socket at `path` (the file must not exist). The socket file never exists with wider
   * permissions than `options.mode` (0o600 by default): it is bound in a fresh private directory, given its mode,
   * then linked into place.
   */
  listenUnix(path: string, onConnection: (stream: ByteStream) => void, options?: ListenUnixOptions): Promise<Server>;
  /** Connects to a Unix stream socket. */
  connectUnix(path: string): Promise<ByteStream>;
  /**
   * Listens on TCP; port 0 picks a free port (see `Server.port`). With `tls`, a connection is handed over only once
   * its TLS handshake succeeded; one that fails or takes longer than `handshakeTimeout` is closed and reported to
   * `onReject`.
   */
  listenTcp(options: ListenTcpOptions, onConnection: (stream: ByteStream) => void): Promise<Server>;
  /** Connects over TCP (with Nagle's algorithm off); with `tls`, resolves once the TLS handshake succeeded. */
  connectTcp(options: ConnectTcpOptions): Promise<ByteStream>;

  /** Binds a UDP socket (`port` 0 picks a free port). */
  bindUdp(options: { host: string; port: number; ipv6: boolean; reuseAddress: boolean }): Promise<UdpHandle>;

  /**
   * Opens one end of a FIFO (named pipe) without blocking the event loop: `"read"` resolves at once, `"write"`
   * resolves when a reader has the FIFO open. The stream is one-way: a read end never writes, a write end never
   * delivers data. Rejects with the signal's reason when `signal` aborts before a peer came.
   */
  openFifo(path: string, mode: "read" | "write", signal?: AbortSignal): Promise<ByteStream>;

  /**
   * Starts a worker thread on a module.
   *
   * @throws {UnsupportedError} for `resourceLimits` where the runtime does not honour them (Bun, Deno).
   */
  worker(url: URL, options?: WorkerOptions): WorkerHandle;
  /** This process's resident set and this thread's JS heap, in bytes (cheap enough for a few calls a second). */
  memoryUsage(): MemoryUsage;
  /** The port to the parent thread when this code runs in a worker thread; null on the main thread. */
  parentPort(): ParentPort | null;

  /** File-system helpers used by transports and tests. */
  removeFile(path: string): Promise<void>;
  /** Whether a path exists (without following a final symlink). */
  exists(path: string): Promise<boolean>;
  /** What is at `path` (lstat), or undefined when nothing is. */
  fileInfo(path: string): Promise<FileInfo | undefined>;
  /** The names in a directory. @throws {NotFoundError} when it does not exist. */
  readDir(path: string): Promise<string[]>;
  /** A file's contents as UTF-8 text. @throws {NotFoundError} when it does not exist. */
  readTextFile(path: string): Promise<string>;
  /** How many CPUs this process may run on now (its affinity mask, e.g. 1 under `taskset -c 0`). */
  availableCpus(): number;
  /**
   * Whether this process may load native libraries without asking: false only on Deno without `--allow-ffi`, where
   * trying would prompt the user (or fail). For what is optional (the stats segment), not for what needs FFI anyway.
   */
  ffiAllowed(): boolean;
  /** Whether a file descriptor of this process (0, 1, 2) is a terminal. */
  isTerminal(fd: number): boolean;
  /** The terminal's size in characters (stdout's), or undefined when stdout is no terminal. */
  terminalSize(): { columns: number; rows: number } | undefined;
  /**
   * Puts stdin's terminal in raw mode (keys arrive one by one, unechoed; Ctrl-C is a byte, not a signal) or back.
   *
   * @throws {Error} when stdin is no terminal.
   */
  setRawInput(on: boolean): void;
  /** A fresh private temporary directory. */
  makeTempDir(prefix: string): Promise<string>;
  /** Removes a directory and its contents. */
  removeDir(path: string): Promise<void>;
  /** Absolute file path of a `file:` URL. */
  fromFileUrl(url: URL | string): string;
}
