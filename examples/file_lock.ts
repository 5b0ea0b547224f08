/**
 * FileLock: two processes (this one and a child on another runtime) take turns on one lock file.
 *
 *   deno run -A examples/file_lock.ts      (or: bun examples/file_lock.ts, node --import tsx examples/file_lock.ts)
 */
import { FileLock, runtime, runtimeArgv } from "../mod.ts";

const rt = await runtime();
const [role, path] = rt.args();

if (role === "child") {
  using file = await FileLock.open(path!);
  for (let i = 0; i < 3; i++) {
    using _g = await file.lock({ timeout: 10_000 });
    console.log(`child (${rt.name}, pid ${rt.pid}) holds the lock`);
    await new Promise((r) => setTimeout(r, 50));
  }
} else {
  const dir = await rt.makeTempDir("ipckit-example-");
  const lockPath = `${dir}/app.lock`;
  try {
    using file = await FileLock.open(lockPath); // created with mode 0600
    const peer = rt.name === "bun" ? "deno" : "bun";
    const child = rt.spawn([...runtimeArgv(peer, rt.fromFileUrl(import.meta.url)), "child", lockPath], {
      stdio: "inherit",
    });
    for (let i = 0; i < 3; i++) {
      using _g = await file.lock({ timeout: 10_000 });
      console.log(`parent (${rt.name}, pid ${rt.pid}) holds the lock`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const status = await child.exited;
    console.log(`parent and child took turns: 6 holds, child exited with ${status.code}`);
  } finally {
    await rt.removeDir(dir);
  }
}
