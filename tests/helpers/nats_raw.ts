/**
 * A raw NATS peer for the hostile-peer tests: a plain nats.js connection (not ipckit's NatsLink) that speaks the
 * channel wire format of `transports/nats.ts` by hand, byte by byte, and breaks it on purpose.
 */
import { connect } from "@nats-io/transport-node";

/** The wire message types, as the module doc of transports/nats.ts lists them. */
export const T = { DATA: 1, CREDIT: 2, END: 3, PING: 4, HELLO: 5, WELCOME: 6, REFUSE: 7, MORE: 8 } as const;

/** A plain nats.js connection, as far as these tests use it. */
export interface RawConnection {
  publish(subject: string, payload?: Uint8Array, options?: { reply?: string }): void;
  subscribe(subject: string, options?: { callback?: (e: Error | null, m: RawMsg) => void }): {
    unsubscribe(): void;
  };
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A message the raw peer received. */
export interface RawMsg {
  readonly subject: string;
  readonly reply?: string;
  readonly data: Uint8Array;
}

/** Opens a plain nats.js connection to `url`. */
export async function rawConnection(url: string): Promise<RawConnection> {
  return await connect({ servers: url, name: `raw-peer-${Math.random().toString(36).slice(2, 8)}` }) as RawConnection;
}

/** `[type, version, window (u32), beat (u32)]`: a HELLO or WELCOME. */
export function greeting(type: number, window: number, beat: number, version = 1): Uint8Array {
  const out = new Uint8Array(10);
  const view = new DataView(out.buffer);
  out[0] = type;
  out[1] = version;
  view.setUint32(2, window);
  view.setUint32(6, beat);
  return out;
}

/** `[type, ...body]`. */
export function frame(type: number, body: Uint8Array | number[] = []): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = type;
  out.set(body, 1);
  return out;
}

/** The u32 that follows the type byte (CREDIT). */
export function word(data: Uint8Array): number {
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(1);
}

/**
 * One end of a channel, played by hand: an inbox of its own, what arrives there (in order), and the peer's inbox
 * once a greeting told it.
 */
export class RawEnd {
  readonly inbox = `_INBOX.raw${Math.random().toString(36).slice(2)}`;
  readonly got: RawMsg[] = [];
  peer = "";
  #wake: () => void = () => {};
  readonly #sub: { unsubscribe(): void };

  constructor(readonly c: RawConnection) {
    this.#sub = c.subscribe(this.inbox, {
      callback: (_e, m) => {
        if (m.reply) this.peer = m.reply;
        this.got.push({ subject: m.subject, data: m.data.slice(), ...(m.reply ? { reply: m.reply } : {}) });
        this.#wake();
      },
    });
  }

  /** Sends a HELLO to a listener's subject and waits for its answer (WELCOME or REFUSE). */
  async hello(subject: string, window: number, beat: number, timeout = 60_000): Promise<Uint8Array> {
    this.c.publish(subject, greeting(T.HELLO, window, beat), { reply: this.inbox });
    return (await this.next((d) => d[0] === T.WELCOME || d[0] === T.REFUSE, timeout)).data;
  }

  /** Publishes to the peer's inbox. */
  send(data: Uint8Array): void {
    this.c.publish(this.peer, data);
  }

  /** The next message that `pick` accepts (others are skipped and dropped), within `timeout` ms. */
  async next(pick: (d: Uint8Array) => boolean = () => true, timeout = 60_000): Promise<RawMsg> {
    const deadline = Date.now() + timeout;
    for (;;) {
      while (this.got.length > 0) {
        const m = this.got.shift()!;
        if (pick(m.data)) return m;
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the raw peer got no matching message in ${timeout} ms`);
      await new Promise<void>((r) => {
        const timer = setTimeout(r, left);
        this.#wake = () => {
          clearTimeout(timer);
          r();
        };
      });
    }
  }

  close(): void {
    this.#sub.unsubscribe();
  }
}
