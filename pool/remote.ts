/**
 * The NATS side of a {@linkcode Pool} with `transport: "nats"`: workers are processes anywhere that reach the
 * NATS server (`ipckit worker --nats URL --module file.ts`). Each one joins by connecting a channel to the
 * subject `<subject>.join`; masters of the same `subject` form a queue group on it, so a worker joins exactly one
 * of them. The master then treats the worker like one it started: it sends it tasks over that channel (never more
 * than `concurrency` at once, to the least busy worker), probes it, and learns of its death when the channel's
 * heartbeats stop (`3 × heartbeat` ms) or its connection drops.
 *
 * With `secret`, a worker must prove it knows the shared secret before it is adopted, and the pool proves it to
 * the worker: the HMAC-SHA256 challenge-response of `transports/auth.ts`, run on the worker's channel (the pool is
 * the `"server"`), each of its three messages one channel message. A worker that fails is closed without another
 * word (it reports that the pool refused its secret); a recorded exchange replayed later fails, as the pool's nonce
 * is new each time. At most 64 workers are admitted (handshake, then their first answer) at once; more wait in the
 * listener's accept queue, and beyond that are refused as busy (they retry).
 *
 * Delivery semantics, the same as for local workers: each task settles exactly once at the master. A task whose
 * worker dies or vanishes mid-run is run again on another worker when marked `idempotent` (at-least-once, up to
 * `retries` times), and otherwise rejects with `WorkerDiedError` (at-most-once). A task never runs on two workers at
 * the same time, and a late answer from a worker that was given up on is ignored.
 *
 * @module
 */
import { ClosedError } from "../errors.ts";
import { authenticate, MIN_SECRET_BYTES } from "../transports/auth.ts";
import * as nats from "../transports/nats.ts";
import { checkSubject, linkFor, type NatsLink, type NatsTarget } from "../transports/nats_link.ts";
import type { Channel } from "../transports/channel.ts";
import { Member } from "./member.ts";

/** Where the pool's workers join it, and how fast their death is noticed. */
export type NatsPoolOptions = NatsTarget & {
  /** The pool's name on NATS: workers join on `<subject>.join`. Default `"ipckit.pool"`. */
  subject?: string;
  /** Heartbeat period of the worker channels, in ms: a silent worker counts as dead after 3. Default 1000. */
  heartbeat?: number;
  /**
   * A shared secret workers must prove they know before they join (and that the pool proves to them), without
   * sending it: at least 16 bytes, a string as its UTF-8 bytes; random bytes are best. Give the workers the same
   * one (`ipckit worker --secret-file FILE`, or the `IPCKIT_SECRET` environment variable). Default: none (any
   * process that reaches the NATS server and subject may join).
   */
  secret?: string | Uint8Array;
};

/** Workers admitted at once (handshake, then their first answer); more wait in the accept queue. */
const MAX_JOINING = 64;

/** Default pool subject. */
export const DEFAULT_SUBJECT = "ipckit.pool";

/** The subject workers join on. */
export function joinSubject(subject: string): string {
  return `${subject}.join`;
}

/** Accepts the workers that join, as Members. */
export class RemoteWorkers<T> {
  readonly subject: string;
  #link: NatsLink | undefined;
  #owned = false;
  #listener: nats.NatsListener | undefined;
  #closing: Promise<void> | undefined;
  readonly #starting = new Set<Promise<unknown>>();

  /**
   * @param name the pool's name: each joining worker's connection is named after it (its calls' latency slots are
   * `<name> · call <method>`, as a local worker's).
   */
  constructor(
    private readonly options: NatsPoolOptions,
    private readonly startTimeout: number,
    private readonly name?: string,
  ) {
    this.subject = options.subject ?? DEFAULT_SUBJECT;
  }

  /** Validates the options now (so the Pool constructor throws for bad ones). */
  static check(options: NatsPoolOptions | undefined): void {
    if (options === undefined || options === null || typeof options !== "object") {
      throw new TypeError('Cannot make a pool on NATS: give nats: { servers } (or { link }) with transport: "nats"');
    }
    if (options.subject !== undefined) checkSubject(options.subject, "a pool subject");
    const beat = options.heartbeat;
    if (beat !== undefined && !(Number.isSafeInteger(beat) && beat >= 10)) {
      throw new RangeError(`Cannot use a worker heartbeat of ${beat}: it must be an integer >= 10 (ms)`);
    }
    const secret = options.secret;
    if (secret !== undefined) {
      if (typeof secret !== "string" && !(secret instanceof Uint8Array)) {
        throw new TypeError("Cannot make a pool on NATS: secret must be a string or a Uint8Array");
      }
      const size = typeof secret === "string" ? new TextEncoder().encode(secret).byteLength : secret.byteLength;
      if (size < MIN_SECRET_BYTES) {
        throw new RangeError(
          `Cannot make a pool on NATS: the secret is ${size} bytes; at least ${MIN_SECRET_BYTES} are needed (use random bytes)`,
        );
      }
    }
  }

  /** Connects and listens; `adopt` gets every worker that joined and answered. */
  async start(adopt: (member: Member<T>) => void, failed: (error: unknown) => void): Promise<void> {
    const { link, owned } = await linkFor("link" in this.options ? { link: this.options.link } : this.options);
    this.#link = link;
    this.#owned = owned;
    if (this.#closing) {
      if (owned) await link.close();
      return;
    }
    const heartbeat = this.options.heartbeat;
    this.#listener = await nats.listen(joinSubject(this.subject), {
      link,
      queue: this.subject,
      ...(heartbeat === undefined ? {} : { heartbeat }),
    });
    void (async () => {
      for (;;) {
        // Bounded admissions: while 64 are under way, joiners wait in the listener's queue (or are refused busy).
        while (this.#starting.size >= MAX_JOINING) await Promise.race(this.#starting);
        let channel;
        try {
          channel = await this.#listener!.accept();
        } catch (e) {
          if (!(e instanceof ClosedError) || !this.#closing) failed(e);
          return;
        }
        const starting = this.#admit(channel).then(
          (m) => (this.#closing ? m.stop(0) : adopt(m)),
          () => {}, // a worker that joins and does not answer is dropped: the worker sees its channel end
        );
        this.#starting.add(starting);
        void starting.then(() => this.#starting.delete(starting));
      }
    })();
  }

  /** The handshake (with a secret), then the worker's first answer. */
  async #admit(channel: Channel): Promise<Member<T>> {
    const secret = this.options.secret;
    if (secret !== undefined) {
      // A joiner that does not answer the challenge holds a place for at most 10 s (or startTimeout).
      const timeout = Math.max(1, Math.min(this.startTimeout, 10_000));
      await authenticate(channel, { secret, role: "server", timeout });
    }
    return await Member.remote<T>(channel, this.startTimeout, this.name);
  }

  /** Stops accepting workers; closes the link if the pool opened it. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await this.#listener?.close();
      await Promise.all([...this.#starting]);
      if (this.#owned) await this.#link?.close();
    })();
    return this.#closing;
  }
}
