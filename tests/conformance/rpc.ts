/**
 * The RPC conformance suite: RPC over one transport, in-process (a pair) and against a child of each runtime
 * serving `tests/helpers/rpc_handlers.ts` (`peer.ts ... --rpc`). A transport joins with `rpcConformance(fixture)`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, MethodNotFoundError, RemoteError, rpc, TimeoutError } from "../../mod.ts";
import type { Channel, RpcPeer, RuntimeName } from "../../mod.ts";
import { RUNTIMES } from "../../runtimes/runtime.ts";
import { runtimeName } from "../../runtimes/detect.ts";
import type { Fixture } from "./fixtures.ts";
import { handlers } from "../helpers/rpc_handlers.ts";

const LONG = { timeout: 240_000 };
type Handlers = typeof handlers;

async function withRpc(
  fixture: Fixture,
  fn: (client: RpcPeer<Handlers>, server: RpcPeer, a: Channel, b: Channel) => Promise<void>,
): Promise<void> {
  if (typeof fixture.pair === "string") throw new Error("no pair");
  const p = await fixture.pair();
  const server = rpc.serve(p.a, handlers);
  const client = rpc.connect<Handlers>(p.b);
  try {
    await fn(client, server, p.a, p.b);
  } finally {
    await client.close();
    await server.close();
    await p.cleanup();
  }
}

/** One operation of the model test. */
type Op =
  | { op: "add"; a: number; b: number }
  | { op: "echo"; value: unknown }
  | { op: "count"; n: number; take: number }
  | { op: "fail"; message: string }
  | { op: "cancel" }
  | { op: "notify"; x: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("add" as const), a: fc.integer(), b: fc.integer() }),
  fc.record({
    op: fc.constant("echo" as const),
    value: fc.oneof(fc.string(), fc.integer(), fc.uint8Array({ maxLength: 200 }), fc.array(fc.boolean())),
  }),
  fc.record({
    op: fc.constant("count" as const),
    n: fc.integer({ min: 0, max: 60 }),
    take: fc.integer({ min: 0, max: 60 }),
  }),
  fc.record({ op: fc.constant("fail" as const), message: fc.string() }),
  fc.record({ op: fc.constant("cancel" as const) }),
  fc.record({ op: fc.constant("notify" as const), x: fc.integer() }),
);

/** Runs `ops` concurrently on `client` and checks each against the in-memory model of the handlers. */
async function runModel(client: RpcPeer<Handlers>, ops: Op[]): Promise<void> {
  await client.api.reset();
  const notified: number[] = [];
  await Promise.all(ops.map(async (o) => {
    switch (o.op) {
      case "add":
        return assert.equal(await client.api.add(o.a, o.b), o.a + o.b);
      case "echo":
        return assert.deepEqual(await client.api.echo(o.value), o.value);
      case "count": {
        const got: number[] = [];
        for await (const i of await client.api.count(o.n)) {
          if (got.length === o.take) break; // leaving early cancels the stream
          got.push(i);
        }
        return assert.deepEqual(got, Array.from({ length: Math.min(o.n, o.take) }, (_, i) => i));
      }
      case "fail": {
        const e = await client.api.fail(o.message).then(() => undefined, (e) => e);
        assert.ok(e instanceof RemoteError && e.remoteName === "RangeError", `got ${e}`);
        return assert.deepEqual(e.data, { detail: [1, 2, 3] });
      }
      case "cancel": {
        const ac = new AbortController();
        const p = client.callWith("sleep", [60_000], { signal: ac.signal });
        ac.abort();
        return await assert.rejects(p, (e: Error) => e.name === "AbortError");
      }
      case "notify":
        notified.push(o.x);
        return await client.notify("record", o.x);
    }
  }));
  // Messages on one channel keep their order: once this call returns, every notification was handled.
  const stats = await client.api.stats();
  assert.deepEqual([...stats.notified as number[]].sort(), [...notified].sort());
}

/** Registers the suite for one transport. */
export function rpcConformance(fixture: Fixture, options: { numRuns?: number } = {}): void {
  const t = `rpc over ${fixture.name}`;
  const numRuns = options.numRuns ?? 15;

  if (typeof fixture.pair === "string") {
    test(`${t}: in-process checks`, { skip: fixture.pair }, () => {});
  } else {
    test(
      `${t}: random interleavings of calls, streams, errors, cancels and notifications agree with the model (property)`,
      LONG,
      () =>
        withRpc(fixture, async (client) => {
          await fc.assert(fc.asyncProperty(fc.array(opArb, { maxLength: 25 }), (ops) => runModel(client, ops)), {
            numRuns,
          });
        }),
    );

    test(
      `${t}: only own handler functions are callable; prototype names are unknown methods`,
      LONG,
      () =>
        withRpc(fixture, async (client) => {
          for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "nope"]) {
            await assert.rejects(client.call(name), MethodNotFoundError, name);
          }
          // The peer answered all of them: it is still serving.
          assert.equal(await client.api.add(2, 2), 4);
        }),
    );

    test(
      `${t}: a deadline rejects the call with TimeoutError and aborts the handler; cancellation too`,
      LONG,
      () =>
        withRpc(fixture, async (client) => {
          await client.api.reset();
          await assert.rejects(client.callWith("sleep", [60_000], { timeout: 50 }), TimeoutError);
          const ac = new AbortController();
          const p = client.callWith("sleep", [60_000], { signal: ac.signal });
          setTimeout(() => ac.abort(), 20);
          await assert.rejects(p, (e: Error) => e.name === "AbortError");
          // Both handlers saw their signal abort (the cancel crossed the wire).
          for (let i = 0; i < 200 && (await client.api.stats()).cancelled < 2; i++) {
            await new Promise((r) => setTimeout(r, 20));
          }
          assert.equal((await client.api.stats()).cancelled, 2);
        }),
    );

    test(
      `${t}: a stream is pulled no further than the caller's credit (backpressure)`,
      LONG,
      () =>
        withRpc(fixture, async (client) => {
          await client.api.reset();
          const stream = await client.api.count(1000);
          const it = stream[Symbol.asyncIterator]();
          for (let i = 0; i < 5; i++) assert.deepEqual(await it.next(), { done: false, value: i });
          await new Promise((r) => setTimeout(r, 100));
          const produced = (await client.api.stats()).produced;
          assert.ok(produced <= 5 + 16 + 1, `the handler produced ${produced} items for 5 consumed`);
          await it.return!();
        }),
    );

    test(`${t}: hostile payloads cannot pollute prototypes`, LONG, () =>
      withRpc(fixture, async (client) => {
        const hostile = JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": {"prototype": {"polluted": 1}}}');
        const back = await client.api.echo(hostile) as Record<string, unknown>;
        assert.equal(({} as Record<string, unknown>).polluted, undefined);
        assert.equal(await client.api.polluted(), false);
        assert.equal(Object.getPrototypeOf(back), Object.prototype, "the decoded object keeps its prototype");
      }));

    test(`${t}: closing either side rejects pending calls with ClosedError`, LONG, async () => {
      if (typeof fixture.pair === "string") return;
      const p = await fixture.pair();
      const server = rpc.serve(p.a, handlers);
      const client = rpc.connect<Handlers>(p.b);
      try {
        const pending = assert.rejects(client.api.sleep(60_000), ClosedError);
        await client.api.add(1, 1); // the sleep has started
        await server.close();
        await pending;
        await assert.rejects(client.api.add(1, 1), ClosedError);
      } finally {
        await client.close();
        await server.close();
        await p.cleanup();
      }
    });
  }

  for (const peer of RUNTIMES) remoteCheck(fixture, runtimeName(), peer, numRuns);
}

function remoteCheck(fixture: Fixture, here: RuntimeName, peer: RuntimeName, numRuns: number): void {
  test(
    `rpc over ${fixture.name} ${here}->${peer}: a child serves calls, streams, errors and cancels (property)`,
    LONG,
    async () => {
      const r = await fixture.remote(peer, ["--rpc"]);
      const client = rpc.connect<Handlers>(r.channel);
      try {
        await fc.assert(fc.asyncProperty(fc.array(opArb, { maxLength: 20 }), (ops) => runModel(client, ops)), {
          numRuns: Math.ceil(numRuns / 2),
        });
        await assert.rejects(client.call("constructor"), MethodNotFoundError);
      } finally {
        await client.close();
        await r.cleanup();
      }
    },
  );
}
