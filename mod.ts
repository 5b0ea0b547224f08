/**
 * ipckit: inter-process and inter-thread communication for Deno, Bun and Node, behind one typed API.
 *
 * Transports are namespaces with a create/listen side and an open/connect side, and all give a
 * {@linkcode Channel}: message boundaries kept, ordered, closed once. Named OS objects are classes made by their
 * statics: {@linkcode SharedMemory}, {@linkcode NamedSemaphore}, {@linkcode MessageQueue}, {@linkcode SysvQueue} and
 * {@linkcode FileQueue} (`create` / `open` / `openOrCreate`).
 *
 * @example
 * ```ts
 * import { runtime, typed, unix } from "ipckit";
 * const path = `/tmp/ipckit-example-${(await runtime()).pid}.sock`;
 * await using server = await unix.listen(path);
 * const client = typed<string>(await unix.connect(path));
 * const peer = typed<string>(await server.accept());
 * await client.send("hello");
 * console.log(await peer.receive()); // "hello"
 * await client.close();
 * await peer.close();
 * ```
 *
 * @module
 */

// Channels and framing
export type {
  Capabilities,
  Channel,
  ChannelOptions,
  Listener,
  ReceiveOptions,
  SendOptions,
} from "./transports/channel.ts";
export { MESSAGE_OVERHEAD } from "./transports/channel.ts";
export { DEFAULT_BACKLOG, type ListenerLimits } from "./transports/listener.ts";
export { DEFAULT_MAX_MESSAGE, encodeFrame, FrameDecoder, HEADER_SIZE, MAX_FRAME } from "./transports/framing.ts";
export { encodeLine, LineDecoder } from "./transports/lines.ts";
export type { StreamChannelOptions } from "./transports/stream_channel.ts";
export { typed, type TypedChannel } from "./transports/typed.ts";
export { cbor, cborCodec, type CborOptions, type Codec, json } from "./transports/codec.ts";

// Transports
export * as unix from "./transports/unix.ts";
export * as tcp from "./transports/tcp.ts";
export * as pipe from "./transports/pipe.ts";
export * as fifo from "./transports/fifo.ts";
export * as shm from "./transports/shm.ts";
export * as mq from "./transports/mq.ts";
export * as fileQueue from "./transports/file_queue.ts";
export * as sysv from "./transports/sysv.ts";
export * as udp from "./transports/udp.ts";
export * as unixDgram from "./transports/unix_dgram.ts";
export * as nats from "./transports/nats.ts";
export { type Datagram, DatagramChannel, type DatagramOptions, DatagramSocket } from "./transports/datagram.ts";
export { authenticate, type AuthenticateOptions, type AuthOptions } from "./transports/auth.ts";
export type { SecureConnectOptions, SecureListenOptions } from "./transports/handshakes.ts";
export type { TlsClientOptions, TlsServerOptions } from "./runtimes/runtime.ts";

// RPC over any channel
export * as rpc from "./rpc/rpc.ts";
export type { CallContext, CallOptions, CallSink, RemoteApi, RpcOptions } from "./rpc/peer.ts";
export { RpcPeer } from "./rpc/peer.ts";
export type { RpcServer } from "./rpc/rpc.ts";
export { type ClusterCallOptions, type ClusterOptions, RpcCluster } from "./rpc/cluster.ts";

// Master-Worker pool
export * as pool from "./pool/mod.ts";
export { type BroadcastAnswer, Pool, type PoolOptions, type PoolStats, type RunOptions } from "./pool/pool.ts";
export type { PoolEvent } from "./pool/events.ts";
export type { NatsPoolOptions } from "./pool/remote.ts";

// Shared memory
export { type CreateOptions, type OpenOptions, SharedMemory } from "./shm/segment.ts";

// Message queues and the file queue: the OS objects (their channels are mq.channel, sysv.channel, fileQueue.channel)
export {
  type Access as MqAccess,
  type Attributes as MqAttributes,
  type CreateOptions as MqCreateOptions,
  MessageQueue,
  type MqMessage,
  type MqReceiveOptions,
  type MqSendOptions,
  type OpenOptions as MqOpenOptions,
} from "./os/mq.ts";
export {
  type SysvCreateOptions,
  type SysvInfo,
  type SysvMessage,
  SysvQueue,
  type SysvReceiveOptions,
  type SysvSendOptions,
} from "./os/sysv.ts";
export { FileQueue, type FileQueueOptions, type FileReceiveOptions } from "./os/file_queue.ts";

// Synchronisation
export {
  type AcquireOptions,
  NamedSemaphore,
  type NamedSemaphoreOptions,
  type Permit,
  SEM_VALUE_MAX,
} from "./sync/named_semaphore.ts";

// Thread and process synchronisation (SharedArrayBuffer or shared memory segment)
export { Mutex, type MutexGuard } from "./sync/mutex.ts";
export { RwLock, type RwLockGuard } from "./sync/rwlock.ts";
export { SpinLock } from "./sync/spinlock.ts";
export { Semaphore, type SemaphoreGuard } from "./sync/semaphore.ts";
export { Condition } from "./sync/condition.ts";
export { Event, type EventOptions } from "./sync/event.ts";
export { Barrier } from "./sync/barrier.ts";
export type { SyncHandle, SyncPrimitive, WaitOptions } from "./sync/primitive.ts";
// Shared state: typed fields at C-compatible offsets (SharedArrayBuffer or shared memory segment)
export {
  type ArrayField,
  type ArraySpec,
  type ArrayTypes,
  type AtomicField,
  type ElementOf,
  type ElementValue,
  type FieldInput,
  type FieldKind,
  type FieldLayout,
  type Fields,
  type FieldSpec,
  type FieldValue,
  type FloatType,
  type IntegerField,
  type IntegerType,
  type NumericType,
  type ScalarType,
  type Schema,
  SharedStruct,
  type Snapshot,
  type StringSpec,
  type StructHandle,
  StructLayout,
  type StructMemory,
} from "./sync/shared_struct.ts";

// Files
export { FileLock, type FileLockGuard, type FileLockOpenOptions, type LockOptions } from "./sync/file_lock.ts";

// Signals
export * as signals from "./signals.ts";

// Owner records of the OS objects ipckit creates (what `ipckit ls` / `ipckit clean` read)
export * as resources from "./resources.ts";

// Whether a process or thread named by a pid/tid and start time still lives (zombie- and pid-reuse-safe)
export * as liveness from "./liveness.ts";

// Live counters of every ipckit process (what `ipckit stats` reads)
export * as stats from "./stats.ts";

// Runtimes
export { runtime, runtimeName } from "./runtimes/detect.ts";
export { runtimeArgv } from "./runtimes/argv.ts";
export type {
  ByteSink,
  ByteStream,
  ChildProcess,
  ExitStatus,
  Runtime,
  RuntimeName,
  Server,
  SignalName,
  SpawnOptions,
} from "./runtimes/runtime.ts";

// Errors
export {
  abortError,
  AlreadyExistsError,
  ClosedError,
  IpcError,
  LaggedError,
  MessageTooLargeError,
  MethodNotFoundError,
  NotFoundError,
  OwnerDiedError,
  PermissionError,
  ProtocolError,
  QueueFullError,
  RemoteError,
  TimeoutError,
  UnsupportedError,
  WorkerDiedError,
} from "./errors.ts";
