/**
 * `SharedMemory` (shm/segment.ts): create/open/openOrCreate, errors, close vs unlink, read-only handles,
 * permissions, and peers in other processes: deno, bun and node children, and Python's
 * `multiprocessing.shared_memory`.
 *
 * Every segment gets a unique name `/ipckit-test-<pid>-<random>` and is removed in a `finally`; the last test
 * checks that none is left in /dev/shm.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AlreadyExistsError, ClosedError, IpcError, NotFoundError, SharedMemory } from "../mod.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { runtime } from "../runtimes/detect.ts";
import type { ChildProcess, ExitStatus } from "../runtimes/runtime.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { LAST_BYTE, PATTERN_LENGTH, patternByte, SIZE, SLOT_BASE, SLOT_SIZE } from "./helpers/segment_layout.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHILD = fileURLToPath(new URL("./helpers/segment_child.ts", import.meta.url));
const HUGE_CHILD = fileURLToPath(new URL("./helpers/segment_huge.ts", import.meta.url));
const OK: ExitStatus = { code: 0, signal: null };
/** A child still running after this long is killed (a watchdog, not a timing assertion). */
const CHILD_DEADLINE_MS = 45_000;

const rt = await runtime();
/** Every name this file hands out, for the final leftover check. */
const allNames = new Set<string>();

function uniqueName(): string {
  const name = `/ipckit-test-${rt.pid}-${Math.random().toString(36).slice(2, 10)}`;
  allNames.add(name);
  return name;
}

/** Where Linux shows a segment as a file. */
function shmPath(name: string): string {
  return `/dev/shm/${name.slice(1)}`;
}

/** The names and handles of one test, released by {@linkcode withSegments}. */
class Scratch {
  readonly #names: string[] = [];
  readonly #handles: SharedMemory[] = [];

  /** A fresh unique name, unlinked at the end of the test. */
  name(): string {
    const name = uniqueName();
    this.#names.push(name);
    return name;
  }

  /** Closes `shm` at the end of the test. */
  track(shm: SharedMemory): SharedMemory {
    this.#handles.push(shm);
    return shm;
  }

  async release(): Promise<void> {
    for (const shm of this.#handles) shm.close();
    for (const name of this.#names) {
      try {
        await SharedMemory.unlink(name);
      } catch (e) {
        if (!(e instanceof NotFoundError)) throw e;
      }
    }
  }
}

async function withSegments(fn: (s: Scratch) => Promise<void>): Promise<void> {
  const scratch = new Scratch();
  try {
    await fn(scratch);
  } finally {
    await scratch.release();
  }
}

/** Waits for a child, killing it if it runs past the watchdog deadline (then its status shows the signal). */
async function exitStatus(child: ChildProcess): Promise<ExitStatus> {
  const timer = setTimeout(() => child.kill("SIGKILL"), CHILD_DEADLINE_MS);
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** All of a child's stderr as text. */
async function readAll(stream: AsyncIterable<Uint8Array> | null): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream ?? []) text += decoder.decode(chunk, { stream: true });
  return text + decoder.decode();
}

/**
 * Runs children to their end; if anything throws, they are killed first. Their stderr goes to ours, or with
 * `stderr: "pipe"` into each status's `stderr` (for children expected to crash noisily).
 */
async function runChildren(
  argvs: string[][],
  stderr: "inherit" | "pipe" = "inherit",
): Promise<(ExitStatus & { stderr?: string })[]> {
  const children: ChildProcess[] = [];
  let done = false;
  try {
    for (const argv of argvs) children.push(rt.spawn(argv, { cwd: ROOT, stdio: "null", stderr }));
    const statuses = await Promise.all(children.map(async (child) => {
      if (stderr === "inherit") return await exitStatus(child);
      const [status, text] = await Promise.all([exitStatus(child), readAll(child.stderr)]);
      return { ...status, stderr: text.slice(0, 500) };
    }));
    done = true;
    return statuses;
  } finally {
    if (!done) {
      for (const child of children) child.kill("SIGKILL");
      await Promise.allSettled(children.map((c) => c.exited));
    }
  }
}

async function python(code: string, ...args: string[]): Promise<ExitStatus> {
  const [status] = await runChildren([["python3", "-c", code, ...args]]);
  return status!;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function randomBytes(length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  crypto.getRandomValues(bytes);
  bytes[0] = 1 + (bytes[0]! % 255); // never all zeros, which a fresh segment already holds
  return bytes;
}

/** Asserts that `name` does not exist, through the API and in /dev/shm. */
async function assertGone(name: string): Promise<void> {
  await assert.rejects(SharedMemory.open(name), NotFoundError);
  assert.equal(existsSync(shmPath(name)), false, `${shmPath(name)} exists`);
}

// create / open / openOrCreate

test("SharedMemory.create() maps a new zero-filled segment with its name, size and created true", async () => {
  await withSegments(async (s) => {
    for (const size of [1, 1000, 4096, 65_537]) {
      const name = s.name();
      const shm = s.track(await SharedMemory.create(name, { size }));
      assert.equal(shm.name, name);
      assert.equal(shm.size, size);
      assert.equal(shm.created, true);
      assert.equal(shm.readOnly, false);
      assert.equal(shm.closed, false);
      assert.equal(shm.buffer.byteLength, size);
      assert.equal(typeof shm.address, "number");
      assert.ok(shm.address > 0);
      assert.ok(new Uint8Array(shm.buffer).every((b) => b === 0), "a new segment is zero-filled");
      assert.equal(statSync(shmPath(name)).size, size);
    }
  });
});

test("SharedMemory.open() maps an existing segment with the segment's size and created false", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    s.track(await SharedMemory.create(name, { size: 1000 }));
    const opened = s.track(await SharedMemory.open(name));
    assert.equal(opened.name, name);
    assert.equal(opened.size, 1000);
    assert.equal(opened.created, false);
    assert.equal(opened.readOnly, false);
    assert.equal(opened.buffer.byteLength, 1000);
  });
});

test("bytes written through one SharedMemory handle are seen through another handle in the same process", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const a = s.track(await SharedMemory.create(name, { size: 5000 }));
    const b = s.track(await SharedMemory.open(name));
    assert.notEqual(a.address, b.address, "two handles are two mappings");
    const first = randomBytes(5000);
    new Uint8Array(a.buffer).set(first);
    assert.deepEqual(new Uint8Array(b.buffer), first);
    const second = randomBytes(100);
    new Uint8Array(b.buffer).set(second, 4900);
    assert.deepEqual(new Uint8Array(a.buffer, 4900), second);
    // Atomics work on the mapping too.
    Atomics.store(new Int32Array(a.buffer), 0, 0x1234_5678);
    assert.equal(Atomics.load(new Int32Array(b.buffer), 0), 0x1234_5678);
  });
});

test("SharedMemory.openOrCreate() creates the segment when the name does not exist", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const shm = s.track(await SharedMemory.openOrCreate(name, { size: 3000 }));
    assert.equal(shm.name, name);
    assert.equal(shm.created, true);
    assert.equal(shm.size, 3000);
    assert.equal(shm.buffer.byteLength, 3000);
    assert.ok(new Uint8Array(shm.buffer).every((b) => b === 0));
    assert.equal(statSync(shmPath(name)).mode & 0o777, 0o600);
  });
});

test("SharedMemory.openOrCreate() opens an existing segment: created is false and the existing size wins", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const first = s.track(await SharedMemory.create(name, { size: 100 }));
    const bytes = randomBytes(100);
    new Uint8Array(first.buffer).set(bytes);
    const second = s.track(await SharedMemory.openOrCreate(name, { size: 5000 }));
    assert.equal(second.created, false);
    assert.equal(second.size, 100);
    assert.equal(second.buffer.byteLength, 100);
    assert.deepEqual(new Uint8Array(second.buffer), bytes);
    assert.equal(statSync(shmPath(name)).size, 100, "the segment was not resized");
  });
});

// Errors

test("SharedMemory.create() on an existing name rejects with AlreadyExistsError and leaves the segment as it was", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const shm = s.track(await SharedMemory.create(name, { size: 64 }));
    const bytes = randomBytes(64);
    new Uint8Array(shm.buffer).set(bytes);
    await assert.rejects(SharedMemory.create(name, { size: 128 }), (e: unknown) => {
      assert.ok(e instanceof AlreadyExistsError);
      assert.ok(e instanceof IpcError);
      assert.equal(e.name, "AlreadyExistsError");
      assert.equal(e.code, "EEXIST");
      assert.equal(e.message, `Cannot create shared memory "${name}": it already exists`);
      return true;
    });
    const again = s.track(await SharedMemory.open(name));
    assert.equal(again.size, 64);
    assert.deepEqual(new Uint8Array(again.buffer), bytes);
  });
});

test("SharedMemory.open() of a missing name rejects with NotFoundError (ENOENT)", async () => {
  const name = uniqueName();
  for (const options of [{}, { readOnly: true }]) {
    await assert.rejects(SharedMemory.open(name, options), (e: unknown) => {
      assert.ok(e instanceof NotFoundError);
      assert.ok(e instanceof IpcError);
      assert.equal(e.name, "NotFoundError");
      assert.equal(e.code, "ENOENT");
      assert.equal(e.message, `Cannot open shared memory "${name}": it does not exist`);
      return true;
    });
  }
});

const BAD_NAMES: readonly [string, unknown][] = [
  ["the empty string", ""],
  ["a name without a leading slash", "noslash"],
  ["a name with a second slash", "/a/b"],
  ["a slash alone", "/"],
  ["a name with a NUL byte", "/a\0b"],
  ["a 300-byte name", "/" + "x".repeat(299)],
  ["a name of 129 characters but 257 bytes", "/" + "é".repeat(128)],
  ["a number", 42],
  ["undefined", undefined],
  ["null", null],
];

test("SharedMemory.create(), open(), openOrCreate() and unlink() reject invalid names with TypeError", async () => {
  for (const [what, name] of BAD_NAMES) {
    const bad = name as string;
    const calls: [string, () => Promise<unknown>][] = [
      ["create", () => SharedMemory.create(bad, { size: 16 })],
      ["open", () => SharedMemory.open(bad)],
      ["openOrCreate", () => SharedMemory.openOrCreate(bad, { size: 16 })],
      ["unlink", () => SharedMemory.unlink(bad)],
    ];
    for (const [method, call] of calls) {
      await assert.rejects(call(), TypeError, `${method}() with ${what}`);
    }
  }
});

test("SharedMemory.create() accepts a name of 255 bytes, its leading slash included", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const long = name + "x".repeat(255 - name.length);
    allNames.add(long);
    try {
      const shm = s.track(await SharedMemory.create(long, { size: 16 }));
      assert.equal(shm.name, long);
      assert.equal(existsSync(shmPath(long)), true);
    } finally {
      await SharedMemory.unlink(long).catch(() => {});
    }
    await assert.rejects(SharedMemory.create(long + "x", { size: 16 }), TypeError, "256 bytes is too long");
  });
});

test("SharedMemory.create() and openOrCreate() reject a size that is not a positive integer with RangeError", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    for (const size of [0, -1, 1.5, NaN, Infinity, 2 ** 53, "16", undefined]) {
      const options = { size: size as number };
      await assert.rejects(SharedMemory.create(name, options), RangeError, `create() with size ${String(size)}`);
      await assert.rejects(
        SharedMemory.openOrCreate(name, options),
        RangeError,
        `openOrCreate() with size ${String(size)}`,
      );
    }
    await assert.rejects(
      SharedMemory.create(name, undefined as unknown as { size: number }),
      RangeError,
      "create() without options",
    );
    await assertGone(name);
  });
});

const BAD_MODES: readonly unknown[] = [-1, 0o1000, 0o4777, 1.5, NaN, "0600"];

test("SharedMemory.create() rejects a mode that is not an integer from 0 to 0o777 with RangeError", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    for (const mode of BAD_MODES) {
      await assert.rejects(
        SharedMemory.create(name, { size: 16, mode: mode as number }),
        RangeError,
        `mode ${String(mode)}`,
      );
    }
    await assertGone(name);
  });
});

test(
  "SharedMemory.openOrCreate() rejects a mode that is not an integer from 0 to 0o777 with RangeError",
  {},
  async () => {
    await withSegments(async (s) => {
      for (const mode of BAD_MODES) {
        const name = s.name();
        await assert.rejects(
          SharedMemory.openOrCreate(name, { size: 16, mode: mode as number }),
          RangeError,
          `mode ${String(mode)}`,
        );
        await assertGone(name);
      }
    });
  },
);

test("SharedMemory.unlink(name) of a missing name rejects with NotFoundError", async () => {
  const name = uniqueName();
  await assert.rejects(SharedMemory.unlink(name), (e: unknown) => {
    assert.ok(e instanceof NotFoundError);
    assert.equal(e.code, "ENOENT");
    assert.equal(e.message, `Cannot unlink shared memory "${name}": it does not exist`);
    return true;
  });
});

test("unlinking a segment twice rejects with NotFoundError the second time", async () => {
  await withSegments(async (s) => {
    const byName = s.name();
    s.track(await SharedMemory.create(byName, { size: 16 }));
    await SharedMemory.unlink(byName);
    await assert.rejects(SharedMemory.unlink(byName), NotFoundError);

    const byHandle = s.name();
    const shm = s.track(await SharedMemory.create(byHandle, { size: 16 }));
    shm.unlink();
    assert.throws(() => shm.unlink(), NotFoundError);
    await assert.rejects(SharedMemory.unlink(byHandle), NotFoundError);
  });
});

// close() vs unlink()

test("after unlink() the name cannot be opened, but existing mappings still read and write", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const a = s.track(await SharedMemory.create(name, { size: 256 }));
    const b = s.track(await SharedMemory.open(name));
    a.unlink();
    await assertGone(name);
    assert.equal(a.closed, false);
    const bytes = randomBytes(256);
    new Uint8Array(a.buffer).set(bytes);
    assert.deepEqual(new Uint8Array(b.buffer), bytes, "the two mappings still share their pages");
    new Uint8Array(b.buffer)[7] = 0x42;
    assert.equal(new Uint8Array(a.buffer)[7], 0x42);
    // The name is free again: a new segment of that name is another segment.
    const fresh = s.track(await SharedMemory.create(name, { size: 256 }));
    assert.ok(new Uint8Array(fresh.buffer).every((x) => x === 0));
    assert.equal(new Uint8Array(a.buffer)[7], 0x42);
  });
});

test("close() is idempotent; closed is true and buffer and address throw ClosedError afterwards", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const shm = s.track(await SharedMemory.create(name, { size: 64 }));
    shm.close();
    assert.equal(shm.closed, true);
    shm.close();
    assert.equal(shm.closed, true);
    const closed = (e: unknown) => {
      assert.ok(e instanceof ClosedError);
      assert.ok(e instanceof IpcError);
      assert.equal(e.message, `Cannot use shared memory "${name}": it is closed`);
      return true;
    };
    assert.throws(() => shm.buffer, closed);
    assert.throws(() => shm.address, closed);
    // The fields that describe the segment stay readable.
    assert.equal(shm.name, name);
    assert.equal(shm.size, 64);
    // close() does not unlink: the segment is still there.
    assert.equal(existsSync(shmPath(name)), true);
  });
});

test("reading a closed segment's old buffer never crashes", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const shm = s.track(await SharedMemory.create(name, { size: 8192 }));
    const buffer = shm.buffer;
    const view = new Uint8Array(buffer, 100, 50);
    new Uint8Array(buffer).fill(0x5a);
    shm.close();
    // Detached on Deno and Bun (byteLength 0), private zero pages on Node: never the unmapped memory.
    const detached = buffer.byteLength === 0;
    // Indexed reads never throw: undefined on a detached buffer, zeros otherwise. (Methods such as every() and
    // `new Uint8Array(buffer)` throw a TypeError on a detached buffer, which is safe too.)
    const seen = Array.from({ length: 50 }, (_, i) => view[i]);
    assert.deepEqual(seen, new Array(50).fill(detached ? undefined : 0), `old view after close (${rt.name})`);
    if (detached) {
      assert.equal(view.length, 0);
    } else {
      assert.equal(buffer.byteLength, 8192);
      const all = new Uint8Array(buffer);
      assert.ok(all.every((b) => b === 0), "the old buffer reads zeros");
      all.fill(1); // writing to it does not reach the segment
    }
    const again = s.track(await SharedMemory.open(name));
    assert.ok(new Uint8Array(again.buffer).every((b) => b === 0x5a));
  });
});

test("closing one handle leaves the other handles and the segment's bytes intact", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const a = s.track(await SharedMemory.create(name, { size: 4096 * 3 + 1 }));
    const b = s.track(await SharedMemory.open(name));
    const bytes = randomBytes(a.size);
    new Uint8Array(a.buffer).set(bytes);
    a.close();
    assert.equal(b.closed, false);
    assert.deepEqual(new Uint8Array(b.buffer), bytes);
    new Uint8Array(b.buffer)[0] = 0x99;
    b.close();
    const c = s.track(await SharedMemory.open(name));
    assert.equal(new Uint8Array(c.buffer)[0], 0x99);
    assert.deepEqual(new Uint8Array(c.buffer).subarray(1), bytes.subarray(1));
  });
});

test("using disposes a SharedMemory: it is closed at the end of the block", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    let kept: SharedMemory | undefined;
    {
      using shm = await SharedMemory.create(name, { size: 32 });
      kept = shm;
      assert.equal(shm.closed, false);
      new Uint8Array(shm.buffer)[0] = 1;
    }
    assert.equal(kept.closed, true);
    assert.throws(() => kept.buffer, ClosedError);
    // Dispose closes; it does not unlink.
    const again = s.track(await SharedMemory.open(name));
    assert.equal(new Uint8Array(again.buffer)[0], 1);
    again[Symbol.dispose]();
    assert.equal(again.closed, true);
  });
});

// Read-only handles

test("a readOnly handle reads the segment's bytes and sees later writes", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    const writer = s.track(await SharedMemory.create(name, { size: 512 }));
    const bytes = randomBytes(512);
    new Uint8Array(writer.buffer).set(bytes);
    // Never write through `reader`: its pages are mapped PROT_READ, and a write would kill the process.
    const reader = s.track(await SharedMemory.open(name, { readOnly: true }));
    assert.equal(reader.readOnly, true);
    assert.equal(reader.created, false);
    assert.equal(reader.size, 512);
    assert.deepEqual(new Uint8Array(reader.buffer), bytes);
    new Uint8Array(writer.buffer)[511] = bytes[511]! ^ 0xff;
    assert.equal(new Uint8Array(reader.buffer)[511], bytes[511]! ^ 0xff);
    reader.close();
    assert.equal(reader.closed, true);
    assert.equal(writer.closed, false);
  });
});

// Permissions

test("SharedMemory.create() makes the segment with mode 0600 by default", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    s.track(await SharedMemory.create(name, { size: 16 }));
    const stat = statSync(shmPath(name));
    assert.equal(stat.mode & 0o7777, 0o600);
    assert.equal(stat.isFile(), true);
  });
});

test("SharedMemory.create() applies the given mode, minus the umask", async () => {
  await withSegments(async (s) => {
    const name = s.name();
    s.track(await SharedMemory.create(name, { size: 16, mode: 0o640 }));
    const mode = statSync(shmPath(name)).mode & 0o7777;
    assert.equal(mode & ~0o640, 0, `mode ${mode.toString(8)} has bits outside 0640`);
    assert.equal(mode & 0o600, 0o600, `mode ${mode.toString(8)} lacks 0600`);
  });
});

// Other processes

test(
  "a segment created here is opened, checked and written by deno, bun and node children",
  { timeout: 60_000 },
  async () => {
    await withSegments(async (s) => {
      const name = s.name();
      const shm = s.track(await SharedMemory.create(name, { size: SIZE }));
      const bytes = new Uint8Array(shm.buffer);
      for (let i = 0; i < PATTERN_LENGTH; i++) bytes[i] = patternByte(i);
      bytes[SIZE - 1] = LAST_BYTE;

      const statuses = await runChildren(RUNTIMES.map((r) => [...runtimeArgv(r, CHILD), name]));
      assert.deepEqual(
        Object.fromEntries(statuses.map((status, i) => [RUNTIMES[i], status])),
        Object.fromEntries(RUNTIMES.map((r) => [r, OK])),
        "every child exits with code 0",
      );
      const decoder = new TextDecoder();
      const written = RUNTIMES.map((_, i) => {
        const slot = bytes.subarray(SLOT_BASE + i * SLOT_SIZE, SLOT_BASE + (i + 1) * SLOT_SIZE);
        const end = slot.indexOf(0);
        return decoder.decode(slot.subarray(0, end < 0 ? slot.length : end));
      });
      assert.deepEqual(written, [...RUNTIMES]);
      for (let i = 0; i < PATTERN_LENGTH; i++) assert.equal(bytes[i], patternByte(i), `byte ${i}`);
    });
  },
);

/** Python side of the test below: open by name, check, write, close without unlinking. */
const PY_OPEN_CHECK_WRITE = `
import sys
from multiprocessing import resource_tracker, shared_memory
name, size, expected, reply = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3]), bytes.fromhex(sys.argv[4])
shm = shared_memory.SharedMemory(name=name)
# Python 3.11 registers opened segments too, and its resource tracker would unlink this one when we exit.
resource_tracker.unregister(shm._name, "shared_memory")
try:
    if shm.size != size:
        sys.exit(f"python: size {shm.size}, expected {size}")
    got = bytes(shm.buf[:len(expected)])
    if got != expected:
        sys.exit(f"python: read {got.hex()}, expected {expected.hex()}")
    shm.buf[len(expected):len(expected) + len(reply)] = reply
finally:
    shm.close()
`;

test(
  "a Python peer opens a segment created here, reads its bytes and writes bytes seen here",
  { timeout: 60_000 },
  async () => {
    await withSegments(async (s) => {
      const name = s.name();
      const shm = s.track(await SharedMemory.create(name, { size: 4096 }));
      const mine = randomBytes(1000);
      const theirs = randomBytes(1000);
      new Uint8Array(shm.buffer).set(mine);
      const status = await python(PY_OPEN_CHECK_WRITE, name.slice(1), "4096", hex(mine), hex(theirs));
      assert.deepEqual(status, OK);
      const bytes = new Uint8Array(shm.buffer);
      assert.deepEqual(bytes.subarray(0, 1000), mine);
      assert.deepEqual(bytes.subarray(1000, 2000), theirs);
      assert.ok(bytes.subarray(2000).every((b) => b === 0));
      assert.equal(existsSync(shmPath(name)), true, "Python did not unlink the segment");
    });
  },
);

/** Python side of the test below: create, write, close without unlinking. */
const PY_CREATE_WRITE = `
import sys
from multiprocessing import resource_tracker, shared_memory
name, size, data = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
shm = shared_memory.SharedMemory(name=name, create=True, size=size)
# The segment must outlive this process: keep the resource tracker from unlinking it at exit.
resource_tracker.unregister(shm._name, "shared_memory")
shm.buf[:len(data)] = data
shm.close()
`;

test(
  "a segment created by Python is opened and read here, then removed with SharedMemory.unlink()",
  { timeout: 60_000 },
  async () => {
    await withSegments(async (s) => {
      const name = s.name();
      const data = randomBytes(3000);
      assert.deepEqual(await python(PY_CREATE_WRITE, name.slice(1), "5000", hex(data)), OK);
      const shm = s.track(await SharedMemory.open(name));
      assert.equal(shm.created, false);
      assert.equal(shm.size, 5000);
      const bytes = new Uint8Array(shm.buffer);
      assert.deepEqual(bytes.subarray(0, 3000), data);
      assert.ok(bytes.subarray(3000).every((b) => b === 0));
      assert.equal(statSync(shmPath(name)).mode & 0o777, 0o600);
      await SharedMemory.unlink(name);
      await assertGone(name);
      assert.deepEqual(bytes.subarray(0, 3000), data, "the mapping outlives the name");
    });
  },
);

/** Makes a segment of size 0, as a creator between shm_open and ftruncate leaves it. */
const PY_CREATE_EMPTY = `
import os, sys, _posixshmem
os.close(_posixshmem.shm_open(sys.argv[1], os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600))
`;

test(
  "SharedMemory.open() of a segment that stays empty rejects with IpcError (code EMPTY) saying it is empty",
  { timeout: 60_000 },
  async () => {
    await withSegments(async (s) => {
      const name = s.name();
      assert.deepEqual(await python(PY_CREATE_EMPTY, name), OK);
      assert.equal(statSync(shmPath(name)).size, 0);
      await assert.rejects(SharedMemory.open(name), (e: unknown) => {
        assert.ok(e instanceof IpcError);
        assert.equal(e.code, "EMPTY");
        assert.equal(e.message, `Cannot map shared memory "${name}": it is empty (size 0)`);
        return true;
      });
    });
  },
);

// More than 4 GiB: koffi.view() aborts Node and Bun's toArrayBuffer() fails, so create() refuses it up front.
test(
  "SharedMemory.create() of more than 4 GiB works or throws, on every runtime, and a failure leaves no name",
  { timeout: 60_000 },
  async () => {
    await withSegments(async (s) => {
      const names = RUNTIMES.map(() => s.name());
      const size = String(2 ** 32 + 1);
      // stderr piped: a crashing Node child prints a long native stack trace.
      const argvs = RUNTIMES.map((r, i) => [...runtimeArgv(r, HUGE_CHILD), names[i]!, size]);
      const statuses = await runChildren(argvs, "pipe");
      assert.deepEqual(
        Object.fromEntries(statuses.map((status, i) => [RUNTIMES[i], status])),
        Object.fromEntries(RUNTIMES.map((r) => [r, { ...OK, stderr: "" }])),
      );
      for (const name of names) assert.equal(existsSync(shmPath(name)), false, `${name} was left behind`);
    });
  },
);

test("no segment created by these tests is left in /dev/shm", () => {
  const left = [...allNames].filter((name) => existsSync(shmPath(name)));
  assert.deepEqual(left, []);
});
