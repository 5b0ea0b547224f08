/**
 * Child of `tests/fence.test.ts`: loads FFI, makes a thread pair and prints the flags of its two rings (whether
 * each says its consumer and producer fence), as one line of JSON: `[flags of ring 0, flags of ring 1]`.
 *
 * @module
 */
import { shm } from "../../mod.ts";
import { native } from "../../ffi/native.ts";
import { ringSize } from "../../shm/ring.ts";
import { CHANNEL_HEADER } from "../../shm/ring_channel_layout.ts";

await native();
const [a, handle] = shm.pair({ capacity: 4096 });
const b = shm.fromHandle(handle);
const head = new Int32Array(handle.buffer);
console.log(JSON.stringify([CHANNEL_HEADER, CHANNEL_HEADER + ringSize(4096)].map((at) => head[(at + 12) / 4])));
await Promise.all([a.close(), b.close()]);
