// Runs pool_worker.mjs as worker threads and as Node worker processes from a project that installed the tarball
// (where tsx is not installed): prints the results.
//   node pool_master.mjs
import process from "node:process";
import { Pool } from "ipckit/pool";

const worker = new URL("./pool_worker.mjs", import.meta.url);
const report = {};
for (const kind of ["thread", "process"]) {
  const pool = new Pool({ worker, kind, size: 2 });
  try {
    report[kind] = {
      squares: await Promise.all([1, 2, 3, 4].map((n) => pool.run(n))),
      pids: [...new Set(await Promise.all([0, 1, 2, 3].map(() => pool.call("whoami", []))))].length,
    };
  } finally {
    await pool.close();
  }
}
report.master = process.pid;
console.log(JSON.stringify(report));
