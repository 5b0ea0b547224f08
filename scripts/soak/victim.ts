/**
 * The victim of a chaos round (`scripts/soak/chaos.ts` has the rounds and the control messages): it joins its
 * survivor (or hosts it), says ready, and obeys until it is killed or told to end.
 *
 * @module
 */
import type { Channel } from "../../mod.ts";
import { arg, cmd, context, letter, WINDOW } from "./chaos.ts";
import { largeMessage, MessageWriter } from "./message.ts";
import { type Hosted, transport } from "./transports.ts";

/** What a victim is told. */
export interface VictimJob {
  transport: string;
  /** The victim's side: `host` (create / listen) or `join`. */
  role: "host" | "join";
  address: string;
  seed: number;
  dir: string;
  tag: string;
  nats?: string;
  heartbeat: number;
  /** For a hosting victim: room for this large a message. */
  largest: number;
}

/** The victim: joins (or hosts), says ready, and obeys the survivor until it is killed or told to end. */
export async function victim(job: VictimJob): Promise<void> {
  const t = transport(job.transport);
  const ctx = context(job);
  let hosted: Hosted | undefined;
  let channel: Channel;
  if (job.role === "host") {
    hosted = await t.host(ctx, 1, { largest: job.largest }, [job.address]);
    channel = await hosted.accept(0);
  } else {
    channel = await t.join(ctx, job.address);
  }
  let turn: Promise<unknown> = Promise.resolve();
  const send = (m: Uint8Array) => (turn = turn.then(() => channel.send(m)));
  await send(cmd("R"));
  let acked = 0;
  let wake: (() => void) | undefined;
  const writer = new MessageWriter(0, job.seed, t.soakMax);
  let large: Uint8Array | undefined;
  const flood = async () => {
    for (let seq = 0;; seq++) {
      // Datagrams carry no window: a lost acknowledgement (udp) would stall the flood.
      while (!t.datagram && seq >= acked + WINDOW) await new Promise<void>((r) => (wake = r));
      await send(writer.next());
    }
  };
  for await (const m of channel) {
    switch (letter(m)) {
      case "F":
        void flood().catch(() => {});
        break;
      case "A":
        acked = arg(m);
        wake?.();
        break;
      case "L": {
        // Built once per size: the survivor times the transfer from its request.
        if (large?.byteLength !== arg(m)) large = largeMessage(arg(m), 1, job.seed);
        void send(cmd("M"));
        void send(large);
        break;
      }
      case "P":
        void send(cmd("p"));
        break;
      case "E":
        await turn;
        await channel.close();
        await hosted?.close();
        return;
    }
  }
}
