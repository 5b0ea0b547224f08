/**
 * The wire format of NATS channels (the table is in the module doc of `transports/nats.ts`): the message types,
 * one decoder for everything a peer can send, the encoders, and the bounds a side holds its peer to. Pure code: no
 * connection, no timer, so that it can be fuzzed by itself (`tests/fuzz/nats.ts`).
 *
 * @module
 */
import { ProtocolError } from "../errors.ts";

export const DATA = 1, CREDIT = 2, END = 3, PING = 4, HELLO = 5, WELCOME = 6, REFUSE = 7, MORE = 8;
/** The only version of the format. */
export const VERSION = 1;
/** Bytes a DATA or MORE message counts for besides its body (subjects and protocol lines). */
export const OVERHEAD = 32;
/** Beats of silence after which the peer counts as gone. */
export const MISSES = 3;
/** The smallest window a side may announce (and the smallest `window` option). */
export const MIN_WINDOW = 1024;
/** The largest window: it travels as a u32. */
export const MAX_WINDOW = 0xffffffff;
/** The shortest heartbeat a peer is held to, in ms (a shorter announced one counts as this). */
export const MIN_HEARTBEAT = 10;
/** The longest `heartbeat` and `maxHeartbeat` options, in ms. */
export const MAX_HEARTBEAT = 3_600_000;
/** The longest heartbeat a peer may announce by default (`maxHeartbeat`), in ms: a silent peer is gone in 3 min. */
export const DEFAULT_MAX_HEARTBEAT = 60_000;
/** A REFUSE text that starts with this means "my accept queue is full, try again later". */
export const BUSY = "busy:";
/** At most this many characters of a peer's REFUSE text reach an error message. */
const MAX_REASON = 200;

/** A HELLO or WELCOME: the sender's version, window (bytes) and heartbeat (ms), as announced. */
export interface Greeting {
  readonly version: number;
  readonly window: number;
  readonly heartbeat: number;
}

/** One decoded NATS message of the format. */
export type Frame =
  | { readonly type: typeof DATA | typeof MORE; readonly body: Uint8Array }
  | { readonly type: typeof CREDIT; readonly bytes: number }
  | { readonly type: typeof END | typeof PING }
  | { readonly type: typeof HELLO | typeof WELCOME; readonly greeting: Greeting }
  | { readonly type: typeof REFUSE; readonly reason: string };

const NAMES: Record<number, string> = { 1: "DATA", 2: "CREDIT", 3: "END", 4: "PING", 5: "HELLO", 6: "WELCOME" };

/**
 * Decodes one NATS message payload. `body` of DATA/MORE is a view into `data` (copy it to keep it). Sizes are
 * strict: CREDIT is 5 bytes, END and PING 1, HELLO/WELCOME at least 10 (later versions may add fields).
 *
 * @throws {ProtocolError} for an empty payload, an unknown type, or a control message of the wrong size.
 */
export function readFrame(data: Uint8Array): Frame {
  if (data.byteLength === 0) throw new ProtocolError("an empty NATS message (no type byte)");
  const type = data[0]!;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  switch (type) {
    case DATA:
    case MORE:
      return { type, body: data.subarray(1) };
    case CREDIT:
      if (data.byteLength !== 5) throw wrongSize(type, data.byteLength, "5");
      return { type, bytes: view.getUint32(1) };
    case END:
    case PING:
      if (data.byteLength !== 1) throw wrongSize(type, data.byteLength, "1");
      return { type };
    case HELLO:
    case WELCOME:
      if (data.byteLength < 10) throw new ProtocolError(`a malformed ${NAMES[type]} (${data.byteLength} bytes)`);
      return { type, greeting: { version: data[1]!, window: view.getUint32(2), heartbeat: view.getUint32(6) } };
    case REFUSE:
      return { type, reason: printable(data.subarray(1)) };
    default:
      throw new ProtocolError(`unknown message type ${type}`);
  }
}

function wrongSize(type: number, size: number, expected: string): ProtocolError {
  return new ProtocolError(`a ${NAMES[type]} of ${size} bytes (it has ${expected})`);
}

/** A peer's text, safe to put in a message: UTF-8 (lossy), control characters dropped, at most 200 characters. */
function printable(bytes: Uint8Array): string {
  // deno-lint-ignore no-control-regex
  const text = new TextDecoder().decode(bytes.subarray(0, 4 * MAX_REASON)).replace(/[\u0000-\u001f\u007f-\u009f]/g, "");
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON)}...` : text;
}

/** Why a greeting cannot be taken (its version, a window below {@linkcode MIN_WINDOW}), or undefined. */
export function greetingProblem(g: Greeting): string | undefined {
  if (g.version !== VERSION) return `ipckit NATS channel version ${VERSION} only; got ${g.version}`;
  if (g.window < MIN_WINDOW) return `a window of ${g.window} bytes is below ${MIN_WINDOW}`;
  return undefined;
}

/** The heartbeat a peer is held to: what it announced, within [{@linkcode MIN_HEARTBEAT}, `max`]. */
export function clampBeat(announced: number, max: number): number {
  return Math.min(Math.max(announced, MIN_HEARTBEAT), max);
}

/** `[type, u32...]`: CREDIT and the one-byte messages. */
export function control(type: number, ...words: number[]): Uint8Array {
  const out = new Uint8Array(1 + 4 * words.length);
  out[0] = type;
  const view = new DataView(out.buffer);
  words.forEach((w, i) => view.setUint32(1 + 4 * i, w));
  return out;
}

/** A HELLO or WELCOME. */
export function greeting(type: typeof HELLO | typeof WELCOME, window: number, heartbeat: number): Uint8Array {
  const out = new Uint8Array(10);
  out[0] = type;
  out[1] = VERSION;
  const view = new DataView(out.buffer);
  view.setUint32(2, window);
  view.setUint32(6, heartbeat);
  return out;
}

/** A REFUSE with its reason. */
export function refuse(reason: string): Uint8Array {
  const bytes = new TextEncoder().encode(reason);
  const out = new Uint8Array(bytes.byteLength + 1);
  out[0] = REFUSE;
  out.set(bytes, 1);
  return out;
}

/** A NATS subject a peer may name as its inbox: tokens without spaces or wildcards, at most 512 characters. */
export function validInbox(subject: string | undefined): subject is string {
  return subject !== undefined && subject.length <= 512 && /^[^\s.*>]+(?:\.[^\s.*>]+)*$/.test(subject);
}
