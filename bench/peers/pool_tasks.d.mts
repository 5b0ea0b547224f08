/** The types of `pool_tasks.mjs`. */
export declare const tasks: {
  trivial(n: number): number;
  cpu(n: number): number;
  bytes(b: Uint8Array): number;
};
declare const entry: (t: { kind: "trivial" | "cpu" | "bytes"; arg: unknown }) => number;
export default entry;
