/** The tasks of bench/pool.ts for ipckit's pool (`bench/peers/pool_tasks.mjs`): one handler per kind, `run` squares. */
import { pool } from "../../mod.ts";
// @ts-types="./pool_tasks.d.mts"
import { tasks } from "./pool_tasks.mjs";

await pool.worker({ run: tasks.trivial, ...tasks });
