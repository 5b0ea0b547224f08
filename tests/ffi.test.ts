import { test } from "node:test";
import assert from "node:assert/strict";
import { lstatSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { isMapFailed, MAP_SHARED, O_CREAT, O_EXCL, O_RDWR, PROT_READ, PROT_WRITE } from "../ffi/constants.ts";
import { ERRNO, errnoError } from "../ffi/errno.ts";
import { native } from "../ffi/native.ts";
import { runtimeArgv } from "../runtimes/argv.ts";
import { runtime } from "../runtimes/detect.ts";
import type { ChildProcess, ExitStatus } from "../runtimes/runtime.ts";
import { RUNTIMES } from "../runtimes/runtime.ts";
import { AlreadyExistsError, NotFoundError } from "../errors.ts";
import { COUNTER, INCREMENTS, MAGIC, READY, SIZE, SLOT_BASE, SLOT_SIZE, TURN } from "./helpers/shm_layout.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHILD = fileURLToPath(new URL("./helpers/shm_child.ts", import.meta.url));

function uniqueShmName(pid: number): string {
  return `/ipckit-test-${pid}-${Math.random().toString(36).slice(2, 10)}`;
}

test("native() mkfifo creates a FIFO, and again on the same path fails with EEXIST as AlreadyExistsError", async () => {
  const ffi = await native();
  const dir = mkdtempSync(join(tmpdir(), "ipckit-ffi-"));
  try {
    const path = join(dir, "fifo");
    assert.equal(ffi.call.mkfifo(ffi.cstring(path), 0o600), 0);
    const stat = lstatSync(path);
    assert.equal(stat.isFIFO(), true);
    assert.equal(stat.mode & 0o777 & ~0o600, 0, "mode 0600 minus the umask");

    assert.equal(ffi.call.mkfifo(ffi.cstring(path), 0o600), -1);
    const errno = ffi.errno();
    assert.equal(errno, ERRNO.EEXIST);
    const error = errnoError(errno, `create FIFO "${path}"`);
    assert.ok(error instanceof AlreadyExistsError);
    assert.equal(error.name, "AlreadyExistsError");
    assert.equal(error.code, "EEXIST");
    assert.equal(error.message, `Cannot create FIFO "${path}": it already exists`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("native().errno() is ENOENT after shm_open of a name that does not exist, mapped to NotFoundError", async () => {
  const ffi = await native();
  const rt = await runtime();
  const name = uniqueShmName(rt.pid);
  assert.equal(ffi.call.shm_open(ffi.cstring(name), O_RDWR, 0), -1);
  const errno = ffi.errno();
  assert.equal(errno, 2);
  assert.equal(errno, ERRNO.ENOENT);
  const error = errnoError(errno, `open shared memory "${name}"`);
  assert.ok(error instanceof NotFoundError);
  assert.equal(error.message, `Cannot open shared memory "${name}": it does not exist`);
});

test(
  "one POSIX shared memory segment is mapped by deno, bun and node children at once, and Atomics work across them",
  { timeout: 60_000 },
  async () => {
    const ffi = await native();
    const rt = await runtime();
    const name = uniqueShmName(rt.pid);
    const cname = ffi.cstring(name);
    const fd = ffi.call.shm_open(cname, O_CREAT | O_EXCL | O_RDWR, 0o600);
    assert.ok(fd >= 0, `shm_open("${name}") failed with errno ${ffi.errno()}`);
    let address = 0;
    const children: ChildProcess[] = [];
    let done = false;
    const cleanup: Record<string, number> = {};
    try {
      assert.equal(ffi.call.ftruncate(fd, SIZE), 0, `ftruncate failed with errno ${ffi.errno()}`);
      address = ffi.call.mmap(null, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      assert.ok(!isMapFailed(address), `mmap failed with errno ${ffi.errno()}`);
      const buffer = ffi.view(address, SIZE);
      assert.equal(buffer.byteLength, SIZE);
      const words = new Int32Array(buffer);
      // A fresh segment is zero-filled; the children only see the magic value if the mapping is really shared.
      assert.ok(new Uint8Array(buffer).every((b) => b === 0));
      const magic = 1 + Math.floor(Math.random() * 0x7fff_fffe);
      Atomics.store(words, MAGIC, magic);

      for (const [i, runtimeName] of RUNTIMES.entries()) {
        const argv = [...runtimeArgv(runtimeName, CHILD), name, String(i), String(SIZE)];
        children.push(rt.spawn(argv, { cwd: ROOT, stdio: "null", stderr: "inherit" }));
      }
      // A child that fails leaves the others waiting for it: stop them at once instead of at their timeout.
      const stopOthers = (status: ExitStatus) => {
        if (status.code !== 0) { for (const child of children) child.kill("SIGKILL"); }
        return status;
      };
      const statuses = await Promise.all(children.map((c) => c.exited.then(stopOthers)));
      const ok: ExitStatus = { code: 0, signal: null };
      assert.deepEqual(
        Object.fromEntries(statuses.map((status, i) => [RUNTIMES[i], status])),
        Object.fromEntries(RUNTIMES.map((r) => [r, ok])),
        "every child exits with code 0",
      );

      assert.equal(Atomics.load(words, READY), RUNTIMES.length);
      assert.equal(Atomics.load(words, TURN), RUNTIMES.length);
      assert.equal(Atomics.load(words, COUNTER), RUNTIMES.length * INCREMENTS);
      const decoder = new TextDecoder();
      for (const [i, runtimeName] of RUNTIMES.entries()) {
        const slot = SLOT_BASE + i * SLOT_SIZE;
        const slotWords = new Int32Array(buffer, slot, 3);
        assert.equal(Atomics.load(slotWords, 0), magic, `the ${runtimeName} child did not see the parent's value`);
        const length = Atomics.load(slotWords, 1);
        // Not compared with children[i].pid: a wrapper binary (IPCKIT_DENO…) may stand between them.
        assert.ok(Atomics.load(slotWords, 2) > 0, `the ${runtimeName} child wrote no pid`);
        const written = decoder.decode(new Uint8Array(buffer, slot + 12, length).slice());
        assert.equal(written, runtimeName);
      }
      done = true;
    } finally {
      if (!done) {
        for (const child of children) child.kill("SIGKILL");
        await Promise.allSettled(children.map((c) => c.exited));
      }
      // The view must not be touched after munmap.
      if (address !== 0 && !isMapFailed(address)) cleanup.munmap = ffi.call.munmap(address, SIZE);
      cleanup.close = ffi.call.close(fd);
      cleanup.shm_unlink = ffi.call.shm_unlink(cname);
    }
    assert.deepEqual(cleanup, { munmap: 0, close: 0, shm_unlink: 0 });
  },
);
