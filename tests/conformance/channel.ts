/**
 * The Channel conformance suite: the contract of `transports/channel.ts`, checked for one transport on the
 * runtime running the tests (in-process pairs) and against a child process of each runtime (cross-process).
 * A transport joins with one line: `channelConformance(fixture)`.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, MessageTooLargeError, ProtocolError } from "../../mod.ts";
import type { Channel, RuntimeName } from "../../mod.ts";
import { RUNTIMES } from "../../runtimes/runtime.ts";
import { runtimeName } from "../../runtimes/detect.ts";
import { messages } from "./arbitraries.ts";
import { pattern, randomBytes, sameBytes } from "./data.ts";
import type { Fixture } from "./fixtures.ts";
import { abortsAndTimeouts, assertSame, floodBothWays, withPair } from "./checks.ts";

const LONG = { timeout: 240_000 };
const MIB = 1024 * 1024;

/** Sends all of `sent` while receiving as many messages on `to`; returns what arrived. */
async function exchange(from: Channel, to: Channel, sent: Uint8Array[]): Promise<Uint8Array[]> {
  const got: Uint8Array[] = [];
  await Promise.all([
    (async () => {
      for (const m of sent) await from.send(m);
    })(),
    (async () => {
      for (let i = 0; i < sent.length; i++) got.push(await to.receive());
    })(),
  ]);
  return got;
}

/**
 * Cases a transport's fixture may switch off, each by the reason it cannot apply (shown as the skipped case's
 * reason, never skipped silently). A fixture module declares them beside its `Fixture` fields.
 */
export interface ChannelCases {
  /**
   * Why a receiver cannot reject a message over its own `maxMessage` (contract item 4, second half): the transport
   * has no receive-side limit below what its sender already enforces. Switches off the child `--max` case.
   */
  readonly noReceiveLimit?: string;
}

/** Registers the suite for one transport. */
export function channelConformance(fixture: Fixture & ChannelCases): void {
  const t = fixture.name;
  const here = runtimeName();

  if (typeof fixture.pair === "string") {
    test(`${t}: in-process checks`, { skip: fixture.pair }, () => {});
  } else {
    localChecks(fixture);
  }
  for (const peer of RUNTIMES) remoteChecks(fixture, here, peer);
  rawChecks(fixture);
  assert.ok(fixture.capabilities.ordered && fixture.capabilities.reliable, `${t} is tested as ordered and reliable`);
}

function localChecks(fixture: Fixture): void {
  const t = fixture.name;

  test(
    `${t}: random message sequences arrive whole, in order, once, in both directions (property)`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        await fc.assert(
          fc.asyncProperty(messages(4 * MIB), messages(4 * MIB), async (ab, ba) => {
            const [gotB, gotA] = await Promise.all([exchange(a, b, ab), exchange(b, a, ba)]);
            assertSame(ab, gotB);
            assertSame(ba, gotA);
          }),
          { numRuns: 25 },
        );
      }),
  );

  test(
    `${t}: both sides send many messages before either reads, without deadlock`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const n = 2000;
        const size = 1024; // 2 MiB each way: more than the kernel buffers, less than highWaterMark
        const send = async (c: Channel) => {
          for (let i = 0; i < n; i++) await c.send(pattern(i, size));
        };
        await Promise.all([send(a), send(b)]);
        for (const c of [a, b]) {
          for (let i = 0; i < n; i++) assert.ok(sameBytes(await c.receive(), pattern(i, size)), `message ${i}`);
        }
      }),
  );

  test(
    `${t}: empty and maxMessage-sized messages pass; one byte more is rejected and the channel stays usable`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const max = MIB;
        await a.send(new Uint8Array(0));
        assert.equal((await b.receive()).byteLength, 0);
        const full = randomBytes(7, max);
        await a.send(full);
        assert.ok(sameBytes(await b.receive(), full));
        const err = await a.send(new Uint8Array(max + 1)).then(() => undefined, (e) => e);
        assert.ok(err instanceof MessageTooLargeError, `got ${err}`);
        assert.equal(err.size, max + 1);
        assert.equal(err.limit, max);
        await a.send(new Uint8Array([1, 2, 3]));
        assert.deepEqual([...await b.receive()], [1, 2, 3]);
      }, { maxMessage: MIB }),
  );

  test(
    `${t}: close() delivers every message sent before it, then the peer's receive() rejects with ClosedError`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const sent = [1, 0, 70_000, 5].map((n, i) => randomBytes(i + 1, n));
        for (const m of sent) void a.send(m); // not awaited: close() must still deliver them
        await a.close();
        await a.close(); // idempotent
        assert.equal(a.closed, true);
        const got = [];
        for (let i = 0; i < sent.length; i++) got.push(await b.receive());
        assertSame(sent, got);
        await assert.rejects(b.receive(), ClosedError);
        await assert.rejects(b.receive(), ClosedError);
        await assert.rejects(b.send(new Uint8Array(1)), ClosedError);
        assert.equal(b.closed, true);
      }),
  );

  test(
    `${t}: send() after close() rejects with ClosedError, and a pending receive() rejects on close()`,
    LONG,
    () =>
      withPair(fixture, async ({ a }) => {
        const pending = assert.rejects(a.receive(), ClosedError);
        await a.close();
        await pending;
        await assert.rejects(a.send(new Uint8Array(1)), ClosedError);
        await assert.rejects(a.receive(), ClosedError);
      }),
  );

  test(
    `${t}: receive() honours AbortSignal and timeout without losing the next message`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        await abortsAndTimeouts(a, b);
        await a.send(new Uint8Array([9]));
        assert.deepEqual([...await b.receive({ timeout: 30_000 })], [9]);
      }),
  );

  test(
    `${t}: async iteration yields every message and ends at the peer's close`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const sent = [3, 0, 1000].map((n, i) => randomBytes(i + 9, n));
        for (const m of sent) await a.send(m);
        await a.close();
        const got = [];
        for await (const m of b) got.push(m);
        assertSame(sent, got);
      }),
  );

  test(`${t}: send() rejects a non-Uint8Array with TypeError`, LONG, () =>
    withPair(fixture, async ({ a }) => {
      await assert.rejects(a.send("text" as unknown as Uint8Array), TypeError);
      await assert.rejects(a.send(null as unknown as Uint8Array), TypeError);
    }));
}

function remoteChecks(fixture: Fixture & ChannelCases, here: RuntimeName, peer: RuntimeName): void {
  const t = `${fixture.name} ${here}->${peer}`;

  // One child for both (a child costs a process start per transport, pair and runner): it floods first, then echoes.
  test(
    `${t}: both sides send before reading (flood), nothing lost; then random sequences echo whole and in order, and both sides close cleanly`,
    LONG,
    async () => {
      const n = 1500;
      const size = 2048;
      const r = await fixture.remote(peer, ["--flood", `${n}:${size}`]);
      try {
        await floodBothWays(r.channel, n, size);
        await fc.assert(
          fc.asyncProperty(messages(3 * MIB, 20), async (sent) => {
            assertSame(sent, await exchange(r.channel, r.channel, sent));
          }),
          { numRuns: 8 },
        );
        // Many in flight at once, both directions busy.
        const burst = Array.from({ length: 500 }, (_, i) => pattern(i, i % 3000));
        assertSame(burst, await exchange(r.channel, r.channel, burst));
        await r.channel.close();
        await assert.rejects(r.channel.send(new Uint8Array(1)), ClosedError);
        assert.deepEqual(await r.child.exited, { code: 0, signal: null });
      } finally {
        await r.cleanup();
      }
    },
  );

  test(`${t}: a child with a smaller maxMessage rejects a larger frame; the parent sees the end`, {
    ...LONG,
    skip: fixture.noReceiveLimit ?? false,
  }, async () => {
    const r = await fixture.remote(peer, ["--max", "1000"]);
    try {
      await r.channel.send(new Uint8Array(1000));
      assert.equal((await r.channel.receive({ timeout: 60_000 })).byteLength, 1000);
      await r.channel.send(new Uint8Array(1001));
      await assert.rejects(r.channel.receive({ timeout: 60_000 }), ClosedError);
      assert.equal((await r.child.exited).code, 3);
    } finally {
      await r.cleanup();
    }
  });

  test(`${t}: a killed child ends the channel with ClosedError, never a hang`, LONG, async () => {
    const r = await fixture.remote(peer, []);
    try {
      await r.channel.send(new Uint8Array([1]));
      await r.channel.receive({ timeout: 60_000 });
      r.child.kill("SIGKILL");
      await r.child.exited;
      await assert.rejects(r.channel.receive({ timeout: 60_000 }), ClosedError);
    } finally {
      await r.cleanup();
    }
  });
}

function rawChecks(fixture: Fixture): void {
  const t = fixture.name;
  const raw = fixture.raw;
  if (typeof raw === "string") {
    test(`${t}: raw byte-level checks`, { skip: raw }, () => {});
    return;
  }

  test(`${t}: a raw peer's well-formed frames are read exactly (byte-level framing)`, LONG, async () => {
    const r = await raw();
    try {
      await r.write(new Uint8Array([0, 0, 0, 3, 97, 98, 99, 0, 0, 0, 0, 0, 0]));
      await r.write(new Uint8Array([0, 1, 120]));
      await r.end();
      assert.deepEqual([...await r.channel.receive({ timeout: 60_000 })], [97, 98, 99]);
      assert.equal((await r.channel.receive({ timeout: 60_000 })).byteLength, 0);
      assert.deepEqual([...await r.channel.receive({ timeout: 60_000 })], [120]);
      await assert.rejects(r.channel.receive({ timeout: 60_000 }), ClosedError);
    } finally {
      await r.cleanup();
    }
  });

  test(`${t}: a stream truncated inside a frame rejects with ProtocolError`, LONG, async () => {
    const r = await raw();
    try {
      await r.write(new Uint8Array([0, 0, 0, 10, 1, 2, 3]));
      await r.end();
      await assert.rejects(r.channel.receive({ timeout: 60_000 }), ProtocolError);
      await assert.rejects(r.channel.receive({ timeout: 60_000 }), ProtocolError);
    } finally {
      await r.cleanup();
    }
  });

  test(`${t}: a stream truncated inside a length rejects with ProtocolError`, LONG, async () => {
    const r = await raw();
    try {
      await r.write(new Uint8Array([0, 0]));
      await r.end();
      await assert.rejects(r.channel.receive({ timeout: 60_000 }), ProtocolError);
    } finally {
      await r.cleanup();
    }
  });

  test(
    `${t}: a bad length (over maxMessage) rejects with MessageTooLargeError, a ProtocolError, and ends the channel`,
    LONG,
    async () => {
      const r = await raw({ maxMessage: 1024 });
      try {
        await r.write(new Uint8Array([0xff, 0xff, 0xff, 0xf0, 1, 2, 3]));
        await r.end();
        const e = await r.channel.receive({ timeout: 60_000 }).then(() => undefined, (e) => e);
        assert.ok(e instanceof MessageTooLargeError, `got ${e}`);
        assert.ok(e instanceof ProtocolError, "a bad length is a ProtocolError too");
        assert.equal(e.size, 0xfffffff0);
        assert.equal(e.limit, 1024);
        await assert.rejects(r.channel.send(new Uint8Array(1)), ClosedError);
      } finally {
        await r.cleanup();
      }
    },
  );
}
