/**
 * Fuzz target: the durable file queue's consumer (`os/file_queue.ts`), reading a queue directory whose files
 * a hostile (or broken) writer wrote: logs of well-formed records with bytes flipped or set, hostile u32 lengths
 * written anywhere, a header re-signed (valid CRC) with any committed end (before the first record, inside one,
 * past the end of the file, 2^40, 2^53), the file cut short or extended with noise, pure noise, and a consumer offset
 * that is right, re-signed with any value, or damaged.
 *
 * The consumer reads until the log has nothing more, skipping corrupt records, half the time through the `onCorrupt`
 * policy and half by hand (`tryReceive()` rejects, then `skipCorrupt()`). For each input, `open()` and every read
 * return or throw `ProtocolError`; every `ProtocolError` of a record is followed by a `skipCorrupt()` that moves
 * forward (never a refusal that cannot be skipped); no message is larger than the file; the reads end within one
 * step per byte of the file (no hang); no file descriptor is left open, whether `open()` refused the queue or not.
 * An intact log delivers exactly the messages it was made of.
 *
 * @module
 */
import fc from "fast-check";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ProtocolError } from "../../errors.ts";
import {
  crc32,
  encodeLogHeader,
  encodeRecord,
  FileQueue,
  OFFSET_MAGIC,
  type SkippedRecord,
} from "../../os/file_queue.ts";
import { concat, expectOnlyAsync, type FuzzTarget, mutateBytes } from "./target.ts";

const message = fc.oneof(
  { weight: 2, arbitrary: fc.constant(new Uint8Array(0)) },
  { weight: 6, arbitrary: fc.uint8Array({ maxLength: 24 }) },
  { weight: 1, arbitrary: fc.tuple(fc.nat(3000), fc.nat(255)).map(([n, b]) => new Uint8Array(n).fill(b)) },
);

/** A change a hostile writer makes to the log; `at` is taken modulo the file length. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ kind: fc.constant("set" as const), at: fc.nat(), byte: fc.nat(255) }),
  fc.record({
    kind: fc.constant("u32" as const),
    at: fc.nat(),
    value: fc.oneof(fc.constantFrom(0, 1, 11, 12, 0x52435049, 0x7fff_ffff, 0xffff_ffff), fc.nat()),
  }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("extend" as const), tail: fc.uint8Array({ minLength: 1, maxLength: 40 }) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

/** A committed end written into a re-signed header: relative to the file, or absolute and hostile. */
const committed = fc.oneof(
  fc.record({ relative: fc.integer({ min: -40, max: 40 }) }),
  fc.record({ absolute: fc.constantFrom(0, 23, 24, 25, 2 ** 32, 2 ** 40, 2 ** 53 - 1, 2 ** 64 - 1) }),
);

interface Input {
  messages: Uint8Array[];
  mutations: Mutation[];
  header: { relative: number } | { absolute: number } | null;
  offset: number | null;
  damagedOffset: boolean;
  noise: Uint8Array | null;
  policy: boolean;
}

const inputs: fc.Arbitrary<Input> = fc.record({
  messages: fc.array(message, { maxLength: 20 }),
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant<Mutation[]>([]) }, fc.array(mutation, { maxLength: 4 })),
  header: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, committed),
  offset: fc.oneof(
    { weight: 8, arbitrary: fc.constant(null) },
    fc.constantFrom(0, 23, 25, 2 ** 40, 2 ** 53 + 2),
    fc.nat(4000),
  ),
  damagedOffset: fc.oneof({ weight: 15, arbitrary: fc.constant(false) }, fc.constant(true)),
  noise: fc.oneof({ weight: 12, arbitrary: fc.constant(null) }, fc.uint8Array({ maxLength: 200 })),
  policy: fc.boolean(),
});

function mutate(bytes: Uint8Array, m: Mutation): Uint8Array {
  if (m.kind !== "u32") return mutateBytes(bytes, m);
  // A hostile 32-bit field, little-endian as every field of the log.
  const at = bytes.length === 0 ? 0 : m.at % bytes.length;
  for (let i = 0; i < 4 && at + i < bytes.length; i++) bytes[at + i] = (m.value >>> (8 * i)) & 0xff;
  return bytes;
}

function offsetFile(offset: number, damaged: boolean): Uint8Array {
  const o = new Uint8Array(16);
  const v = new DataView(o.buffer);
  v.setUint32(0, OFFSET_MAGIC, true);
  v.setBigUint64(4, BigInt(offset), true);
  v.setUint32(12, crc32(o.subarray(0, 12)), true);
  if (damaged) o[5]! ^= 0x40;
  return o;
}

let dir: string | undefined;

/** How many descriptors this process has open (Linux); 0 where it cannot tell. */
function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return 0;
  }
}

/** Feeds one hostile queue directory to a consumer. */
async function run(input: Input): Promise<void> {
  // tmpfs when there is one: rewriting a file on ext4 costs milliseconds (a truncated file is flushed on close).
  dir ??= mkdtempSync(join(existsSync("/dev/shm") ? "/dev/shm" : tmpdir(), "ipckit-fuzz-fq-"));
  const records = concat(input.messages.map((m) => encodeRecord(m)));
  let log = input.noise ?? concat([encodeLogHeader(24 + records.byteLength), records]);
  for (const m of input.mutations) log = mutate(log.slice(), m);
  if (input.header !== null && log.byteLength >= 24) {
    const end = "absolute" in input.header
      ? input.header.absolute
      : Math.max(0, log.byteLength + input.header.relative);
    log = concat([encodeLogHeader(end), log.subarray(24)]);
  }
  const intact = input.noise === null && input.mutations.length === 0 && input.header === null &&
    input.offset === null && !input.damagedOffset;
  writeFileSync(join(dir, "queue.log"), log);
  writeFileSync(join(dir, "consumer.offset"), offsetFile(input.offset ?? 24, input.damagedOffset));

  const fds = openFds();
  const got: Uint8Array[] = [];
  const skipped: SkippedRecord[] = [];
  let q: FileQueue | undefined;
  try {
    await expectOnlyAsync([ProtocolError], async () => {
      q = await FileQueue.open(dir!, input.policy ? { onCorrupt: (s) => skipped.push(s) } : {});
      for (let steps = 0;; steps++) {
        if (steps > log.byteLength + input.messages.length + 4) throw new Error("the consumer does not get to the end");
        let m: Uint8Array | undefined;
        try {
          m = q.tryReceive();
        } catch (e) {
          if (!(e instanceof ProtocolError) || input.policy || !/the record at offset/.test(e.message)) throw e;
          const s = q.skipCorrupt();
          if (s === undefined) {
            throw new Error(`tryReceive() refused a record skipCorrupt() does not skip: ${e.message}`);
          }
          skipped.push(s);
          continue;
        }
        if (m === undefined) break;
        if (m.byteLength > log.byteLength) {
          throw new Error(`a message of ${m.byteLength} bytes from a ${log.length}-byte log`);
        }
        got.push(m);
      }
    });
  } finally {
    await q?.close();
  }
  if (openFds() > fds) throw new Error(`${openFds() - fds} file descriptor(s) left open`);
  for (const s of skipped) {
    if (!(s.length > 0) || s.offset < 24) throw new Error(`a skip that does not move forward: ${JSON.stringify(s)}`);
  }
  if (intact) {
    if (skipped.length > 0 || got.length !== input.messages.length) {
      throw new Error(`an intact log gave ${got.length} of ${input.messages.length} messages, ${skipped.length} skips`);
    }
    for (const [i, m] of input.messages.entries()) {
      const g = got[i]!;
      if (g.byteLength !== m.byteLength || g.some((b, j) => b !== m[j])) throw new Error(`message ${i} differs`);
    }
  }
}

/** The file queue's consumer. */
export const target: FuzzTarget<Input> = {
  name: "file_queue",
  inputs,
  run,
  close() {
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  },
};
