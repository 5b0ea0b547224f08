/**
 * Fuzz target: the RPC message dispatcher (`rpc/peer.ts`), fed what a hostile peer can send on a connection: mostly
 * near-valid protocol messages (every kind, with hostile ids, methods, params, deadlines, windows and credits),
 * some undecodable bytes, with or without the opening HELLO. The peer under test serves a few handlers (sync,
 * async, throwing, streaming, over-size) and has a call of its own out to the hostile side, which may answer it
 * with anything.
 *
 * The contract, for every input: the peer never throws out of its loop (no unhandled rejection), and after the
 * input it either answers a last, valid call (it is alive and not stuck), or it has ended the connection with a
 * `ProtocolError` (an ERROR with id null on the wire first) or a `ClosedError` (the hostile side said BYE). A
 * connection error it sends carries no stack. Its pending call settles.
 *
 * @module
 */
import fc from "fast-check";
import {
  cbor,
  ClosedError,
  MessageTooLargeError,
  MethodNotFoundError,
  ProtocolError,
  QueueFullError,
  RemoteError,
  RpcPeer,
} from "../../mod.ts";
import { memoryPair } from "../helpers/memory_channel.ts";
import type { FuzzTarget } from "./target.ts";

const HELLO = [0, "ipckit-rpc", 1, 0];
const SENTINEL = 2 ** 52 + 7;
/** The id of the call that echoes bytes (a 32-bit head: CALL and RESULT with it are read by hand). */
const ECHO_ID = 2 ** 31 + 11;
const ECHOED = new Uint8Array([1, 2, 3]);

const handlers = {
  echo: (x: unknown) => x,
  add: (a: number, b: number) => a + b,
  later: async (x: unknown) => await Promise.resolve(x),
  fail(message: unknown) {
    throw Object.assign(new Error(String(typeof message)), { data: message });
  },
  async *ticks(n: unknown) {
    for (let i = 0; i < Math.min(Number(n) || 0, 20); i++) yield i;
  },
  big: () => new Uint8Array(8192), // over the channel's maxMessage: the caller gets an ERROR
};

const id = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 6 }) },
  fc.constantFrom(0, -1, 2 ** 53, 1.5, NaN, null, "1", SENTINEL),
  fc.anything(),
);
const method = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...Object.keys(handlers)) },
  fc.constantFrom("constructor", "__proto__", "toString", "hasOwnProperty", ""),
  fc.string({ maxLength: 12 }),
  fc.anything(),
);
const params = fc.oneof(
  { weight: 5, arbitrary: fc.array(fc.anything({ maxDepth: 3 }), { maxLength: 3 }) },
  fc.anything(),
);
const deadline = fc.constantFrom(null, undefined, 0, 1, -1, 1e12, Infinity, NaN, "5");
const count = fc.oneof(
  fc.constantFrom(undefined, 0, 1, 16, 2 ** 20, 2 ** 20 + 1, -1, -(2 ** 31), 1.5, 2 ** 53, NaN, "16", null),
  fc.integer(),
);
const errorBody = fc.oneof(
  fc.record({ name: fc.string({ maxLength: 10 }), message: fc.string({ maxLength: 20 }) }),
  fc.anything(),
);

/** One message a hostile peer sends, as a value (encoded with the codec) or as raw bytes. */
const message: fc.Arbitrary<unknown[] | Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(fc.constant(1), id, method, params, deadline, count) },
  { weight: 2, arbitrary: fc.tuple(fc.constant(2), method, params) },
  fc.tuple(fc.constant(3), id, fc.anything()),
  fc.tuple(fc.constant(4), fc.oneof(id, fc.constant(null)), errorBody),
  fc.tuple(fc.constant(5), id),
  fc.tuple(fc.constant(6), id),
  fc.tuple(fc.constant(7), id, fc.anything()),
  fc.tuple(fc.constant(8), id),
  { weight: 2, arbitrary: fc.tuple(fc.constant(9), id, count) },
  fc.constant([10]),
  fc.tuple(fc.constant(0), fc.constantFrom("ipckit-rpc", "other"), fc.constantFrom(1, 2, "1"), fc.anything()),
  fc.tuple(fc.oneof(fc.integer({ min: -2, max: 40 }), fc.double()), fc.anything()),
  fc.array(fc.anything(), { maxLength: 4 }),
  fc.anything().map((x) => [x]),
  fc.uint8Array({ maxLength: 24 }),
) as fc.Arbitrary<unknown[] | Uint8Array>;

interface Input {
  hello: boolean;
  /** Over a channel that lends its messages where they lie (as shm does): the peer decodes them in place. */
  lend: boolean;
  messages: (unknown[] | Uint8Array)[];
}

const inputs: fc.Arbitrary<Input> = fc.record({
  hello: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, fc.constant(false)),
  lend: fc.boolean(),
  messages: fc.array(message, { maxLength: 24 }),
});

function encode(m: unknown[] | Uint8Array): Uint8Array {
  if (m instanceof Uint8Array) return m;
  try {
    return cbor.encode(m);
  } catch {
    return new Uint8Array([0xff]); // a value the encoder refuses: send a broken item instead
  }
}

const END = Symbol("end");

async function run(input: Input): Promise<void> {
  const [here, there] = memoryPair({ maxMessage: 4096, lend: input.lend });
  const onError: unknown[] = [];
  const peer = new RpcPeer(here, { handlers, maxInFlight: 8, window: 4, onError: (e) => onError.push(e) });
  const asked = peer.callWith("ask", [1], {}).then(() => undefined, (e: unknown) => e);
  try {
    if (input.hello) await there.send(cbor.encode(HELLO));
    for (const m of input.messages) await there.send(encode(m)).catch(() => {});
    // A call that echoes bytes: over a lending channel the area they were read from is overwritten right after, so
    // a decoder that kept a view of it would echo other bytes. Then the last call.
    await there.send(cbor.encode([1, ECHO_ID, "echo", [ECHOED], null, 4])).catch(() => {});
    await there.send(cbor.encode([1, SENTINEL, "echo", ["ping"], null, 4])).catch(() => {});
    const echoIdUsed = input.messages.some((m) => Array.isArray(m) && m[1] === ECHO_ID);
    // Read what the peer sends until the sentinel's answer or the end of the connection.
    let connectionError: Record<string, unknown> | undefined;
    let answered = false;
    for (;;) {
      const bytes = await there.receive({ timeout: 10_000 }).catch((e: unknown) => {
        if (e instanceof ClosedError) return END;
        throw new Error("the peer neither answered the last call nor ended the connection", { cause: e });
      });
      if (bytes === END) break;
      const m = cbor.decode(bytes as Uint8Array) as unknown[];
      if (m[0] === 4 && m[1] === null) connectionError = m[2] as Record<string, unknown>;
      if (m[1] === ECHO_ID && m[0] === 3 && !echoIdUsed) {
        if (!(m[2] instanceof Uint8Array && m[2].join() === ECHOED.join())) {
          throw new Error(`the echo of ${ECHOED} came back as ${String(m[2])}: a view of a lent message was kept`);
        }
      }
      if (m[1] === SENTINEL && (m[0] === 3 || m[0] === 4)) {
        answered = true;
        break;
      }
    }
    if (!answered) {
      // It ended: a ProtocolError it said why, or the hostile side's BYE.
      const ended = await peer.call("after").then(() => new Error("a call after the end resolved"), (e) => e);
      if (!(ended instanceof ProtocolError) && !(ended instanceof ClosedError)) {
        throw new Error(`the peer ended with ${(ended as Error)?.name}: ${(ended as Error)?.message}`);
      }
      if (ended instanceof ProtocolError && !ended.message.startsWith("The peer ended")) {
        if (connectionError?.name !== "ProtocolError" && connectionError?.name !== "MessageTooLargeError") {
          throw new Error(`the peer ended with ProtocolError but sent ${JSON.stringify(connectionError)}`);
        }
      }
    }
    if (connectionError !== undefined && Object.hasOwn(connectionError, "stack")) {
      throw new Error("a connection error went out with a stack");
    }
    for (const e of onError) {
      if (!(e instanceof MethodNotFoundError || e instanceof QueueFullError || e instanceof Error)) {
        throw new Error(`onError got ${String(e)}`);
      }
    }
  } finally {
    await peer.close();
    await there.close();
  }
  // The peer's own call settled one way or another (the close rejects it at the latest).
  const outcome = await asked;
  if (
    outcome !== undefined && !(outcome instanceof RemoteError) && !(outcome instanceof ProtocolError) &&
    !(outcome instanceof ClosedError) && !(outcome instanceof MessageTooLargeError)
  ) {
    throw new Error(`the peer's own call ended with ${String(outcome)}`);
  }
}

/** The RPC dispatcher under hostile messages. */
export const target: FuzzTarget<Input> = { name: "rpc", inputs, run };
