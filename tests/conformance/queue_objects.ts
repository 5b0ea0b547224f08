/**
 * The queue-object conformance suite: one list of behaviours that every OS queue object (`os/mq.ts`,
 * `os/sysv.ts`, `os/file_queue.ts`) keeps, run once per fixture of `queue_object_fixtures.ts`:
 *
 * - messages come out in the order they went in, byte for byte (fast-check, with a waiting sender);
 * - an empty message and one of the largest size round-trip; one over the limit is refused with
 *   `MessageTooLargeError` and nothing is sent;
 * - an empty queue: `tryReceive()` gives undefined, `receive({ timeout })` rejects with `TimeoutError` (a bad
 *   timeout with `RangeError`), and a message sent later reaches a pending `receive()`;
 * - a full queue: `trySend()` gives false, `send({ timeout })` rejects with `TimeoutError` without sending, and a
 *   waiting `send()` goes through once there is room (or the fixture says why the object is never full);
 * - `AbortSignal` ends a waiting `receive()` or `send()` without losing a message;
 * - `close()` is idempotent, ends a pending `receive()` and makes later calls reject with `ClosedError`; close is
 *   not remove: the object lives on for other handles;
 * - remove (unlink / `IPC_RMID` / the directory) makes the object gone for everyone;
 * - a child process of each runtime opens the object by its address and sends; this process receives.
 *
 * A case that cannot apply to an object is switched off by a string in the fixture that says why, never silently.
 *
 * @module
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { ClosedError, MessageTooLargeError, NotFoundError, TimeoutError } from "../../mod.ts";
import { runtime } from "../../runtimes/detect.ts";
import { runtimeArgv } from "../../runtimes/argv.ts";
import { RUNTIMES } from "../../runtimes/runtime.ts";

/** The common shape of one handle on a queue object, as the suite drives it. */
export interface QueueObject {
  send(data: Uint8Array, options?: { timeout?: number; signal?: AbortSignal }): Promise<void>;
  receive(options?: { timeout?: number; signal?: AbortSignal }): Promise<Uint8Array>;
  tryReceive(): Uint8Array | undefined;
  /** Sends without waiting: false when full. */
  trySend(data: Uint8Array): boolean;
  close(): void | Promise<void>;
  readonly closed: boolean;
}

/** One kind of queue object. */
export interface QueueObjectFixture {
  /** The kind, for test names: `POSIX mq`, `System V`, `file queue`. */
  readonly name: string;
  /** Makes a new object; `address` names it for {@linkcode open}, {@linkcode remove} and child processes. */
  make(): Promise<{ queue: QueueObject; address: string }>;
  /** Opens another handle on the object at `address` (as another process would). */
  open(address: string): Promise<QueueObject>;
  /** Removes the object at `address` (its name, or the object where it has none). */
  remove(address: string): Promise<void>;
  /** The largest message the suite round-trips. */
  readonly largest: number;
  /** A message over the limit, or why the suite sends none. */
  readonly tooLarge: number | string;
  /** How many 1-byte messages fill a new object, or why it is never full. */
  readonly capacity: number | string;
  /** What a child process gives `tests/helpers/queue_object_child.ts` to name this kind. */
  readonly childKind: string;
}

const LONG = { timeout: 120_000 };
const isAbort = (e: Error) => e.name === "AbortError";
const text = new TextEncoder();
const untext = new TextDecoder();
const CHILD = new URL("../helpers/queue_object_child.ts", import.meta.url);

/** Whether the object at `address` can be opened now. */
async function exists(f: QueueObjectFixture, address: string): Promise<boolean> {
  try {
    await (await f.open(address)).close();
    return true;
  } catch (e) {
    if (e instanceof NotFoundError) return false;
    throw e;
  }
}

/** Runs `fn` with a new object, closed and removed afterwards whatever happens. */
async function withQueue(
  f: QueueObjectFixture,
  fn: (q: QueueObject, address: string) => Promise<void>,
): Promise<void> {
  const { queue, address } = await f.make();
  try {
    await fn(queue, address);
  } finally {
    await queue.close();
    await f.remove(address).catch(() => {});
  }
}

/** Registers the suite's cases for one fixture. */
export function queueObjectConformance(f: QueueObjectFixture): void {
  const named = (what: string) => `${f.name}: ${what}`;

  test(named("messages come out in order, byte for byte, also past a full queue"), LONG, async () => {
    const seed = Date.now() | 0;
    console.log(`${f.name} queue order: fast-check seed ${seed}`);
    const messages = fc.array(fc.uint8Array({ maxLength: Math.min(f.largest, 300) }), { maxLength: 24 });
    await withQueue(f, async (q) => {
      await fc.assert(
        fc.asyncProperty(messages, async (sent) => {
          const sending = (async () => {
            for (const m of sent) await q.send(m, { timeout: 60_000 });
          })();
          const got = [];
          for (let i = 0; i < sent.length; i++) got.push(await q.receive({ timeout: 60_000 }));
          await sending;
          assert.deepEqual(got.map((m) => [...m]), sent.map((m) => [...m]));
          assert.equal(q.tryReceive(), undefined);
        }),
        { numRuns: 15, seed },
      );
    });
  });

  test(
    named("an empty and a largest message round-trip; a larger one is refused"),
    LONG,
    () =>
      withQueue(f, async (q) => {
        const largest = new Uint8Array(f.largest).map((_, i) => i * 7);
        await q.send(new Uint8Array(0));
        await q.send(largest);
        assert.equal((await q.receive({ timeout: 60_000 })).byteLength, 0);
        assert.deepEqual(await q.receive({ timeout: 60_000 }), largest);
        if (typeof f.tooLarge === "string") return console.log(`${f.name}: no oversize message: ${f.tooLarge}`);
        await assert.rejects(q.send(new Uint8Array(f.tooLarge)), MessageTooLargeError);
        assert.equal(q.tryReceive(), undefined, "nothing of the refused message was sent");
      }),
  );

  test(
    named("an empty queue: tryReceive() gives undefined, receive() times out, a later message arrives"),
    LONG,
    () =>
      withQueue(f, async (q, address) => {
        assert.equal(q.tryReceive(), undefined);
        await assert.rejects(q.receive({ timeout: 0 }), TimeoutError);
        await assert.rejects(q.receive({ timeout: 100 }), TimeoutError);
        await assert.rejects(q.receive({ timeout: -1 }), RangeError);
        const pending = q.receive({ timeout: 60_000 });
        const other = await f.open(address);
        try {
          await other.send(text.encode("late"));
        } finally {
          await other.close();
        }
        assert.equal(untext.decode(await pending), "late");
      }),
  );

  test(
    named("a full queue: trySend() gives false, send() times out without sending, then waits for room"),
    LONG,
    () =>
      withQueue(f, async (q) => {
        if (typeof f.capacity === "string") return console.log(`${f.name}: never full: ${f.capacity}`);
        for (let i = 0; i < f.capacity; i++) assert.equal(q.trySend(new Uint8Array([i & 0xff])), true);
        assert.equal(q.trySend(new Uint8Array([0xff])), false);
        await assert.rejects(q.send(new Uint8Array([0xff]), { timeout: 100 }), TimeoutError);
        const waiting = q.send(new Uint8Array([f.capacity & 0xff]), { timeout: 60_000 });
        assert.deepEqual([...q.tryReceive()!], [0]);
        await waiting;
        const got = [];
        for (let m = q.tryReceive(); m; m = q.tryReceive()) got.push(m[0]);
        const want = Array.from({ length: f.capacity }, (_, i) => (i + 1) & 0xff);
        assert.deepEqual(got, want, "the timed-out message was never sent");
      }),
  );

  test(
    named("AbortSignal ends a waiting receive() or send() without losing a message"),
    LONG,
    () =>
      withQueue(f, async (q) => {
        await assert.rejects(q.receive({ signal: AbortSignal.abort() }), isAbort);
        const ac = new AbortController();
        const pending = assert.rejects(q.receive({ signal: ac.signal }), isAbort);
        setTimeout(() => ac.abort(), 30);
        await pending;
        await assert.rejects(q.send(new Uint8Array([1]), { signal: AbortSignal.abort() }), isAbort);
        assert.equal(q.tryReceive(), undefined, "the aborted send sent nothing");
        await q.send(new Uint8Array([7]));
        assert.deepEqual([...await q.receive({ timeout: 60_000 })], [7]);
      }),
  );

  test(
    named("close() is idempotent, ends a pending receive(), and later calls reject with ClosedError"),
    LONG,
    () =>
      withQueue(f, async (q, address) => {
        const pending = assert.rejects(q.receive(), ClosedError);
        await new Promise((r) => setTimeout(r, 20));
        await q.close();
        await q.close();
        await pending;
        assert.equal(q.closed, true);
        await assert.rejects(q.receive(), ClosedError);
        await assert.rejects(q.send(new Uint8Array([1])), ClosedError);
        assert.throws(() => q.tryReceive(), ClosedError);
        // Close is not remove: the object lives on for other handles.
        const other = await f.open(address);
        try {
          await other.send(new Uint8Array([5]));
          assert.deepEqual([...await other.receive({ timeout: 60_000 })], [5]);
        } finally {
          await other.close();
        }
      }),
  );

  test(
    named("removing the object makes it gone for every later open"),
    LONG,
    () =>
      withQueue(f, async (_q, address) => {
        assert.equal(await exists(f, address), true);
        await f.remove(address);
        assert.equal(await exists(f, address), false);
        await assert.rejects(f.open(address), NotFoundError);
      }),
  );

  for (const peer of RUNTIMES) {
    test(
      named(`a ${peer} child opens the object by its address and sends; this process receives`),
      LONG,
      () =>
        withQueue(f, async (q, address) => {
          const rt = await runtime();
          const child = rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(CHILD)), f.childKind, address], {
            cwd: rt.fromFileUrl(new URL("../../", import.meta.url)),
            stdio: "null",
            stderr: "inherit",
          });
          try {
            const first = untext.decode(await q.receive({ timeout: 60_000 }));
            const second = untext.decode(await q.receive({ timeout: 60_000 }));
            assert.deepEqual([first, second], [`hello from ${peer}`, `${peer} done`]);
            assert.deepEqual(await child.exited, { code: 0, signal: null });
          } finally {
            child.kill("SIGKILL");
            await child.exited;
          }
        }),
    );
  }
}
