/**
 * Child of `tests/shm_loan.test.ts`: opens the shm channel the parent created and, until the parent closes it,
 * answers every message with loans only: the message is read where it lies (`receiveLoan`), checked against the
 * deterministic stream of `shm_batch_data.ts`, and answered with message `i` of seed `seed + 1` written straight into
 * the ring (`loan`, then `commit` of its first bytes). A message that is not what it must be ends the child with an
 * error (exit code 1).
 *
 *   shm_loan_child.ts <name> <seed> <maxSize>
 *
 * @module
 */
import { ClosedError, runtime, shm } from "../../mod.ts";
import { differs, message } from "./shm_batch_data.ts";

const rt = await runtime();
const [name, seedArg, maxArg] = rt.args();
const seed = Number(seedArg);
const maxSize = Number(maxArg);
const channel = await shm.open(name!, { wait: 60_000 });
try {
  for (let i = 0;; i++) {
    {
      using got = await channel.receiveLoan();
      const wrong = differs(got.bytes, seed, i, maxSize);
      if (wrong !== undefined) throw new Error(`the ${rt.name} child got a wrong message: ${wrong}`);
    }
    const answer = message(seed + 1, i, maxSize);
    // Lend more than needed and commit only the answer's bytes: the rest of the reservation goes back.
    const loan = await channel.loan(Math.min(maxSize, answer.length + (i % 7)));
    loan.bytes.set(answer);
    loan.commit(answer.length);
  }
} catch (e) {
  if (!(e instanceof ClosedError)) throw e;
} finally {
  await channel.close();
}
