/**
 * Every fuzz target, one line each: `tests/fuzz.test.ts` runs each briefly in `npm test`, `scripts/fuzz.ts`
 * (`npm run fuzz`) runs each a million times or more. A new decoder joins both by one line here.
 *
 * @module
 */
import type { FuzzTarget } from "./target.ts";

/** Loaders, so that a run of one target does not load (or start) the others. */
export const TARGETS: Readonly<Record<string, () => Promise<FuzzTarget<never>>>> = {
  ring: async () => (await import("./ring.ts")).target as FuzzTarget<never>,
  records: async () => (await import("./records.ts")).target as FuzzTarget<never>,
  cbor: async () => (await import("./cbor.ts")).target as FuzzTarget<never>,
  nats: async () => (await import("./nats.ts")).target as FuzzTarget<never>,
  framing: async () => (await import("./framing.ts")).target as FuzzTarget<never>,
  lines: async () => (await import("./lines.ts")).target as FuzzTarget<never>,
  file_queue: async () => (await import("./file_queue.ts")).target as FuzzTarget<never>,
  rpc: async () => (await import("./rpc.ts")).target as FuzzTarget<never>,
  jsonrpc: async () => (await import("./jsonrpc.ts")).target as FuzzTarget<never>,
  auth: async () => (await import("./auth.ts")).target as FuzzTarget<never>,
};
