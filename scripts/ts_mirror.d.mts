// Types of scripts/ts_mirror.mjs, for the test that drives it.

/** Where the copy of the TypeScript file `file` (absolute) lives under `out`. */
export function mirrorPath(out: string, file: string): string;

/**
 * Brings `out` up to date with the TypeScript files under `root`; returns how many files were compiled and how many
 * there are.
 */
export function buildMirror(root: string, out: string): Promise<{ compiled: number; total: number }>;
