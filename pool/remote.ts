/**
 * The NATS side of a {@linkcode Pool} with `transport: "nats"`: workers are processes anywhere that reach the
 * NATS server (`ipckit worker --nats URL --module file.ts`). Each one joins by connecting a channel to the
 * subject `<subject>.join`; masters of the same `subject` form a queue group on it, so a worker joins exactly one
 * of them. The master then treats the worker like one it started: it sends it tasks over that channel (never more
 * than `concurrency` at once, to the least busy worker), probes it, and learns of its death when the channel's
 * heartbeats stop (`3 × heartbeat` ms) or its connection drops.
 *
 * Delivery semantics, the same as for local workers: each task settles exactly once at the master. A task whose
 * worker dies or vanishes mid-run is run again on another worker when marked `idempotent` (at-least-once, up to
 * `retries` times), and otherwise rejects with `WorkerDiedError` (at-most-once). A task never runs on two workers at
 * the same time, and a late answer from a worker that was given up on is ignored.
 *
 * @module
 */
import { ClosedError } from "../errors.ts";
import * as nats from "../transports/nats.ts";
import { checkSubject, linkFor, type NatsLink, type NatsTarget } from "../transports/nats_link.ts";
import { Member } from "./member.ts";

/** Where the pool's workers join it, and how fast their death is noticed. */
export type NatsPoolOptions = NatsTarget & {
  /** The pool's name on NATS: workers join on `<subject>.join`. Default `"ipckit.pool"`. */
  subject?: string;
  /** Heartbeat period of the worker channels, in ms: a silent worker counts as dead after 3. Default 1000. */
  heartbeat?: number;
};

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

  constructor(private readonly options: NatsPoolOptions, private readonly startTimeout: number) {
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
        let channel;
        try {
          channel = await this.#listener!.accept();
        } catch (e) {
          if (!(e instanceof ClosedError) || !this.#closing) failed(e);
          return;
        }
        const starting = Member.remote<T>(channel, this.startTimeout).then(
          (m) => (this.#closing ? m.stop(0) : adopt(m)),
          () => {}, // a worker that joins and does not answer is dropped: the worker sees its channel end
        );
        this.#starting.add(starting);
        void starting.then(() => this.#starting.delete(starting));
      }
    })();
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
