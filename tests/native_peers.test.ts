/**
 * Native peers of the shm channel (issue 21, item 5): a C program over `include/ipckit_ring.h` and a Python one over
 * `python/ipckit_ring.py` exchange messages with this runtime over an SPSC shm channel, in both roles (the native
 * side opens what `shm.create` made, or creates what `shm.open` opens) and both directions: many messages through a
 * small ring (wrap-around, full rings on both sides), empty and maximal ones, a JS receive that sleeps until the
 * native side's send wakes it, the native side closing (the JS side sees its messages, then ClosedError) or dying
 * (its recorded pid and start-time tag let the JS side tell), a segment of another layout version and hostile
 * segments (clear errors, nothing read out of bounds).
 *
 * Every segment is named `/ipckit-test-np-<pid>-<random>` and removed in a `finally`, every child is killed and
 * reaped there; the last test checks that nothing is left and removes the C build's directory. No timing
 * assertions: waits have generous limits.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { arch } from "node:os";
import { ClosedError, SharedMemory } from "../mod.ts";
import { channelSize, initLayout } from "../shm/ring_channel_layout.ts";
import { identify } from "../os/liveness.ts";
import { runtime } from "../runtimes/detect.ts";
import { spawnWithLines } from "./helpers/child_lines.ts";
import {
  buildC,
  messageOf,
  type NativePeer,
  type NativeRole,
  PEER_DEADLINE_MS,
  session,
  unlinkQuietly,
} from "./helpers/native_peers.ts";

const rt = await runtime();
const ROOT = rt.fromFileUrl(new URL("..", import.meta.url));
const PY = `${ROOT}/tests/fixtures/native_peer.py`;
const OK = { code: 0, signal: null };
const WAIT = { timeout: PEER_DEADLINE_MS };

// The C peer is built once for the file, into a directory the last test removes.
const buildDir = await rt.makeTempDir("ipckit-test-native-");
const C_PEER = await buildC(rt, ROOT, buildDir).catch(async (e) => {
  await rt.removeDir(buildDir);
  throw e;
});

const C: NativePeer = { label: "C", argv: (args) => [C_PEER, ...args], env: {} };
const PYTHON: NativePeer = { label: "Python", argv: (args) => ["python3", PY, ...args], env: {} };
/** Python on x86-64 without libatomic: aligned memoryview accesses stand in for atomics. */
const PYTHON_PLAIN: NativePeer = {
  label: "Python (no libatomic)",
  argv: (args) => ["python3", PY, ...args],
  env: { IPCKIT_RING_LIBATOMIC: "0" },
};
const PEERS = [C, PYTHON];
const ROLES: readonly NativeRole[] = ["open", "create"];
/** The JS side's part, for test names. */
const jsSide = (role: NativeRole) => role === "open" ? "shm.create" : "shm.open";

/** Every name this file hands out, for the final leftover check. */
const names = new Set<string>();
function uniqueName(): string {
  const name = `/ipckit-test-np-${rt.pid}-${Math.random().toString(36).slice(2, 10)}`;
  names.add(name);
  return name;
}

const ECHOED = 1500;

for (const peer of [...PEERS, ...(arch() === "x64" ? [PYTHON_PLAIN] : [])]) {
  for (const role of ROLES) {
    test(
      `a ${peer.label} peer (${role}) echoes ${ECHOED} messages of every size through 128-byte rings with ${
        jsSide(role)
      }, then sees the end when JS closes`,
      { timeout: 2 * PEER_DEADLINE_MS },
      async () => {
        await session(rt, peer, role, uniqueName(), ["echo"], 128, async (s) => {
          assert.equal(s.maxMessage, 120);
          // Sends and receives at once: both rings fill up, so both sides wait for room and wake each other.
          // One at a time and in batches of 2 to 6 (sendMany publishes a batch with one store: its first commit word,
          // written last), in turn.
          const sending = (async () => {
            for (let i = 0, k = 1; i < ECHOED; k = (k + 1) % 7) {
              const batch = [];
              for (const end = Math.min(ECHOED, i + Math.max(k, 1)); i < end; i++) {
                batch.push(messageOf(i, s.maxMessage));
              }
              await (batch.length === 1 ? s.channel.send(batch[0]!) : s.channel.sendMany(batch));
            }
          })();
          for (let i = 0; i < ECHOED; i++) {
            const got = await s.channel.receive(WAIT);
            assert.deepEqual(got, messageOf(i, s.maxMessage), `message ${i} came back whole`);
          }
          await sending;
          await s.channel.close();
          assert.equal(await s.peer.line(), `end ${ECHOED}`);
          assert.deepEqual(await s.exit(), OK);
        });
      },
    );
  }
}

for (const peer of PEERS) {
  for (const role of ROLES) {
    test(
      `a ${peer.label} peer (${role}) sends 2000 messages then closes: ${
        jsSide(role)
      } receives them in order, then ClosedError`,
      { timeout: 2 * PEER_DEADLINE_MS },
      async () => {
        await session(rt, peer, role, uniqueName(), ["send", "2000"], 256, async (s) => {
          // One at a time, then what is waiting at once (receiveMany), in turn.
          for (let i = 0; i < 2000;) {
            const got = i % 2 === 0 ? [await s.channel.receive(WAIT)] : await s.channel.receiveMany(WAIT);
            for (const m of got) assert.deepEqual(m, messageOf(i, s.maxMessage), `message ${i++}`);
          }
          await assert.rejects(s.channel.receive(WAIT), ClosedError);
          assert.equal(await s.peer.line(), "sent 2000");
          assert.deepEqual(await s.exit(), OK);
          await assert.rejects(s.channel.send(new Uint8Array(1)), ClosedError, "sends fail once the peer closed");
        });
      },
    );

    test(
      `a ${peer.label} peer (${role}) wakes a receive of ${jsSide(role)} that sleeps on the futex`,
      { timeout: 2 * PEER_DEADLINE_MS },
      async () => {
        await session(rt, peer, role, uniqueName(), ["late"], 4096, async (s) => {
          // The peer sends only once this receive announced its sleep: the send must wake it.
          const pending = s.channel.receive(WAIT);
          assert.deepEqual(await pending, new TextEncoder().encode("late"));
          assert.equal(await s.peer.line(), "woke");
          await s.channel.close();
          assert.equal(await s.peer.line(), "end 0");
          assert.deepEqual(await s.exit(), OK);
        });
      },
    );
  }

  test(
    `a ${peer.label} peer killed while ${
      jsSide("open")
    } waits ends the wait with ClosedError (its pid and tag are recorded)`,
    { timeout: 2 * PEER_DEADLINE_MS },
    async () => {
      await session(rt, peer, "open", uniqueName(), ["echo"], 4096, async (s) => {
        await s.channel.send(new Uint8Array([1, 2, 3]));
        assert.deepEqual(await s.channel.receive(WAIT), new Uint8Array([1, 2, 3]));
        const pending = s.channel.receive(WAIT);
        s.peer.child.kill("SIGKILL");
        await assert.rejects(pending, (e: unknown) => e instanceof ClosedError && /died/.test(e.message));
        assert.equal((await s.exit()).signal, "SIGKILL");
      });
    },
  );
}

/**
 * A segment laid out by ipckit's own `initLayout` (64-byte rings, this process as the creator), changed by
 * `spoil` through the documented offsets, then handed to the peer: its lines and exit status, and the segment's
 * words after it ended.
 */
async function spoiled(
  peer: NativePeer,
  scenario: string,
  spoil: (words: DataView) => void,
  size = channelSize(64),
): Promise<{ line: string; code: number | null; words: DataView }> {
  const name = uniqueName();
  const segment = await SharedMemory.create(name, { size });
  try {
    initLayout(segment.buffer, 64, await identify());
    const words = new DataView(segment.buffer);
    spoil(words);
    const child = spawnWithLines(rt, peer.argv(["open", name, scenario]), peer.env);
    try {
      // One line of outcome, after "attached" when it got that far (not to the end of the output: Bun may not
      // report the end of a pipe whose writer exited at once).
      let line = await child.line();
      if (line.startsWith("attached ")) line = await child.line();
      const { code } = await child.child.exited;
      // A copy: the mapping goes with the segment below.
      return { line, code, words: new DataView(segment.buffer.slice(0)) };
    } finally {
      child.child.kill("SIGKILL");
      await child.child.exited;
    }
  } finally {
    segment.close();
    await unlinkQuietly(name);
  }
}

// Offsets from the layout docs (shm/ring_channel_layout.ts, shm/ring.ts), for 64-byte rings.
const VERSION_AT = 4, CAPACITY_AT = 8, ATTACHED_AT = 12;
const RING0 = 192, RING1 = 192 + 192 + 64, RING_DATA = 192, R_FLAGS = 12, R_VERSION = 4, R_WRITE = 64;

for (const peer of PEERS) {
  test(`a ${peer.label} peer refuses a segment of another layout version with a clear error`, {
    timeout: 2 * PEER_DEADLINE_MS,
  }, async () => {
    const channel = await spoiled(peer, "echo", (w) => w.setUint32(VERSION_AT, 3, true));
    assert.equal(channel.code, 3);
    assert.match(
      channel.line,
      /^error EPROTONOSUPPORT Cannot open shm channel "\/ipckit-test-np-[^"]+": layout version 3, this peer speaks 2$/,
    );
    assert.equal(channel.words.getUint32(ATTACHED_AT, true), 0, "it did not attach");
    const ring = await spoiled(peer, "echo", (w) => w.setUint32(RING1 + R_VERSION, 7, true));
    assert.equal(ring.code, 3);
    assert.match(ring.line, /^error EPROTONOSUPPORT Cannot open shm channel "[^"]+": ring 1 has layout version 7/);
  });

  test(`a ${peer.label} peer treats the segment as hostile: bad sizes, lengths and positions are clear errors`, {
    timeout: 4 * PEER_DEADLINE_MS,
  }, async () => {
    const capacity = await spoiled(peer, "echo", (w) => w.setUint32(CAPACITY_AT, 100, true));
    assert.equal(capacity.code, 3);
    assert.match(capacity.line, /^error EPROTO Cannot open shm channel "[^"]+": bad ring capacity 100$/);

    const small = await spoiled(peer, "echo", (w) => w.setUint32(CAPACITY_AT, 1 << 20, true));
    assert.equal(small.code, 3);
    assert.match(small.line, /^error EPROTO .*: the segment \(704 bytes\) is smaller than its layout \(2097728\)$/);

    const taken = await spoiled(peer, "echo", (w) => w.setUint32(ATTACHED_AT, 1, true));
    assert.equal(taken.code, 3);
    assert.match(taken.line, /^error EBUSY .*: it already has its peer$/);

    // A committed record (commit word 0 + 1) longer than the ring: refused, and the peer (us) is told.
    const record = await spoiled(peer, "recv1", (w) => {
      w.setUint32(RING0 + RING_DATA, 1000, true);
      w.setUint32(RING0 + RING_DATA + 4, 1, true);
    });
    assert.equal(record.code, 3);
    assert.match(record.line, /^error EPROTO .*: a record of 1000 bytes, more than the ring holds \(64\)$/);
    assert.equal(record.words.getUint32(RING0 + R_FLAGS, true) & 2, 2, "ring 0 says its consumer closed: sends fail");

    // A write position that is not a multiple of 8 in its own ring.
    const positions = await spoiled(peer, "send1", (w) => w.setUint32(RING1 + R_WRITE, 5, true));
    assert.equal(positions.code, 3);
    assert.match(positions.line, /^error EPROTO .*: its positions are corrupt \(write 5, read 0, capacity 64\)$/);

    // The same record, well formed and maximal, is read.
    const fine = await spoiled(peer, "recv1", (w) => {
      w.setUint32(RING0 + RING_DATA, 56, true);
      w.setUint32(RING0 + RING_DATA + 4, 1, true);
    });
    assert.deepEqual([fine.line, fine.code], ["got 56", 0]);
  });
}

test("no segment made by these tests is left in /dev/shm; the C build is removed", async () => {
  await rt.removeDir(buildDir);
  const left: string[] = [];
  for (const name of names) if (await rt.exists(`/dev/shm${name}`)) left.push(name);
  for (const name of left) await unlinkQuietly(name);
  assert.deepEqual(left, []);
});
