/**
 * Fuzz target: the record protocol of the queue channels (POSIX mq, System V, file queue: `transports/records.ts`),
 * as a hostile peer would feed it: any records, in any order, with any kind byte. Greetings are read with
 * `helloIdentity`, data with the `Reassembler`; what may come out is a message within `maxMessage`, a greeting, or a
 * ProtocolError / MessageTooLargeError.
 */
import fc from "fast-check";
import { MessageTooLargeError, ProtocolError } from "../../errors.ts";
import { DATA, END, HELLO, helloIdentity, MORE, Reassembler } from "../../transports/records.ts";
import type { FuzzTarget } from "./target.ts";

const MAX = 300;

const record = fc.oneof(
  fc.tuple(fc.constantFrom(DATA, MORE, END, HELLO), fc.uint8Array({ maxLength: 120 })).map(([k, body]) => {
    const r = new Uint8Array(1 + body.byteLength);
    r[0] = k;
    r.set(body, 1);
    return r;
  }),
  fc.uint8Array({ maxLength: 16 }), // anything, including the empty record and unknown kinds
);

export const target: FuzzTarget<Uint8Array[]> = {
  name: "records",
  inputs: fc.array(record, { maxLength: 12 }),
  run(records) {
    const assembler = new Reassembler(MAX, "fuzzed channel");
    for (const r of records) {
      try {
        if (r[0] === HELLO || r.byteLength === 0) {
          const who = helloIdentity(r, "fuzzed channel");
          if (!(who.id > 0)) throw new Error(`a greeting named pid ${who.id}`);
        } else if (r[0] === DATA || r[0] === MORE) {
          const m = assembler.take(r);
          if (m !== undefined && m.byteLength > MAX) throw new Error(`a message of ${m.byteLength} > ${MAX} bytes`);
        }
      } catch (e) {
        if (e instanceof MessageTooLargeError) return; // the channel ends there
        if (!(e instanceof ProtocolError)) throw e;
      }
    }
  },
};
