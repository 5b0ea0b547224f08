/**
 * Loads the NATS client. `@nats-io/transport-node` (nats.js over `node:net`/`node:tls`) runs on Node, Bun and Deno
 * alike (checked on Node 20, Bun 1.4.5 and Deno 2.9.6), so every runtime uses it; it is an optional peer dependency,
 * loaded on first use only, so users who never touch NATS need not install it.
 *
 * @module
 */
import { UnsupportedError } from "../errors.ts";

/** The part of a nats.js connection ipckit uses (structural: no type import of an optional package). */
export interface NatsConnectionLike {
  publish(subject: string, payload?: Uint8Array, options?: { reply?: string }): void;
  subscribe(subject: string, options?: {
    queue?: string;
    callback?: (error: Error | null, msg: NatsMsgLike) => void;
  }): { unsubscribe(max?: number): void };
  flush(): Promise<void>;
  close(): Promise<void>;
  closed(): Promise<void | Error>;
  isClosed(): boolean;
  status(): AsyncIterable<{ type: string }>;
  readonly info?: { max_payload: number; server_id?: string } | undefined;
  getServer(): string;
}

/** A received NATS message, as far as ipckit reads it. */
export interface NatsMsgLike {
  readonly subject: string;
  readonly reply?: string | undefined;
  readonly data: Uint8Array;
  readonly headers?: { readonly code: number } | undefined;
}

/** What ipckit takes from the client package. */
export interface NatsModule {
  connect(options: Record<string, unknown>): Promise<NatsConnectionLike>;
}

/** The npm package ipckit loads (a variable, so type checkers and bundlers do not require it). */
const PACKAGE = "@nats-io/transport-node";
let loading: Promise<NatsModule> | undefined;

/**
 * The NATS client module.
 *
 * @throws {UnsupportedError} when `@nats-io/transport-node` is not installed.
 */
export function loadNats(): Promise<NatsModule> {
  loading ??= (import(PACKAGE) as Promise<NatsModule>).catch((cause) => {
    loading = undefined;
    throw new UnsupportedError(
      `Cannot use NATS: the client package ${PACKAGE} is not installed (npm install ${PACKAGE})`,
      { cause },
    );
  });
  return loading;
}
