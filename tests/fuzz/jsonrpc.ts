/**
 * Fuzz target: the JSON-RPC server (`rpc/jsonrpc.ts`), fed what an outside client can send: requests and
 * notifications (valid or not in every field), batches (empty, within and over `maxBatch`), params nested past the
 * depth limit, results JSON cannot encode or the channel cannot carry, JSON text with bytes flipped or cut, and noise.
 *
 * The contract, for every input: every reply is a well-formed JSON-RPC 2.0 response (or a batch of them) within the
 * channel's maxMessage; every request that carries an id gets exactly one reply with that id (a batch within
 * `maxBatch` answers each of its requests once; a batch over it gets one error with id null); a last, valid
 * request is answered (the server is not stuck), and nothing is thrown out of the server.
 *
 * @module
 */
import fc from "fast-check";
import { JsonRpcServer } from "../../rpc/jsonrpc.ts";
import { memoryPair } from "../helpers/memory_channel.ts";
import type { FuzzTarget } from "./target.ts";

const MAX_MESSAGE = 4096;
const MAX_BATCH = 6;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

const cyclic: Record<string, unknown> = {};
cyclic.self = cyclic;
const handlers = {
  echo: (x: unknown) => x,
  add: (a: number, b: number) => a + b,
  later: async (x: unknown) => await Promise.resolve(x),
  fail(x: unknown) {
    throw Object.assign(new Error("failed"), { code: typeof x === "number" ? x : undefined, data: x });
  },
  big: () => "b".repeat(MAX_MESSAGE),
  bigint: () => 1n,
  cyclic: () => cyclic,
};

type IdKind = "tag" | "none" | "null" | "number" | "bad";

interface Request {
  version: string | null;
  method: unknown;
  params: unknown;
  hasParams: boolean;
  id: IdKind;
  deep: boolean;
}

const request: fc.Arbitrary<Request> = fc.record({
  version: fc.oneof({ weight: 8, arbitrary: fc.constant("2.0") }, fc.constantFrom("1.0", null, "2")),
  method: fc.oneof(
    { weight: 8, arbitrary: fc.constantFrom(...Object.keys(handlers)) },
    fc.constantFrom("constructor", "__proto__", "nope"),
    fc.jsonValue({ maxDepth: 1 }),
  ),
  params: fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.jsonValue({ maxDepth: 3 }), { maxLength: 3 }) },
    fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
    fc.jsonValue({ maxDepth: 1 }),
  ),
  hasParams: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, fc.constant(false)),
  id: fc.oneof(
    { weight: 6, arbitrary: fc.constant<IdKind>("tag") },
    fc.constantFrom<IdKind>("none", "null", "number", "bad"),
  ),
  deep: fc.oneof({ weight: 19, arbitrary: fc.constant(false) }, fc.constant(true)),
});

type Message =
  | { kind: "one"; request: Request }
  | { kind: "batch"; requests: Request[] }
  | { kind: "mutated"; request: Request; at: number; byte: number; cut: boolean }
  | { kind: "noise"; bytes: Uint8Array };

const message: fc.Arbitrary<Message> = fc.oneof(
  { weight: 5, arbitrary: request.map((r) => ({ kind: "one" as const, request: r })) },
  {
    weight: 2,
    arbitrary: fc.array(request, { maxLength: MAX_BATCH + 2 }).map((rs) => ({ kind: "batch" as const, requests: rs })),
  },
  fc.record({ kind: fc.constant("mutated" as const), request, at: fc.nat(), byte: fc.nat(255), cut: fc.boolean() }),
  fc.record({ kind: fc.constant("noise" as const), bytes: fc.uint8Array({ maxLength: 32 }) }),
);

interface Input {
  messages: Message[];
}

const inputs: fc.Arbitrary<Input> = fc.record({ messages: fc.array(message, { maxLength: 16 }) });

/** Builds a request's JSON value; a tag id gets a fresh unique string, recorded in `tags`. */
function build(r: Request, next: () => string, tags: string[] | undefined): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  if (r.version !== null) o.jsonrpc = r.version;
  o.method = r.method;
  if (r.deep) {
    let deep: unknown = [];
    for (let i = 0; i < 600; i++) deep = [deep];
    o.params = [deep];
  } else if (r.hasParams) o.params = r.params;
  if (r.id === "tag") {
    const tag = next();
    o.id = tag;
    tags?.push(tag);
  } else if (r.id === "null") o.id = null;
  else if (r.id === "number") o.id = 7;
  else if (r.id === "bad") o.id = { x: 1 };
  return o;
}

interface Reply {
  jsonrpc: string;
  id: unknown;
  result?: unknown;
  error?: { code: unknown; message: unknown };
}

function checkReply(r: unknown): asserts r is Reply {
  const o = r as Reply;
  const ok = o !== null && typeof o === "object" && !Array.isArray(o) && o.jsonrpc === "2.0" && "id" in o &&
    ("result" in o) !== ("error" in o) &&
    (!("error" in o) || (Number.isInteger(o.error?.code) && typeof o.error?.message === "string"));
  if (!ok) throw new Error(`a malformed reply: ${JSON.stringify(r)?.slice(0, 200)}`);
}

async function run(input: Input): Promise<void> {
  const [here, there] = memoryPair({ maxMessage: MAX_MESSAGE });
  const server = new JsonRpcServer(here, handlers, { maxBatch: MAX_BATCH, maxInFlight: 8 });
  let n = 0;
  // Due ids end in "!", mutated ones do not: one flipped byte cannot turn a mutated id into a due one.
  const next = () => `q${n++}!`;
  const spare = () => `m${n++}`;
  /** Ids that must each be answered exactly once, and how many times they were. */
  const due = new Map<string, number>();
  try {
    for (const m of input.messages) {
      let bytes: Uint8Array;
      const tags: string[] = [];
      if (m.kind === "one") bytes = utf8.encode(JSON.stringify(build(m.request, next, tags)));
      else if (m.kind === "batch") {
        const batch = m.requests.map((r) => build(r, next, tags));
        bytes = utf8.encode(JSON.stringify(batch));
        if (batch.length > MAX_BATCH) tags.length = 0; // one error with id null answers it
      } else if (m.kind === "mutated") {
        // Its id may or may not survive the mutation: nothing is due, but the reply must still be well-formed.
        bytes = utf8.encode(JSON.stringify(build(m.request, spare, undefined)));
        if (bytes.length > 0) {
          if (m.cut) bytes = bytes.subarray(0, m.at % bytes.length);
          else bytes[m.at % bytes.length] = m.byte;
        }
      } else bytes = m.bytes;
      if (bytes.byteLength > MAX_MESSAGE) continue; // the client's channel would refuse it
      for (const t of tags) due.set(t, 0);
      await there.send(bytes);
    }
    const sentinel = next();
    due.set(sentinel, 0);
    await there.send(utf8.encode(JSON.stringify({ jsonrpc: "2.0", method: "echo", params: [1], id: sentinel })));
    const count = (id: unknown) => {
      if (typeof id === "string" && due.has(id)) {
        const k = due.get(id)! + 1;
        if (k > 1) throw new Error(`request ${id} was answered twice`);
        due.set(id, k);
      }
    };
    // Read until every due request was answered (replies may come in any order: some handlers are async).
    while ([...due.values()].some((k) => k === 0)) {
      const bytes = await there.receive({ timeout: 10_000 }).catch((e: unknown) => {
        const missing = [...due].filter(([, k]) => k === 0).map(([id]) => id);
        throw new Error(`no reply to ${missing.join(", ")}`, { cause: e });
      });
      if (bytes.byteLength > MAX_MESSAGE) throw new Error(`a reply of ${bytes.byteLength} bytes`);
      const reply = JSON.parse(fromUtf8.decode(bytes)) as unknown;
      if (Array.isArray(reply)) {
        if (reply.length === 0) throw new Error("an empty batch reply");
        for (const r of reply) {
          checkReply(r);
          count(r.id);
        }
      } else {
        checkReply(reply);
        count(reply.id);
      }
    }
  } finally {
    await server.close();
    await there.close();
  }
}

/** The JSON-RPC server under hostile requests. */
export const target: FuzzTarget<Input> = { name: "jsonrpc", inputs, run };
