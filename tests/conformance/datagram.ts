/**
 * The conformance suite of datagram channels (`capabilities.datagram`): what the Channel contract keeps for them,
 * and what their capability flags promise, checked in-process and against a child of each runtime.
 *
 * - `reliable && ordered` (Unix datagrams on Linux): every message arrives once, whole and in order, even when
 *   both sides flood;
 * - `!reliable` (UDP): whatever arrives is whole, is a message that was sent, and arrives at most once per send;
 *   loss is allowed, so exchanges use stop-and-wait with retransmission and a sequence number;
 * - every datagram channel: `maxMessage` bounds both directions, a larger arrival ends the receiver's channel with
 *   `MessageTooLargeError`, `close()` is local (the peer is not told), receive timeouts and aborts lose nothing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, MessageTooLargeError, NotFoundError, TimeoutError } from "../../mod.ts";
import type { Channel, RuntimeName } from "../../mod.ts";
import { RUNTIMES } from "../../runtimes/runtime.ts";
import { runtimeName } from "../../runtimes/detect.ts";
import { messages } from "./arbitraries.ts";
import { pattern, randomBytes, sameBytes } from "./data.ts";
import type { Fixture } from "./fixtures.ts";
import { abortsAndTimeouts, assertSame, floodBothWays, withPair } from "./checks.ts";

const LONG = { timeout: 240_000 };
/** How long an unreliable exchange waits for one echo before sending again, and how often it tries. */
const RETRY_MS = 1000;
const TRIES = 30;

/** `payload` behind a 4-byte sequence number. */
function tagged(seq: number, payload: Uint8Array): Uint8Array {
  const m = new Uint8Array(4 + payload.byteLength);
  new DataView(m.buffer).setUint32(0, seq);
  m.set(payload, 4);
  return m;
}

/**
 * Sends each message (tagged with its index) from `from` and waits for it on `to`, sending again after RETRY_MS
 * up to TRIES times: a delivery over a lossy transport. Checks each arrival is whole and was sent; returns how many
 * datagrams arrived in all (at most one per send).
 */
async function stopAndWait(from: Channel, to: Channel, sent: Uint8Array[]): Promise<number> {
  let arrivals = 0;
  let sends = 0;
  for (let i = 0; i < sent.length; i++) {
    const expected = tagged(i, sent[i]!);
    let got = false;
    for (let attempt = 0; attempt < TRIES && !got; attempt++) {
      await from.send(expected);
      sends++;
      const deadline = Date.now() + RETRY_MS;
      while (!got && Date.now() < deadline) {
        const m = await to.receive({ timeout: Math.max(1, deadline - Date.now()) }).catch((e) => {
          if (e instanceof TimeoutError) return undefined;
          throw e;
        });
        if (m === undefined) break;
        arrivals++;
        const seq = new DataView(m.buffer, m.byteOffset).getUint32(0);
        assert.ok(seq <= i, `an arrival carries sequence ${seq}, which was never sent`);
        assert.ok(sameBytes(m, tagged(seq, sent[seq]!)), `datagram ${seq} arrived altered`);
        got = seq === i;
      }
    }
    assert.ok(got, `message ${i} did not get through in ${TRIES} tries`);
  }
  assert.ok(arrivals <= sends, `${arrivals} arrivals for ${sends} sends: something was duplicated`);
  return arrivals;
}

/** Registers the suite for one datagram transport. */
export function datagramConformance(fixture: Fixture): void {
  assert.ok(fixture.capabilities.datagram, `${fixture.name} is tested as a datagram transport`);
  assert.equal(fixture.capabilities.ordered, fixture.capabilities.reliable, "reliable datagrams are ordered here");
  localChecks(fixture);
  for (const peer of RUNTIMES) remoteChecks(fixture, runtimeName(), peer);
}

function localChecks(fixture: Fixture): void {
  const t = fixture.name;
  const { reliable, maxMessage } = fixture.capabilities;
  const large = Math.min(maxMessage - 4, 200_000);

  if (reliable) {
    test(
      `${t}: random message sequences arrive whole, in order, once, in both directions (property)`,
      LONG,
      () =>
        withPair(fixture, async ({ a, b }) => {
          const exchange = async (from: Channel, to: Channel, sent: Uint8Array[]) => {
            const got: Uint8Array[] = [];
            await Promise.all([
              (async () => {
                for (const m of sent) await from.send(m);
              })(),
              (async () => {
                for (let i = 0; i < sent.length; i++) got.push(await to.receive());
              })(),
            ]);
            assertSame(sent, got);
          };
          await fc.assert(
            fc.asyncProperty(
              messages(large),
              messages(large),
              (ab, ba) => Promise.all([exchange(a, b, ab), exchange(b, a, ba)]).then(() => {}),
            ),
            { numRuns: 25 },
          );
        }),
    );

    test(
      `${t}: both sides send many datagrams before either reads: the senders wait, nothing is lost`,
      LONG,
      () =>
        withPair(fixture, async ({ a, b }) => {
          const n = 2000;
          const size = 1024;
          const send = async (c: Channel) => {
            for (let i = 0; i < n; i++) await c.send(pattern(i, size));
          };
          await Promise.all([send(a), send(b)]);
          for (const c of [a, b]) {
            for (let i = 0; i < n; i++) assert.ok(sameBytes(await c.receive(), pattern(i, size)), `datagram ${i}`);
          }
        }),
    );
  } else {
    test(
      `${t}: random messages get through a lossy channel whole, each arrival once per send (property)`,
      LONG,
      () =>
        withPair(fixture, async ({ a, b }) => {
          await fc.assert(
            fc.asyncProperty(messages(large, 12), async (sent) => {
              await stopAndWait(a, b, sent);
            }),
            { numRuns: 20 },
          );
        }),
    );

    test(
      `${t}: a burst arrives with boundaries kept and no duplicates (loss allowed)`,
      LONG,
      () =>
        withPair(fixture, async ({ a, b }) => {
          const n = 200;
          for (let i = 0; i < n; i++) await a.send(tagged(i, pattern(i, 100)));
          const seen = new Set<number>();
          for (;;) {
            const m = await b.receive({ timeout: 2000 }).catch(() => undefined);
            if (m === undefined) break;
            const seq = new DataView(m.buffer, m.byteOffset).getUint32(0);
            assert.ok(seq < n && !seen.has(seq), `datagram ${seq} is unknown or a duplicate`);
            assert.ok(sameBytes(m, tagged(seq, pattern(seq, 100))), `datagram ${seq} arrived altered`);
            seen.add(seq);
          }
          assert.ok(seen.size > 0, "nothing of the burst arrived over loopback");
        }),
    );
  }

  test(
    `${t}: empty and maxMessage-sized datagrams pass; one byte more is rejected; the channel stays usable`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const max = 1000;
        // A datagram of `size` bytes from a to b (over a lossy channel, 4 of them are the stop-and-wait tag).
        const passes = async (size: number) => {
          if (!reliable) return void await stopAndWait(a, b, [randomBytes(size + 1, size - 4)]);
          const m = randomBytes(size + 1, size);
          await a.send(m);
          assert.ok(sameBytes(await b.receive({ timeout: 30_000 }), m));
        };
        await passes(reliable ? 0 : 4);
        await passes(max);
        const err = await a.send(new Uint8Array(max + 1)).then(() => undefined, (e) => e);
        assert.ok(err instanceof MessageTooLargeError, `got ${err}`);
        assert.equal(err.size, max + 1);
        assert.equal(err.limit, max);
        await passes(7);
      }, { maxMessage: 1000 }),
  );

  test(`${t}: the transport's own limit bounds maxMessage (a RangeError above it)`, LONG, async () => {
    let limit = 0;
    await withPair(fixture, ({ a }) => {
      limit = a.capabilities.maxMessage;
      assert.ok(limit >= 1000 && (a as Channel & { maxMessage: number }).maxMessage <= limit);
      return Promise.resolve();
    });
    await assert.rejects(withPair(fixture, () => Promise.resolve(), { maxMessage: limit + 1 }), RangeError);
  });

  test(
    `${t}: close() is local: idempotent, sends and receives reject with ClosedError, the peer is not told`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const pending = assert.rejects(a.receive(), ClosedError);
        await a.close();
        await a.close();
        await pending;
        assert.equal(a.closed, true);
        await assert.rejects(a.send(new Uint8Array(1)), ClosedError);
        await assert.rejects(a.receive(), ClosedError);
        assert.equal(b.closed, false);
        await assert.rejects(b.receive({ timeout: 100 }), TimeoutError);
        if (reliable) {
          // Nobody is bound at the closed end any more: the OS refuses at once.
          await assert.rejects(b.send(new Uint8Array(1)), NotFoundError);
        }
      }),
  );

  test(
    `${t}: receive() honours AbortSignal and timeout without losing the next message`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        await abortsAndTimeouts(a, b);
        if (reliable) {
          await a.send(new Uint8Array([9]));
          assert.deepEqual([...await b.receive({ timeout: 30_000 })], [9]);
        } else {
          await stopAndWait(a, b, [new Uint8Array([9])]);
        }
      }),
  );

  test(
    `${t}: async iteration yields what arrives and ends at the local close`,
    LONG,
    () =>
      withPair(fixture, async ({ a, b }) => {
        const got: Uint8Array[] = [];
        const done = (async () => {
          for await (const m of b) {
            got.push(m);
            if (got.length === 1) await b.close();
          }
        })();
        const m = randomBytes(5, 300);
        if (reliable) await a.send(m);
        else {
          for (let i = 0; i < TRIES && got.length === 0; i++) {
            await a.send(m);
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        await done;
        assert.ok(sameBytes(got[0]!, m));
      }),
  );

  test(`${t}: send() rejects a non-Uint8Array with TypeError`, LONG, () =>
    withPair(fixture, async ({ a }) => {
      await assert.rejects(a.send("text" as unknown as Uint8Array), TypeError);
      await assert.rejects(a.send(null as unknown as Uint8Array), TypeError);
    }));
}

function remoteChecks(fixture: Fixture, here: RuntimeName, peer: RuntimeName): void {
  const t = `${fixture.name} ${here}->${peer}`;
  const { reliable, maxMessage } = fixture.capabilities;
  const large = Math.min(maxMessage - 4, 200_000);

  test(`${t}: a child echoes random messages whole${reliable ? " and in order" : ""}`, LONG, async () => {
    const r = await fixture.remote(peer, []);
    try {
      await fc.assert(
        fc.asyncProperty(messages(large, 20), async (sent) => {
          if (!reliable) return void await stopAndWait(r.channel, r.channel, sent);
          const got: Uint8Array[] = [];
          await Promise.all([
            (async () => {
              for (const m of sent) await r.channel.send(m);
            })(),
            (async () => {
              for (let i = 0; i < sent.length; i++) got.push(await r.channel.receive({ timeout: 60_000 }));
            })(),
          ]);
          assertSame(sent, got);
        }),
        { numRuns: 8 },
      );
    } finally {
      await r.cleanup();
    }
  });

  if (reliable) {
    test(`${t}: both sides send before reading (flood), nothing lost`, LONG, async () => {
      const n = 1500;
      const size = 2048;
      const r = await fixture.remote(peer, ["--flood", `${n}:${size}`]);
      try {
        await floodBothWays(r.channel, n, size);
      } finally {
        await r.cleanup();
      }
    });
  }

  test(
    `${t}: a child with a smaller maxMessage ends its channel with MessageTooLargeError on a larger datagram`,
    LONG,
    async () => {
      const r = await fixture.remote(peer, ["--max", "1000"]);
      try {
        const first = new Uint8Array(1000);
        if (reliable) {
          await r.channel.send(first);
          assert.equal((await r.channel.receive({ timeout: 60_000 })).byteLength, 1000);
        } else {
          await stopAndWait(r.channel, r.channel, [first.subarray(4)]);
        }
        // A lost datagram cannot end anything: over UDP, send until the child has exited.
        for (let i = 0; i < (reliable ? 1 : TRIES); i++) {
          await r.channel.send(new Uint8Array(1001)).catch(() => {});
          const exited = await Promise.race([r.child.exited, new Promise((res) => setTimeout(res, RETRY_MS))]);
          if (exited) break;
        }
        assert.equal((await r.child.exited).code, 3);
      } finally {
        await r.cleanup();
      }
    },
  );
}
