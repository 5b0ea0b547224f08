/** The task of bench/pool.ts for ipckit's pool: squares a number. */
import { pool } from "../../mod.ts";

await pool.worker((n: number) => n * n);
