import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeFrame, FrameDecoder, HEADER_SIZE } from "../transports/framing.ts";
import { MessageTooLargeError, ProtocolError } from "../errors.ts";

const NUM_RUNS = 100;
const text = new TextEncoder();

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

/** The stream cut at `points` (any positions from 0 to its length, duplicates allowed: they give empty chunks). */
function split(stream: Uint8Array, points: readonly number[]): Uint8Array[] {
  const cuts = [...points.map((p) => p % (stream.byteLength + 1)), stream.byteLength].sort((a, b) => a - b);
  const chunks: Uint8Array[] = [];
  let from = 0;
  for (const to of cuts) {
    chunks.push(stream.slice(from, to));
    from = to;
  }
  return chunks;
}

/** A decoder that collects its payloads. */
function collector(maxMessage = 1 << 20): { decoder: FrameDecoder; frames: Uint8Array[] } {
  const frames: Uint8Array[] = [];
  return { decoder: new FrameDecoder(maxMessage, (p) => frames.push(p)), frames };
}

/** The end offset of each frame in the encoding of `messages`. */
function frameEnds(messages: readonly Uint8Array[]): number[] {
  let off = 0;
  return messages.map((m) => (off += HEADER_SIZE + m.byteLength));
}

// Messages with many empty and small ones, and a few that span several chunks.
const messageArb = fc.oneof(
  { weight: 1, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 16 }) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 600 }) },
);
const messagesArb = fc.array(messageArb, { maxLength: 20 });
const pointsArb = fc.array(fc.nat(), { maxLength: 30 });

test('encodeFrame("abc") is the bytes 00 00 00 03 61 62 63', () => {
  assert.deepEqual([...encodeFrame(text.encode("abc"))], [0, 0, 0, 3, 0x61, 0x62, 0x63]);
});

test("encodeFrame of an empty message is the 4-byte frame 00 00 00 00", () => {
  assert.deepEqual([...encodeFrame(new Uint8Array(0))], [0, 0, 0, 0]);
});

test("encodeFrame writes the length big-endian in 4 bytes", () => {
  const frame = encodeFrame(new Uint8Array(0x01_02_03));
  assert.equal(frame.byteLength, HEADER_SIZE + 0x01_02_03);
  assert.deepEqual([...frame.subarray(0, HEADER_SIZE)], [0x00, 0x01, 0x02, 0x03]);
});

test("encodeFrame copies the payload, so the caller may reuse it at once", () => {
  const payload = text.encode("xyz");
  const frame = encodeFrame(payload);
  payload.fill(0);
  assert.deepEqual([...frame], [0, 0, 0, 3, 0x78, 0x79, 0x7a]);
});

test("FrameDecoder decodes 00 00 00 03 61 62 63 to the message abc", () => {
  const { decoder, frames } = collector();
  decoder.push(Uint8Array.of(0, 0, 0, 3, 0x61, 0x62, 0x63), true);
  assert.deepEqual(frames, [text.encode("abc")]);
  assert.equal(decoder.idle, true);
  decoder.finish();
});

test("FrameDecoder delivers empty messages, one per 00 00 00 00 frame", () => {
  const { decoder, frames } = collector();
  decoder.push(Uint8Array.of(0, 0, 0, 0, 0, 0), false);
  decoder.push(Uint8Array.of(0, 1, 0x7f, 0, 0), false);
  decoder.push(Uint8Array.of(0, 0), false);
  assert.deepEqual(frames.map((f) => [...f]), [[], [0x7f], []]);
  decoder.finish();
});

test("FrameDecoder hands out a payload inside one owned chunk as a view of that chunk", () => {
  const { decoder, frames } = collector();
  const chunk = concat([encodeFrame(text.encode("hello")), encodeFrame(text.encode("world"))]);
  decoder.push(chunk, true);
  assert.equal(frames.length, 2);
  for (const f of frames) assert.equal(f.buffer, chunk.buffer);
  assert.deepEqual(frames, [text.encode("hello"), text.encode("world")]);
});

test("FrameDecoder copies a payload inside one non-owned chunk", () => {
  const { decoder, frames } = collector();
  const chunk = encodeFrame(text.encode("hello"));
  decoder.push(chunk, false);
  chunk.fill(0xee);
  assert.equal(frames.length, 1);
  // A copy (pooled memory may share an ArrayBuffer with the chunk, but never its bytes).
  const f = frames[0]!;
  const chunkStart = chunk.byteOffset;
  const chunkEnd = chunk.byteOffset + chunk.byteLength;
  assert.ok(f.buffer !== chunk.buffer || f.byteOffset >= chunkEnd || f.byteOffset + f.byteLength <= chunkStart);
  assert.deepEqual(frames, [text.encode("hello")]);
});

test("FrameDecoder round-trips random message lists over any chunking of the stream, owned or not", () => {
  fc.assert(
    fc.property(messagesArb, pointsArb, fc.array(fc.boolean(), { minLength: 1 }), (messages, points, owned) => {
      const chunks = split(concat(messages.map(encodeFrame)), points);
      const { decoder, frames } = collector();
      chunks.forEach((c, i) => decoder.push(c, owned[i % owned.length]!));
      assert.deepEqual(frames, messages);
      assert.equal(decoder.idle, true);
      decoder.finish();
    }),
    { numRuns: NUM_RUNS },
  );
});

test("FrameDecoder output is unaffected when a non-owned chunk is overwritten after push", () => {
  fc.assert(
    fc.property(messagesArb, pointsArb, fc.integer({ min: 0, max: 255 }), (messages, points, garbage) => {
      const chunks = split(concat(messages.map(encodeFrame)), points);
      const { decoder, frames } = collector();
      // One scratch buffer reused for every chunk, as a socket read loop does.
      const scratch = new Uint8Array(Math.max(1, ...chunks.map((c) => c.byteLength)));
      for (const c of chunks) {
        scratch.set(c);
        decoder.push(scratch.subarray(0, c.byteLength), false);
        scratch.fill(garbage);
      }
      assert.deepEqual(frames, messages);
      decoder.finish();
    }),
    { numRuns: NUM_RUNS },
  );
});

test("FrameDecoder accepts a length equal to maxMessage", () => {
  const { decoder, frames } = collector(8);
  decoder.push(encodeFrame(new Uint8Array(8).fill(1)), true);
  assert.deepEqual(frames, [new Uint8Array(8).fill(1)]);
});

test("FrameDecoder rejects a length over maxMessage with MessageTooLargeError", () => {
  const { decoder, frames } = collector(256);
  assert.throws(
    () => decoder.push(Uint8Array.of(0, 0, 1, 1, 0x61), true),
    (e: unknown) => {
      assert.ok(e instanceof MessageTooLargeError);
      assert.equal(e.name, "MessageTooLargeError");
      assert.equal(e.size, 257);
      assert.equal(e.limit, 256);
      assert.match(e.message, /^Cannot receive a message of 257 bytes: .*256/);
      return true;
    },
  );
  assert.deepEqual(frames, []);
});

test("FrameDecoder rejects a length over maxMessage with MessageTooLargeError wherever the header is split", () => {
  fc.assert(
    fc.property(
      messagesArb,
      fc.integer({ min: 1025, max: 0xffff_ffff }),
      pointsArb,
      (before, size, points) => {
        const header = Uint8Array.of(size >>> 24, (size >>> 16) & 0xff, (size >>> 8) & 0xff, size & 0xff);
        const chunks = split(concat([...before.map(encodeFrame), header]), points);
        const { decoder, frames } = collector(1024);
        assert.throws(
          () => {
            for (const c of chunks) decoder.push(c, false);
          },
          (e: unknown) => e instanceof MessageTooLargeError && e.size === size && e.limit === 1024,
        );
        // Everything before the bad frame was delivered.
        assert.deepEqual(frames, before.filter((m) => m.byteLength <= 1024));
      },
    ),
    { numRuns: NUM_RUNS },
  );
});

test("FrameDecoder.finish() inside the length header throws ProtocolError", () => {
  for (let n = 1; n < HEADER_SIZE; n++) {
    const { decoder } = collector();
    decoder.push(new Uint8Array(n), true);
    assert.equal(decoder.idle, false);
    assert.throws(() => decoder.finish(), (e: unknown) => {
      assert.ok(e instanceof ProtocolError);
      assert.match(e.message, new RegExp(`^Cannot read a message: .*after ${n} of 4 length bytes`));
      return true;
    });
  }
});

test("FrameDecoder.finish() inside a payload throws ProtocolError", () => {
  const { decoder } = collector();
  decoder.push(Uint8Array.of(0, 0, 0, 3, 0x61), true);
  assert.equal(decoder.idle, false);
  assert.throws(() => decoder.finish(), (e: unknown) => {
    assert.ok(e instanceof ProtocolError);
    assert.match(e.message, /after 1 of 3 payload bytes/);
    return true;
  });
});

test("FrameDecoder.finish() on a fresh decoder and between frames does not throw", () => {
  const { decoder, frames } = collector();
  decoder.finish();
  decoder.push(encodeFrame(text.encode("a")), true);
  decoder.finish();
  decoder.push(encodeFrame(new Uint8Array(0)), true);
  decoder.finish();
  assert.equal(frames.length, 2);
});

test("FrameDecoder.finish() throws ProtocolError exactly when the stream is cut inside a frame", () => {
  fc.assert(
    fc.property(messagesArb, fc.nat(), pointsArb, (messages, cutSeed, points) => {
      const stream = concat(messages.map(encodeFrame));
      const cut = cutSeed % (stream.byteLength + 1);
      const { decoder, frames } = collector();
      for (const c of split(stream.subarray(0, cut), points)) decoder.push(c, true);
      const ends = frameEnds(messages);
      const clean = cut === 0 || ends.includes(cut);
      assert.equal(decoder.idle, clean);
      assert.deepEqual(frames, messages.slice(0, ends.filter((end) => end <= cut).length));
      if (clean) {
        decoder.finish();
      } else {
        assert.throws(() => decoder.finish(), ProtocolError);
      }
    }),
    { numRuns: NUM_RUNS },
  );
});
