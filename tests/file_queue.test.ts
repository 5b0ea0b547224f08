import { test } from "node:test";
import assert from "node:assert/strict";
import { appendFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import {
  AlreadyExistsError,
  ClosedError,
  FileQueue,
  fileQueue,
  NotFoundError,
  ProtocolError,
  TimeoutError,
} from "../mod.ts";
import { runtime } from "../runtimes/detect.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { encodeLogHeader, encodeRecord, RECORD_HEADER_SIZE, type SkippedRecord } from "../os/file_queue.ts";
import { conformance } from "./conformance/registry.ts";

await conformance("file_queue");

const LONG = { timeout: 180_000 };
const text = new TextEncoder();
const untext = new TextDecoder();
const ROOT = new URL("../", import.meta.url);

/** Runs `fn` in a fresh temporary directory, removed afterwards whatever happens. */
async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const rt = await runtime();
  const dir = await rt.makeTempDir("ipckit-test-fq-");
  try {
    await fn(dir);
  } finally {
    await rt.removeDir(dir);
  }
}

async function child(args: string[], script = "file_queue_producer.ts", rtName = runtime().then((r) => r.name)) {
  const rt = await runtime();
  return rt.spawn([
    ...runtimeArgv(await rtName),
    rt.fromFileUrl(new URL(`./helpers/${script}`, import.meta.url)),
    ...args,
  ], { cwd: rt.fromFileUrl(ROOT), stdio: "null", stderr: "inherit" });
}

test("fileQueue.crc32() is zlib's CRC-32", () => {
  assert.equal(fileQueue.crc32(text.encode("123456789")), 0xcbf43926);
  assert.equal(fileQueue.crc32(new Uint8Array(0)), 0);
});

test("FileQueue.create() makes queue.log and consumer.offset (0600); receive/ack survive a reopen", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    const q = await FileQueue.create(path);
    try {
      for (const f of ["queue.log", "consumer.offset"]) assert.equal(statSync(`${path}/${f}`).mode & 0o777, 0o600);
      for (let i = 0; i < 5; i++) await q.send(text.encode(`m${i}`));
      await q.send(new Uint8Array(0));
      assert.equal(untext.decode(await q.receive()), "m0");
      assert.equal(untext.decode(await q.receive()), "m1");
      await q.ack();
      assert.equal(untext.decode(await q.receive()), "m2"); // received, not acked
    } finally {
      await q.close();
    }
    await using r = await FileQueue.open(path);
    const got = [];
    for (let m = r.tryReceive(); m; m = r.tryReceive()) got.push(untext.decode(m));
    assert.deepEqual(got, ["m2", "m3", "m4", ""]);
    await assert.rejects(r.receive({ timeout: 20 }), TimeoutError);
  }));

test("fileQueue: bad input is refused (non-empty dir, missing queue, non-Uint8Array, second consumer)", () =>
  withDir(async (dir) => {
    mkdirSync(`${dir}/full`);
    writeFileSync(`${dir}/full/x`, "x");
    await assert.rejects(FileQueue.create(`${dir}/full`), AlreadyExistsError);
    writeFileSync(`${dir}/file`, "x");
    await assert.rejects(FileQueue.create(`${dir}/file`), AlreadyExistsError);
    await assert.rejects(FileQueue.open(`${dir}/missing`), NotFoundError);
    await assert.rejects(FileQueue.open(`${dir}/full`), NotFoundError);
    await assert.rejects(FileQueue.create(""), TypeError);
    mkdirSync(`${dir}/empty`);
    await using q = await FileQueue.create(`${dir}/empty`); // an empty directory is accepted
    await assert.rejects(q.send("text" as unknown as Uint8Array), TypeError);
    await assert.rejects(q.send(null as unknown as Uint8Array), TypeError);
    await q.send(text.encode("x"));
    assert.ok(q.tryReceive());
    await using other = await FileQueue.open(`${dir}/empty`);
    await other.send(text.encode("y")); // any handle may send
    assert.throws(() => other.tryReceive(), AlreadyExistsError);
    await assert.rejects(q.receive({ timeout: -1 }), RangeError);
    await assert.rejects(q.receive({ signal: AbortSignal.abort() }), (e: Error) => e.name === "AbortError");
    const pending = assert.rejects(q.receive({ timeout: 60_000 }).then(() => q.receive()), ClosedError);
    await new Promise((r) => setTimeout(r, 10));
    await q.close();
    await q.close();
    await pending;
    await assert.rejects(q.send(text.encode("z")), ClosedError);
  }));

test(
  "fileQueue: producers on deno, bun and node at once; the consumer gets every message exactly once",
  LONG,
  () =>
    withDir(async (dir) => {
      const path = `${dir}/q`;
      const n = 300;
      await using q = await FileQueue.create(path);
      const kids = await Promise.all(
        RUNTIMES.map((r) => child([path, r, String(n)], "file_queue_producer.ts", Promise.resolve(r))),
      );
      const next = new Map(RUNTIMES.map((r) => [r as string, 0]));
      for (let i = 0; i < n * RUNTIMES.length; i++) {
        const [tag, seq] = untext.decode(await q.receive({ timeout: 60_000 })).split(":") as [string, string];
        assert.equal(Number(seq), next.get(tag), `${tag} in order, once`);
        next.set(tag, Number(seq) + 1);
      }
      for (const k of kids) assert.deepEqual(await k.exited, { code: 0, signal: null });
      assert.equal(q.tryReceive(), undefined);
      await q.ack();
    }),
);

for (const peer of RUNTIMES) {
  test(
    `fileQueue: a ${peer} consumer SIGKILLed after acking k of n; a reopen continues at k+1`,
    LONG,
    () =>
      withDir(async (dir) => {
        const path = `${dir}/q`;
        const [n, k] = [20, 7];
        {
          await using q = await FileQueue.create(path);
          for (let i = 0; i < n; i++) await q.send(text.encode(`m${i}`));
        }
        const marker = `${dir}/marker`;
        const c = await child([path, String(k), marker], "file_queue_consumer.ts", Promise.resolve(peer));
        try {
          for (let i = 0; i < 6000; i++) {
            try {
              if (statSync(marker).size > 0) break;
            } catch { /* not yet */ }
            await new Promise((r) => setTimeout(r, 10));
          }
          assert.equal(readFileSync(marker, "utf8"), `m${k}`);
        } finally {
          c.kill("SIGKILL");
          await c.exited;
        }
        await using q = await FileQueue.open(path);
        const got = [];
        for (let m = q.tryReceive(); m; m = q.tryReceive()) got.push(untext.decode(m));
        assert.deepEqual(got, Array.from({ length: n - k }, (_, i) => `m${k + i}`));
      }),
  );
}

test("fileQueue: a torn (uncommitted) record is never delivered, and the next producer removes it", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    await using q = await FileQueue.create(path);
    await q.send(text.encode("one"));
    const size = statSync(`${path}/queue.log`).size;
    const torn = encodeRecord(text.encode("half a record"));
    appendFileSync(`${path}/queue.log`, torn.subarray(0, RECORD_HEADER_SIZE + 4)); // a producer died here
    assert.equal(untext.decode(await q.receive()), "one");
    await assert.rejects(q.receive({ timeout: 80 }), TimeoutError); // waited on, not delivered
    await using p = await FileQueue.open(path);
    await p.send(text.encode("two"));
    assert.equal(statSync(`${path}/queue.log`).size, size + RECORD_HEADER_SIZE + 3);
    assert.equal(untext.decode(await q.receive({ timeout: 1000 })), "two");
  }));

test("fileQueue: a committed record with a bad CRC rejects with ProtocolError and is never delivered", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    await using q = await FileQueue.create(path);
    const log = `${path}/queue.log`;
    const bad = encodeRecord(text.encode("garbage"));
    bad[bad.length - 1]! ^= 0xff;
    appendFileSync(log, bad);
    const fd = readFileSync(log);
    writeFileSync(log, Buffer.concat([encodeLogHeader(fd.length), fd.subarray(24)]));
    await assert.rejects(q.receive({ timeout: 1000 }), ProtocolError);
    await assert.rejects(q.receive({ timeout: 1000 }), ProtocolError); // stays before it
  }));

/** Flips bits of the bytes at `offsets` of a file on disk (XOR `mask`), as damage (or a hostile writer) would. */
function flip(file: string, offsets: number[], mask = 0xff): void {
  const bytes = readFileSync(file);
  for (const o of offsets) bytes[o]! ^= mask;
  writeFileSync(file, bytes);
}

/** Sends `messages` and returns each record's offset in the log. */
async function sendAll(q: FileQueue, messages: string[]): Promise<number[]> {
  const offsets: number[] = [];
  let at = 24;
  for (const m of messages) {
    offsets.push(at);
    await q.send(text.encode(m));
    at += RECORD_HEADER_SIZE + text.encode(m).byteLength;
  }
  return offsets;
}

for (
  const [where, damage, reason, mask] of [
    ["payload", (at: number) => [at + RECORD_HEADER_SIZE + 1], /fails its CRC check/],
    ["magic", (at: number) => [at, at + 2], /has a bad magic number/],
    ["length", (at: number) => [at + 6], /runs past the committed end of the log/],
    ["CRC field", (at: number) => [at + 8], /fails its CRC check/],
    ["length, made shorter", (at: number) => [at + 4], /fails its CRC check/, 0x10],
  ] as const
) {
  test(`fileQueue: a record corrupted in its ${where} on disk is refused; skipCorrupt() loses only it`, () =>
    withDir(async (dir) => {
      const path = `${dir}/q`;
      const messages = ["first", "second, damaged on disk", "third", "fourth", "the fifth and last"];
      {
        await using q = await FileQueue.create(path);
        const offsets = await sendAll(q, messages);
        flip(`${path}/queue.log`, damage(offsets[1]!), mask);
        assert.equal(untext.decode(await q.receive()), "first");
        await assert.rejects(q.receive({ timeout: 1000 }), (e: Error) => {
          assert.ok(e instanceof ProtocolError, `${e.name}: ${e.message}`);
          assert.match(e.message, new RegExp(`the record at offset ${offsets[1]} `));
          assert.match(e.message, reason);
          return true;
        });
        assert.throws(() => q.tryReceive(), ProtocolError, "it stays before the record until told to skip");
        const skipped = q.skipCorrupt();
        assert.equal(skipped?.offset, offsets[1]);
        assert.equal(skipped?.length, offsets[2]! - offsets[1]!, "only that record is skipped");
        assert.match(skipped!.reason, reason);
        assert.equal(q.skipCorrupt(), undefined, "a good record is never skipped");
        const rest = [];
        for (let m = q.tryReceive(); m; m = q.tryReceive()) rest.push(untext.decode(m));
        assert.deepEqual(rest, messages.slice(2));
        await q.ack();
      }
      // The skip was acknowledged with the rest: a reopened consumer does not meet the record again.
      await using again = await FileQueue.open(path);
      assert.equal(again.tryReceive(), undefined);
      assert.equal(again.skipCorrupt(), undefined);
    }));
}

test("fileQueue: with onCorrupt, the consumer skips each corrupt record, reports it, and gets every good one", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    const messages = Array.from({ length: 12 }, (_, i) => `message ${i} `.repeat(i + 1));
    {
      await using q = await FileQueue.create(path);
      const offsets = await sendAll(q, messages);
      // Damage records 3 and 4 (two in a row: a magic and a payload), 7 and the last one (payloads).
      flip(`${path}/queue.log`, [offsets[3]! + 1, offsets[4]! + 20, offsets[7]! + 14, offsets[11]! + 13]);
    }
    const skipped: SkippedRecord[] = [];
    await assert.rejects(FileQueue.open(path, { onCorrupt: "skip" as never }), TypeError);
    await using q = await FileQueue.open(path, { onCorrupt: (s) => skipped.push(s) });
    const got = [];
    for (let m = q.tryReceive(); m; m = q.tryReceive()) got.push(untext.decode(m));
    assert.deepEqual(got, messages.filter((_, i) => ![3, 4, 7, 11].includes(i)));
    // Two corrupt records in a row go in one skip: the scan for the next record that checks out passes both.
    assert.deepEqual(skipped.map((s) => s.reason), [
      "has a bad magic number",
      "fails its CRC check",
      "fails its CRC check",
    ]);
    assert.equal(
      skipped.reduce((n, s) => n + s.length, 0),
      [3, 4, 7, 11].reduce((n, i) => {
        return n + RECORD_HEADER_SIZE + text.encode(messages[i]!).byteLength;
      }, 0),
    );
    await q.send(text.encode("after the damage"));
    assert.equal(untext.decode(await q.receive({ timeout: 1000 })), "after the damage");
  }));

test("fileQueue: a header claiming records past the end of the file is refused without reading past it", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    const log = `${path}/queue.log`;
    {
      await using q = await FileQueue.create(path);
      await q.send(text.encode("good"));
    }
    // A record header that announces 4 GiB - 1 of payload, and a committed end far past the file.
    const record = new Uint8Array(RECORD_HEADER_SIZE);
    const v = new DataView(record.buffer);
    v.setUint32(0, 0x52435049, true);
    v.setUint32(4, 0xffff_ffff, true);
    const body = readFileSync(log).subarray(24);
    writeFileSync(log, Buffer.concat([encodeLogHeader(2 ** 40), body, record]));
    await using q = await FileQueue.open(path);
    assert.equal(untext.decode(q.tryReceive()!), "good");
    assert.throws(() => q.tryReceive(), /the record at offset 40 runs past the committed end of the log/);
    assert.deepEqual(q.skipCorrupt(), {
      offset: 40,
      length: RECORD_HEADER_SIZE,
      reason: "runs past the committed end of the log",
    });
    assert.equal(q.tryReceive(), undefined);
  }));

test("FileQueue.open() of a log with a damaged header rejects with ProtocolError and leaves no descriptor open", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    await (await FileQueue.create(path)).close();
    const { readdirSync } = await import("node:fs");
    const fds = () => readdirSync("/proc/self/fd").length;
    for (const header of [new Uint8Array(0), new Uint8Array(24), encodeLogHeader(24).fill(7, 16, 20)]) {
      writeFileSync(`${path}/queue.log`, header);
      const before = fds();
      for (let i = 0; i < 20; i++) await assert.rejects(FileQueue.open(path), ProtocolError);
      assert.ok(fds() - before < 5, `${fds() - before} descriptors more after 20 refused opens`);
    }
  }));

test("fileQueue with fsync: true sends, receives and acks durably", () =>
  withDir(async (dir) => {
    const path = `${dir}/q`;
    {
      await using q = await FileQueue.create(path, { fsync: true });
      for (let i = 0; i < 20; i++) await q.send(text.encode(`s${i}`));
      for (let i = 0; i < 10; i++) assert.equal(untext.decode(await q.receive()), `s${i}`);
      await q.ack();
    }
    await using q = await FileQueue.open(path, { fsync: true });
    assert.equal(untext.decode(await q.receive()), "s10");
  }));

test(
  "fileQueue: a Python producer (flock + struct + zlib.crc32) appends records TypeScript reads",
  LONG,
  () =>
    withDir(async (dir) => {
      const path = `${dir}/q`;
      await using q = await FileQueue.create(path);
      await q.send(text.encode("from ts"));
      const code = `
import fcntl, os, struct, sys, zlib
log = os.path.join(sys.argv[1], "queue.log")
with open(log, "r+b") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    head = f.read(24)
    magic, version, committed, crc = struct.unpack("<IIQI", head[:20])
    assert magic == 0x51435049 and version == 1 and crc == zlib.crc32(head[8:16])
    f.truncate(committed)  # drop a torn tail, if any
    for payload in [b"from python", b"", bytes(range(256)) * 300]:
        f.seek(committed)
        f.write(struct.pack("<III", 0x52435049, len(payload), zlib.crc32(payload)) + payload)
        committed += 12 + len(payload)
        f.flush()
        c = struct.pack("<Q", committed)
        f.seek(8)
        f.write(c + struct.pack("<I", zlib.crc32(c)))
        f.flush()
    fcntl.flock(f, fcntl.LOCK_UN)
`;
      const rt = await runtime();
      const py = rt.spawn(["python3", "-c", code, path], { stdio: "null", stderr: "inherit" });
      assert.equal((await py.exited).code, 0);
      assert.equal(untext.decode(await q.receive()), "from ts");
      assert.equal(untext.decode(await q.receive({ timeout: 1000 })), "from python");
      assert.equal((await q.receive()).byteLength, 0);
      const big = await q.receive();
      assert.equal(big.byteLength, 256 * 300);
      assert.ok(big.every((b, i) => b === i % 256));
      await q.send(text.encode("after python"));
      assert.equal(untext.decode(await q.receive()), "after python");
    }),
);

test("fileQueue.channel() removes its directory once connected; a second opener is refused", () =>
  withDir(async (dir) => {
    const path = `${dir}/ch`;
    const rt = await runtime();
    const pending = fileQueue.channel(path, { create: true });
    const b = await fileQueue.channel(path, { wait: 10_000 });
    const a = await pending;
    try {
      assert.equal(await rt.exists(path), false);
      await a.send(text.encode("hi"));
      assert.equal(untext.decode(await b.receive({ timeout: 5000 })), "hi");
      await assert.rejects(fileQueue.channel(path), NotFoundError);
      await assert.rejects(fileQueue.channel(`${dir}/ch2`, { create: true, signal: AbortSignal.timeout(50) }));
      assert.equal(await rt.exists(`${dir}/ch2`), false);
    } finally {
      await a.close();
      await b.close();
    }
  }));
