/**
 * The segment `bench/ring_turns.ts` and its peer share: 64 bytes of control words ([0] the peer is ready, [1] stop,
 * [2] the peer's checksum), then one ring (`shm/ring.ts`) of {@linkcode JS_RING_CAPACITY} bytes, the JS ring's size,
 * so that the JS ring's writer can write into it (its records are the ring's).
 *
 * @module
 */
import { ringSize } from "../shm/ring.ts";
import { JS_RING_CAPACITY } from "./js_ring.ts";

/** Where the ring starts in the segment. */
export const RING_AT = 64;
/** Bytes of the segment. */
export const TURNS_SEGMENT = RING_AT + ringSize(JS_RING_CAPACITY);
