/**
 * Loans of a shared-memory channel's ring: bytes lent to fill in place (`tryLoan`/`loan`, then `commit()`) and bytes
 * lent to read in place (`tryReceiveLoan`/`receiveLoan`, then `release()`), with no copy of the message on either
 * side (after iceoryx2's loans). One loan each way at a time per channel end: a send (or a receive) while one is
 * out is refused with an `IpcError` that says which.
 *
 * **The bytes are a view of the ring.** ipckit cannot revoke a view of shared memory, so misuse is not an error it
 * can raise but a rule of the API, as for a buffer handed to `write(2)`: after `commit()`, `abandon()` or
 * `release()` the space is the peer's again, and writing through a kept view corrupts messages that come later
 * (reading one reads them). Once the channel is closed, a kept view is detached (Deno, Bun) or reads zeros (Node):
 * never freed memory. A message whose bytes would wrap around the end of the ring is lent as a copy (one copy, at
 * `commit()` for a send loan, when lent for a received one).
 *
 * @module
 */
import { IpcError } from "../errors.ts";
import type { Ring } from "./ring.ts";

/** What a loan's channel end does when the loan ends. @internal */
export interface LoanOwner {
  commit(loan: SendLoan, length: number): void;
  abandon(loan: SendLoan): void;
  release(loan: ReceiveLoan): void;
}

/** What both kinds of loan are: bytes, and the channel end they go back to, once. */
abstract class Loan implements Disposable {
  readonly bytes: Uint8Array;
  #owner: LoanOwner | undefined;

  /** @internal Made by a shm channel's loan methods. */
  constructor(owner: LoanOwner, bytes: Uint8Array) {
    this.#owner = owner;
    this.bytes = bytes;
  }

  /** True until the loan ended. */
  get open(): boolean {
    return this.#owner !== undefined;
  }

  /** Ends the loan: its owner, the first time; undefined after. */
  protected end(): LoanOwner | undefined {
    const owner = this.#owner;
    this.#owner = undefined;
    return owner;
  }

  abstract [Symbol.dispose](): void;
}

/**
 * Bytes of the ring lent to be filled in place: write the message into {@linkcode bytes}, then {@linkcode commit}
 * (the first `length` bytes go). `using` abandons it unless it was committed.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 1 << 16 });
 * const b = shm.fromHandle(handle);
 * const loan = a.tryLoan(1000)!; // undefined when the ring has no room now; await a.loan(1000) waits
 * loan.bytes.fill(7, 0, 600);
 * loan.commit(600); // sends the first 600 bytes
 * console.log((await b.receive()).length); // 600
 * await a.close();
 * await b.close();
 * ```
 */
export class SendLoan extends Loan {
  /** The lent bytes: the ring's own memory (or, for a message that would wrap around its end, a buffer of its own). */
  declare readonly bytes: Uint8Array;

  /** True until committed or abandoned. */
  override get open(): boolean {
    return super.open;
  }

  /**
   * Sends the first `length` bytes (all by default) as one message; the bytes are the peer's from now on.
   *
   * @throws {IpcError} when the loan was committed or abandoned already; {@linkcode ClosedError} when the channel
   * closed meanwhile (nothing is sent); `RangeError` when `length` is not an integer from 0 to `bytes.length`.
   */
  commit(length: number = this.bytes.length): void {
    if (!this.open) throw new IpcError("Cannot commit a loan: it was committed or abandoned already");
    if (!(Number.isInteger(length) && length >= 0 && length <= this.bytes.length)) {
      throw new RangeError(`Cannot commit ${length} bytes of a loan of ${this.bytes.length}`);
    }
    this.end()?.commit(this, length);
  }

  /** Gives the bytes back without sending anything; idempotent (and nothing once committed). */
  abandon(): void {
    this.end()?.abandon(this);
  }

  /** Abandons the loan unless it was committed (`using loan = ...`). */
  [Symbol.dispose](): void {
    this.abandon();
  }
}

/**
 * A received message lent where it lies in the ring: read {@linkcode bytes}, then {@linkcode release} it (the next
 * receive on the channel end is refused until then). `using` releases it.
 *
 * @example
 * ```ts
 * import { shm } from "ipckit";
 * const [a, handle] = shm.pair({ capacity: 1 << 16 });
 * const b = shm.fromHandle(handle);
 * await a.send(new Uint8Array([1, 2, 3]));
 * {
 *   using message = await b.receiveLoan();
 *   console.log(message.bytes); // Uint8Array [1, 2, 3], not copied
 * } // released here
 * await a.close();
 * await b.close();
 * ```
 */
export class ReceiveLoan extends Loan {
  /** The message's bytes: the ring's own memory (a copy, for a message that wraps around the end of the ring). */
  declare readonly bytes: Uint8Array;

  /** True until released. */
  override get open(): boolean {
    return super.open;
  }

  /** Gives the message's space back to the producer; idempotent. Keep no view of `bytes` past this. */
  release(): void {
    this.end()?.release(this);
  }

  /** Releases the loan (`using message = ...`). */
  [Symbol.dispose](): void {
    this.release();
  }
}

/** What a channel end does with the loans that end: publishes a committed send loan, takes a released receive loan. */
export interface LoanEnds {
  /** Publishes the message of `length` bytes filled where the send loan was lent (or in `wrapped`, to copy in). */
  commit(length: number, wrapped: Uint8Array | undefined): void;
  /** Takes the received message of `length` bytes that was lent (its space is the producer's again). */
  release(length: number): void;
}

/** `n` bytes of `kept`, or of a larger buffer when it is too small (its bytes are not kept). */
function scratch(kept: Uint8Array, n: number): Uint8Array {
  const buffer = kept.buffer.byteLength >= n ? kept.buffer : new ArrayBuffer(Math.max(n, kept.buffer.byteLength * 2));
  return new Uint8Array(buffer, 0, n);
}

/**
 * The loans of one channel end: the one out each way, and where a loan of a message that wraps around the end of the
 * ring lives (kept for the next, one loan at a time each way, as a fresh megabyte costs page faults on every use).
 * @internal
 */
export class Loans implements LoanOwner {
  /** The send loan out, if any: other sends are refused meanwhile. */
  send: SendLoan | undefined;
  /** The receive loan out, if any: other receives are refused meanwhile. */
  receive: ReceiveLoan | undefined;
  readonly #ends: LoanEnds;
  #sendWraps = false;
  #sendScratch: Uint8Array = new Uint8Array(0);
  #receiveScratch: Uint8Array = new Uint8Array(0);

  constructor(ends: LoanEnds) {
    this.#ends = ends;
  }

  /** Lends `length` bytes of `ring` at data offset `start` (its reservation for the next message). */
  lendSend(ring: Ring, start: number, length: number): SendLoan {
    this.#sendWraps = start + length > ring.capacity;
    const bytes = this.#sendWraps ? (this.#sendScratch = scratch(this.#sendScratch, length)) : ring.view(start, length);
    return this.send = new SendLoan(this, bytes);
  }

  /** Lends the message of `n` bytes at the read position of `ring` (a copy when it wraps around the end). */
  lendReceive(ring: Ring, n: number): ReceiveLoan {
    const at = ring.lentAt(n);
    const bytes = at >= 0
      ? ring.view(at, n)
      : ring.lentCopy(n, this.#receiveScratch = scratch(this.#receiveScratch, n));
    return this.receive = new ReceiveLoan(this, bytes);
  }

  commit(loan: SendLoan, length: number): void {
    if (loan !== this.send) return;
    this.send = undefined;
    this.#ends.commit(length, this.#sendWraps ? loan.bytes : undefined);
  }

  abandon(loan: SendLoan): void {
    if (loan === this.send) this.send = undefined;
  }

  release(loan: ReceiveLoan): void {
    if (loan !== this.receive) return;
    this.receive = undefined;
    this.#ends.release(loan.bytes.length);
  }
}
