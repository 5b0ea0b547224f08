// A pool worker module in plain JavaScript, for a project that installed the tarball (no tsx there).
import process from "node:process";
import { worker } from "ipckit/pool";

await worker({ run: (n) => n * n, whoami: () => process.pid });
