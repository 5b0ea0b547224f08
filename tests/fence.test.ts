/**
 * os/fence.ts: where a process may publish shm records with plain stores (x86-64, membarrier(2) registered), driven
 * with a scripted syscall (a kernel without it, a refused registration, a fence that fails), then this machine's
 * kernel, then children of each runtime with and without `IPCKIT_STRICT_PUBLISH=1`. That no wake-up is lost with
 * plain publication is tested in `tests/shm_idle.test.ts`, against children of each runtime.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { arch } from "node:os";
import { runtime, runtimeArgv, type RuntimeName } from "../mod.ts";
import { type Native, native } from "../ffi/native.ts";
import { makeFence } from "../os/fence.ts";
import { CONSUMER_FENCES } from "../shm/ring.ts";
import { spawnWithLines } from "./helpers/child_lines.ts";
import { within } from "../async/mod.ts";

const RUNTIMES: RuntimeName[] = ["deno", "bun", "node"];
const CHILD = new URL("./helpers/fence_flags_child.ts", import.meta.url);

/** A Native whose syscall(2) answers membarrier commands from `answer` and records them. */
function scripted(answer: (cmd: number) => number): { ffi: Native; calls: number[] } {
  const calls: number[] = [];
  const ffi = {
    call: {
      syscall: (nr: number, cmd: number) => {
        assert.equal(nr, 324, "membarrier's number on x86-64");
        calls.push(cmd);
        return answer(cmd);
      },
    },
  } as unknown as Native;
  return { ffi, calls };
}

test("fence: none on another architecture, none when strict, and the syscall is not even asked", () => {
  const { ffi, calls } = scripted(() => 0x3ff);
  assert.equal(makeFence(ffi, "arm64", false), undefined);
  assert.equal(makeFence(ffi, "x64", true), undefined);
  assert.deepEqual(calls, []);
});

test("fence: none when the kernel lacks the expedited global barrier or refuses the registration", () => {
  for (
    const [query, register, why] of [
      [-1, 0, "no membarrier (ENOSYS, or a seccomp filter)"],
      [0x1, 0, "only the slow MEMBARRIER_CMD_GLOBAL"],
      [0x2, 0, "the barrier without its registration"],
      [0x3ff, -1, "the registration refused"],
    ] as const
  ) {
    const { ffi, calls } = scripted((cmd) => (cmd === 0 ? query : register));
    assert.equal(makeFence(ffi, "x64", false), undefined, why);
    assert.deepEqual(calls, query >= 0 && (query & 6) === 6 ? [0, 4] : [0], why);
  }
});

test("fence: registered once, then each fence is one MEMBARRIER_CMD_GLOBAL_EXPEDITED; a failing one says so", () => {
  let fail = false;
  const { ffi, calls } = scripted((cmd) => (cmd === 0 ? 0x3ff : cmd === 2 && fail ? -1 : 0));
  const fence = makeFence(ffi, "x64", false);
  assert.ok(fence !== undefined);
  assert.equal(fence(), true);
  assert.equal(fence(), true);
  assert.deepEqual(calls, [0, 4, 2, 2]);
  fail = true;
  assert.equal(fence(), false, "ENOMEM: the consumer must not sleep on its next look");
});

test("fence: this machine's kernel registers and fences (x86-64), or there is none", async () => {
  const fence = makeFence(await native(), arch(), false);
  if (arch() !== "x64") return assert.equal(fence, undefined);
  assert.ok(fence !== undefined, "Linux >= 4.16 on x86-64 has MEMBARRIER_CMD_GLOBAL_EXPEDITED");
  for (let i = 0; i < 100; i++) assert.equal(fence(), true);
});

for (const peer of RUNTIMES) {
  test(`fence: a ${peer} process says on its rings that it can fence, and not with IPCKIT_STRICT_PUBLISH=1`, {
    timeout: 60_000,
  }, async () => {
    const rt = await runtime();
    for (const strict of [false, true]) {
      const { child, line } = spawnWithLines(
        rt,
        [...runtimeArgv(peer, rt.fromFileUrl(CHILD))],
        strict ? { IPCKIT_STRICT_PUBLISH: "1" } : {},
      );
      try {
        const next = line();
        assert.ok(await within(next, 30_000), `the ${peer} child printed nothing in 30 s`);
        const got = await next;
        const flags = JSON.parse(got) as number[];
        const expected = !strict && arch() === "x64" ? CONSUMER_FENCES : 0;
        assert.deepEqual(
          flags.map((f) => f & CONSUMER_FENCES),
          [expected, expected],
          `${peer}, strict ${strict}: ${got}`,
        );
        assert.equal((await child.exited).code, 0);
      } finally {
        child.kill("SIGKILL");
        await child.exited;
      }
    }
  });
}
